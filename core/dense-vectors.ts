/**
 * Per-key numeric state of varying length (a held list, a ring that fills over days) as one `Float64Array`
 * per key numbered by a dense key index: unboxed numbers that cost their eight bytes and no more from the
 * first day on, nothing for the garbage collector to trace inside them, and a snapshot that is a copy of
 * the used part of each list instead of one JSON text per key. A list that is taken from the front as it
 * is added to at the end (a hold) moves its start on instead of its numbers (`advance`).
 */
import { SteppedCapture } from './stepped-capture.js';

/** One namespace's lists as a snapshot holds them: `count` lengths, then every list's numbers in key order. */
export interface VectorsSnapshot {
  /** The dense key index that numbers the lists. */
  readonly index: string;
  /** Lists `0 … count - 1`; beyond, all are empty. */
  readonly count: number;
  /** The length of list `n` (0: empty, the same as none). */
  readonly lengths: Int32Array;
  /** The lists' numbers one after the other, `Σ lengths` of them. */
  readonly data: Float64Array;
}

/**
 * The lists changed since the previous capture (an incremental checkpoint): list `ids[i]` holds
 * `lengths[i]` numbers, one list after the other in `data`; lists not listed are as in the previous capture.
 */
export interface VectorsDelta {
  readonly index: string;
  /** Lists `0 … count - 1` at the capture, as `VectorsSnapshot.count`. */
  readonly count: number;
  /** The changed lists' numbers, ascending. */
  readonly ids: Int32Array;
  readonly lengths: Int32Array;
  readonly data: Float64Array;
}

const EMPTY = new Float64Array(0);
/** The smallest capacity a list is given, and below which it is never shrunk. */
const MIN_CAPACITY = 8;
/**
 * The largest buffer a list keeps when it empties: the hourly stage's list of a meter's open hours
 * empties and refills about every meter-hour, and a new buffer each time was ~20 % of that stage in a
 * profile. Larger ones (a hold drained at the end of input) are given back.
 */
const KEPT_CAPACITY = 2 * MIN_CAPACITY;
/**
 * A list taken from the front moves its numbers down in its buffer (see `reserve`) while that leaves one
 * part in this many free: a hold's steady length then fits the buffer it grew to, where asking for half
 * free doubled every meter's hold once its releases began (48 h of readings in 8 KB instead of 4 KB),
 * and each number is moved about `SPARE_PARTS - 1` times at most before it is released, not at every
 * release as when the rest moved down.
 */
const SPARE_PARTS = 8;

/**
 * Lists of numbers by dense key number. Read list `n` as `array(n)[start(n) … start(n) + length(n))`;
 * `start(n)` is 0 for a list never shortened by `advance`. Change a list only through `open` (in place,
 * within those bounds), `push`, `push2`, `extend`, `remove`, `truncate`, `dropFirst` and `advance`, which
 * keep it for a snapshot in progress first. `array(n)` and `start(n)` are valid until the next change of
 * list `n` other than in place (growing replaces the buffer, and may move the numbers to its start).
 */
export class DenseVectors {
  private lists: Float64Array[] = [];
  private lengths: number[] = [];
  /** Where each list's first number is in its buffer (see `advance`). */
  private starts: number[] = [];
  /** 1 where a list was handed over for change since the last capture began. */
  private dirty = new Uint8Array(16);
  capture: VectorsCapture | VectorsDeltaCapture | undefined;

  constructor(readonly index: string) {}

  /** One past the highest key number that ever had a list. */
  get used(): number {
    return this.lists.length;
  }

  length(n: number): number {
    return n < this.lengths.length ? this.lengths[n]! : 0;
  }

  /** Where list `n`'s first number is in `array(n)`. */
  start(n: number): number {
    return n < this.starts.length ? this.starts[n]! : 0;
  }

  /** The list's buffer, for reading its `length(n)` numbers from `start(n)` (outside them: stale, or none). */
  array(n: number): Float64Array {
    return n < this.lists.length ? this.lists[n]! : EMPTY;
  }

  /** The list's buffer for changes in place of its `length(n)` numbers from `start(n)`. */
  open(n: number): Float64Array {
    if (this.capture !== undefined) this.capture.keep(n);
    if (n < this.dirty.length) this.dirty[n] = 1;
    return this.array(n);
  }

  push(n: number, a: number): void {
    const at = this.reserve(n, 1);
    this.lists[n]![at] = a;
  }

  /** Appends two numbers (a pair such as time and value). */
  push2(n: number, a: number, b: number): void {
    const at = this.reserve(n, 2);
    const list = this.lists[n]!;
    list[at] = a;
    list[at + 1] = b;
  }

  /**
   * Adds `more` numbers (zeros or stale, to be written) at the end of list `n` and returns where they start
   * in `array(n)`, which (and `start(n)`) is to be taken again after this call. `capacity`: when the list's buffer must
   * grow, it grows to that many numbers (at least the new length) instead of doubling: a list that knows
   * how long it will get (a ring filling bucket by bucket) is then reallocated a few times at most, and
   * never to twice what it needs.
   */
  extend(n: number, more: number, capacity?: number): number {
    return this.reserve(n, more, capacity);
  }

  /** Removes the `count` numbers at `at` (from the list's start) of list `n`, moving the rest down. */
  remove(n: number, at: number, count: number): void {
    const old = this.length(n);
    if (count <= 0 || at >= old) return;
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    const end = Math.min(old, at + count);
    const s = this.starts[n]!;
    this.lists[n]!.copyWithin(s + at, s + end, s + old);
    this.lengths[n] = old - (end - at);
    this.shrink(n);
  }

  /** Keeps only the first `length` numbers of list `n`. */
  truncate(n: number, length: number): void {
    const old = this.length(n);
    if (length >= old) return;
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    this.lengths[n] = length;
    this.shrink(n);
  }

  /** Drops the first `k` numbers of list `n`, moving the rest down (`start(n)` stays where it is). */
  dropFirst(n: number, k: number): void {
    this.remove(n, 0, k);
  }

  /**
   * Drops the first `k` numbers of list `n` by moving its start on: no number moves. The room before the
   * start is taken back when the list next runs out of room at its end (`reserve`), so a list taken from
   * the front as it grows at the end (a hold) copies each number about once instead of at every release.
   */
  advance(n: number, k: number): void {
    const old = this.length(n);
    if (k <= 0 || old === 0) return;
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    if (k >= old) {
      this.lengths[n] = 0;
      this.shrink(n);
      return;
    }
    this.starts[n]! += k;
    this.lengths[n] = old - k;
    this.shrink(n);
  }

  clear(): void {
    this.capture?.finish();
    this.lists = [];
    this.lengths = [];
    this.starts = [];
    this.dirty.fill(0);
  }

  /** The lists as they are now, copied. */
  snapshot(): VectorsSnapshot {
    const count = this.lists.length;
    const lengths = Int32Array.from(this.lengths);
    let total = 0;
    for (let n = 0; n < count; n++) total += lengths[n]!;
    const data = new Float64Array(total);
    let at = 0;
    for (let n = 0; n < count; n++) {
      const s = this.starts[n]!;
      data.set(this.lists[n]!.subarray(s, s + lengths[n]!), at);
      at += lengths[n]!;
    }
    return { index: this.index, count, lengths, data };
  }

  /** Replaces every list with the snapshot's. */
  restore(s: VectorsSnapshot): void {
    this.clear();
    let at = 0;
    for (let n = 0; n < s.count; n++) {
      const length = s.lengths[n]!;
      if (length === 0) continue;
      this.reserve(n, length);
      this.lists[n]!.set(s.data.subarray(at, at + length));
      at += length;
    }
    // The same count as the snapshot's (trailing empty lists too): a snapshot of the restored lists is then
    // byte for byte the one restored.
    while (this.lists.length < s.count) {
      this.lists.push(EMPTY);
      this.lengths.push(0);
      this.starts.push(0);
    }
  }

  /** Starts a snapshot of the lists as they are now, copied a slice at a time by `step` or before a change. */
  beginCapture(): VectorsCapture {
    this.capture?.finish();
    this.dirty.fill(0);
    const capture = new VectorsCapture(this, this.lengths, () => {
      if (this.capture === capture) this.capture = undefined;
    });
    this.capture = capture;
    return capture;
  }

  /**
   * Starts a capture of the lists changed since the previous capture began (of either kind), as they are
   * now; like `beginCapture`, copied in steps or just before a change.
   */
  beginDeltaCapture(): VectorsDeltaCapture {
    this.capture?.finish();
    const count = this.lists.length;
    const dirty = this.dirty;
    let k = 0;
    // Lists beyond the bits were never changed (only padded out by a restore).
    for (let n = 0; n < Math.min(count, dirty.length); n++) k += dirty[n]!;
    const ids = new Int32Array(k);
    const positions = new Int32Array(count).fill(-1);
    for (let n = 0, i = 0; n < count; n++) {
      if (dirty[n] === 1) {
        positions[n] = i;
        ids[i++] = n;
      }
    }
    dirty.fill(0);
    const capture = new VectorsDeltaCapture(this, this.lengths, ids, positions, () => {
      if (this.capture === capture) this.capture = undefined;
    });
    this.capture = capture;
    return capture;
  }

  /** How many lists were changed since the last capture began. */
  changedCount(): number {
    let k = 0;
    const count = Math.min(this.lists.length, this.dirty.length);
    for (let n = 0; n < count; n++) k += this.dirty[n]!;
    return k;
  }

  /** Applies the changed lists of a delta taken of lists holding what these hold now. */
  applyDelta(d: VectorsDelta): void {
    while (this.lists.length < d.count) {
      this.lists.push(EMPTY);
      this.lengths.push(0);
      this.starts.push(0);
    }
    let at = 0;
    for (let i = 0; i < d.ids.length; i++) {
      const n = d.ids[i]!;
      const length = d.lengths[i]!;
      this.lengths[n] = 0;
      this.starts[n] = 0;
      this.lists[n] = EMPTY;
      if (length > 0) {
        this.reserve(n, length);
        this.lists[n]!.set(d.data.subarray(at, at + length));
      }
      at += length;
    }
    this.dirty.fill(0);
  }

  /**
   * Room for `more` numbers at the end of list `n` (kept for a capture first); returns where they go. A
   * list out of room at its end with room before its start (see `advance`) moves its numbers down when
   * that leaves at least `1 / SPARE_PARTS` of its buffer free, so a move is paid for by at least that many
   * numbers dropped since the last; otherwise it grows, into a buffer where it starts at 0.
   */
  private reserve(n: number, more: number, capacity?: number): number {
    while (this.lists.length <= n) {
      this.lists.push(EMPTY);
      this.lengths.push(0);
      this.starts.push(0);
    }
    if (n >= this.dirty.length) {
      let capacity = this.dirty.length;
      while (capacity <= n) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.dirty);
      this.dirty = grown;
    }
    this.dirty[n] = 1;
    if (this.capture !== undefined) this.capture.keep(n);
    const length = this.lengths[n]!;
    const list = this.lists[n]!;
    let start = this.starts[n]!;
    if (start + length + more > list.length) {
      if (start > 0 && (length + more) * SPARE_PARTS <= list.length * (SPARE_PARTS - 1))
        list.copyWithin(0, start, start + length);
      else {
        let size = Math.max(MIN_CAPACITY, list.length);
        // Moved out of its start, a list keeps the spare room a move in place would leave it.
        const needed =
          start > 0 ? Math.ceil(((length + more) * SPARE_PARTS) / (SPARE_PARTS - 1)) : length + more;
        while (size < needed) size *= 2;
        if (capacity !== undefined) size = Math.max(length + more, capacity);
        const grown = new Float64Array(size);
        // The whole old buffer, not a `subarray` view of its used part, when the list starts at 0: a view
        // is another object, allocated at every growth; the numbers past the length are stale either way.
        if (start === 0) grown.set(list);
        else copyRange(list, start, length, grown, 0);
        this.lists[n] = grown;
      }
      start = 0;
      this.starts[n] = 0;
    }
    this.lengths[n] = length + more;
    return start + length;
  }

  /**
   * A list under a quarter of its capacity gives the rest back: a hold empties after a busy stretch. An
   * emptied list keeps a small buffer for its next numbers (see `KEPT_CAPACITY`): what it held there is
   * stale, past its length, and a capture in progress copied it before the change (`keep`).
   */
  private shrink(n: number): void {
    const length = this.lengths[n]!;
    const list = this.lists[n]!;
    if (length === 0) {
      this.starts[n] = 0;
      if (list.length > KEPT_CAPACITY) this.lists[n] = EMPTY;
      return;
    }
    if (list.length <= MIN_CAPACITY || length * 4 > list.length) return;
    const start = this.starts[n]!;
    if (start === 0) {
      this.lists[n] = list.slice(0, Math.max(MIN_CAPACITY, length * 2));
      return;
    }
    const shrunk = new Float64Array(Math.max(MIN_CAPACITY, length * 2));
    copyRange(list, start, length, shrunk, 0);
    this.lists[n] = shrunk;
    this.starts[n] = 0;
  }
}

/** Copies `length` numbers of `from` at `at` into `to` at `into`. */
function copyRange(from: Float64Array, at: number, length: number, to: Float64Array, into: number): void {
  if (length === 0) return;
  // Most lists are a few dozen numbers: a loop costs less than the view `subarray` allocates.
  if (length <= 64) for (let i = 0; i < length; i++) to[into + i] = from[at + i]!;
  else to.set(from.subarray(at, at + length), into);
}

/** Lists copied per step before the deadline is checked again. */
const LISTS_PER_STEP = 1024;

/** One buffer for `count` lists of the given lengths, laid out one after the other. */
function layOut(
  count: number,
  lengthOf: (i: number) => number,
): { lengths: Int32Array; offsets: Float64Array; data: Float64Array } {
  // One loop, not `Int32Array.from` (the iterator protocol over a plain array: ~10× slower here).
  const lengths = new Int32Array(count);
  const offsets = new Float64Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const length = lengthOf(i);
    lengths[i] = length;
    offsets[i] = total;
    total += length;
  }
  return { lengths, offsets, data: new Float64Array(total) };
}

/** Copies the `length` numbers of list `n` into `data` at `at`. */
function copyList(vectors: DenseVectors, n: number, length: number, data: Float64Array, at: number): void {
  copyRange(vectors.array(n), vectors.start(n), length, data, at);
}

/**
 * The lists of one `DenseVectors` at an instant (see `SteppedCapture`), copied in key order into one buffer
 * laid out at the instant's lengths.
 */
export class VectorsCapture extends SteppedCapture {
  private readonly lengths: Int32Array;
  /** Where list `n` starts in `data`. */
  private readonly offsets: Float64Array;
  private readonly data: Float64Array;

  constructor(
    private readonly vectors: DenseVectors,
    lengths: readonly number[],
    release: () => void,
  ) {
    super(lengths.length, LISTS_PER_STEP, release);
    ({
      lengths: this.lengths,
      offsets: this.offsets,
      data: this.data,
    } = layOut(lengths.length, (n) => lengths[n]!));
  }

  protected copyRange(from: number, to: number): void {
    for (let n = from; n < to; n++) copyList(this.vectors, n, this.lengths[n]!, this.data, this.offsets[n]!);
  }

  /** The lists of the instant; only once `complete`. */
  result(): VectorsSnapshot {
    if (!this.complete) throw new Error('vectors capture read before it completed');
    return { index: this.vectors.index, count: this.count, lengths: this.lengths, data: this.data };
  }
}

/** The changed lists of one `DenseVectors` at an instant (see `SteppedCapture`), laid out in `ids` order. */
export class VectorsDeltaCapture extends SteppedCapture {
  private readonly lengths: Int32Array;
  private readonly offsets: Float64Array;
  private readonly data: Float64Array;
  /** Lists `0 … used - 1` at the instant. */
  private readonly used: number;

  constructor(
    private readonly vectors: DenseVectors,
    lengths: readonly number[],
    private readonly ids: Int32Array,
    positions: Int32Array,
    release: () => void,
  ) {
    super(ids.length, LISTS_PER_STEP, release, positions);
    this.used = lengths.length;
    ({
      lengths: this.lengths,
      offsets: this.offsets,
      data: this.data,
    } = layOut(ids.length, (i) => lengths[ids[i]!]!));
  }

  protected copyRange(from: number, to: number): void {
    for (let i = from; i < to; i++)
      copyList(this.vectors, this.ids[i]!, this.lengths[i]!, this.data, this.offsets[i]!);
  }

  /** The changed lists of the instant; only once `complete`. */
  result(): VectorsDelta {
    if (!this.complete) throw new Error('vectors capture read before it completed');
    return {
      index: this.vectors.index,
      count: this.used,
      ids: this.ids,
      lengths: this.lengths,
      data: this.data,
    };
  }
}
