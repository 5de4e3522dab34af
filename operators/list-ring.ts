/**
 * The rolling-window bucket ring of `fault-internals.ts` (`BucketRing`, `ringSlot`) kept in a meter's typed
 * list (`StateStore.vectors`) instead of a keyed JSON object: `[hb, fs, totals…, buckets…]`, grown bucket by
 * bucket from the first reading as the array form is, with the same arithmetic in the same order, so the
 * figures are the same to the bit. A week's ring is ~2 KB a meter: unboxed, outside the JS heap, and
 * copied rather than printed at a checkpoint.
 */
import type { DenseVectors } from '../core/index.js';
import { BUCKET_MS } from './fault-internals.js';

/** Offset of the newest bucket's index, of the ring's first event time, and of the running totals. */
export const RING_HB = 0;
export const RING_FS = 1;
export const RING_TOT = 2;

/**
 * Buckets a new ring has room for before its list is first reallocated (a day and a bit of 2-hour buckets):
 * growing a typed list bucket by bucket from a few numbers reallocated it four times in a meter's first day.
 */
const FIRST_BUCKETS = 16;

/** The length of a full ring of `k` buckets of `fields` fields, head and totals included. */
function fullLength(k: number, fields: number): number {
  return RING_TOT + fields * (k + 1);
}

/** Starts meter `n`'s ring of `k` buckets at its first reading `ts`: the head and `fields` zero totals. */
export function startListRing(lists: DenseVectors, n: number, k: number, fields: number, ts: number): void {
  const at = lists.extend(n, RING_TOT + fields, fullLength(Math.min(k, FIRST_BUCKETS), fields));
  const a = lists.array(n);
  a[at + RING_HB] = Math.floor(ts / BUCKET_MS);
  a[at + RING_FS] = ts;
  a.fill(0, at + RING_TOT, at + RING_TOT + fields);
}

/**
 * `ringSlot` on meter `n`'s list: moves the ring so that the bucket of `ts` is in it and returns the
 * bucket's offset in `lists.array(n)` (to be taken again after this call), or -1 when `ts` is older than
 * the window.
 */
export function listRingSlot(lists: DenseVectors, n: number, k: number, fields: number, ts: number): number {
  const b = Math.floor(ts / BUCKET_MS);
  let a = lists.open(n);
  const hb = a[RING_HB]!;
  const origin = Math.floor(a[RING_FS]! / BUCKET_MS);
  // The length of the array form's `r`: totals and the buckets reached.
  const reached = lists.length(n) - RING_TOT;
  if (b > hb) {
    const expired = Math.min(b - hb, k);
    let exact = true;
    for (let i = 0; i < fields; i++) if (!(a[RING_TOT + i]! <= Number.MAX_SAFE_INTEGER)) exact = false;
    for (let j = 1; j <= expired; j++) {
      const off = fields + ((hb + j - origin) % k) * fields;
      if (off >= reached) continue; // never reached: empty
      for (let i = 0; i < fields; i++) {
        a[RING_TOT + i]! -= a[RING_TOT + off + i]!;
        a[RING_TOT + off + i] = 0;
      }
    }
    a[RING_HB] = b;
    if (!exact) recomputeTotals(a, reached, k, fields, origin);
  } else if (b <= hb - k) return -1;
  const off = fields + ((b - origin + k) % k) * fields;
  if (reached < off + fields) {
    // Doubling, but never past the full ring: a week's ring then holds no more than it needs.
    lists.extend(n, off + fields - reached, Math.min(fullLength(k, fields), 2 * a.length));
    a = lists.array(n);
    // Numbers past a list's length are not zeroed by the list: the buckets reached now start empty.
    a.fill(0, RING_TOT + reached, RING_TOT + off + fields);
  }
  return RING_TOT + off;
}

/** `recomputeTotals` of the array form: the same buckets summed in the same order. */
function recomputeTotals(a: Float64Array, reached: number, k: number, fields: number, origin: number): void {
  for (let i = 0; i < fields; i++) a[RING_TOT + i] = 0;
  const shift = origin % k;
  for (let slot = 0; slot < k; slot++) {
    const off = fields + ((slot - shift + k) % k) * fields;
    if (off >= reached) continue;
    for (let i = 0; i < fields; i++) a[RING_TOT + i]! += a[RING_TOT + off + i]!;
  }
}

/** `ringWindowStart` of the list form. */
export function listRingWindowStart(a: Float64Array, k: number): number {
  return Math.max(a[RING_FS]!, (a[RING_HB]! - k + 1) * BUCKET_MS);
}

/**
 * `addMoment` on a list (the array form's, repeated: one function for both would see arrays and typed
 * arrays, and its element loads would turn polymorphic in the detectors that use the array form).
 */
export function addMomentAt(a: Float64Array, off: number, u: number): void {
  const uu = u * u;
  a[off]! += 1;
  a[off + 1]! += u;
  a[off + 2]! += uu;
  a[RING_TOT]! += 1;
  a[RING_TOT + 1]! += u;
  a[RING_TOT + 2]! += uu;
}

/** `scaledVariance` of a list's totals: n²·σ² in (10⁻⁴ kW)², exactly 0 for a constant window. */
export function scaledVarianceAt(a: Float64Array): number {
  return a[RING_TOT]! * a[RING_TOT + 2]! - a[RING_TOT + 1]! * a[RING_TOT + 1]!;
}
