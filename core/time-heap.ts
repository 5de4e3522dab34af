/**
 * A min-heap of times in a plain `number[]`: the distinct times something is due at, popped in order.
 * Hand-written rather than a library's: it sits on the hot path of timers and releases, and a heap of
 * unboxed numbers in an array is the whole of it.
 */

/** Adds `time` to the heap `h`. */
export function pushTime(h: number[], time: number): void {
  h.push(time);
  let i = h.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent]! <= h[i]!) break;
    const up = h[i]!;
    h[i] = h[parent]!;
    h[parent] = up;
    i = parent;
  }
}

/** Removes and returns the heap's earliest time; `h` must not be empty. */
export function popTime(h: number[]): number {
  const top = h[0]!;
  const last = h.pop()!;
  if (h.length === 0) return top;
  h[0] = last;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && h[l]! < h[m]!) m = l;
    if (r < h.length && h[r]! < h[m]!) m = r;
    if (m === i) break;
    const down = h[i]!;
    h[i] = h[m]!;
    h[m] = down;
    i = m;
  }
  return top;
}
