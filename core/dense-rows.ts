/**
 * Per-key numeric state as fixed-width rows of one `Float64Array`, row `n` for the key numbered `n` by a
 * dense key index: no object, no boxed number, nothing for the garbage collector to trace, and a
 * snapshot that is a copy of the used part of the buffer instead of one JSON text per key.
 */
import { SteppedCapture } from './stepped-capture.js';

/** One namespace's rows as a snapshot holds them: `count` rows of `width` numbers, and which exist. */
export interface RowsSnapshot {
  /** The dense key index that numbers the rows. */
  readonly index: string;
  readonly width: number;
  /** Rows `0 … count - 1`; beyond, none exists. */
  readonly count: number;
  /** 1 where row `n` exists, 0 where it does not (`count` entries). */
  readonly present: Uint8Array;
  /** `count × width` numbers, row after row; a missing row's numbers are 0. */
  readonly data: Float64Array;
}

/**
 * The rows changed since the previous capture (an incremental checkpoint): row `ids[i]` exists when
 * `present[i]` is 1 and then holds `data[i × width …]`; rows not listed are as in the previous capture.
 */
export interface RowsDelta {
  readonly index: string;
  readonly width: number;
  /** Rows `0 … count - 1` at the capture, as `RowsSnapshot.count`. */
  readonly count: number;
  /** The changed rows' numbers, ascending. */
  readonly ids: Int32Array;
  readonly present: Uint8Array;
  readonly data: Float64Array;
}

/** `RowsDelta` as a delta capture holds it: the changed rows' numbers in pieces, one after the other. */
export interface RowsDeltaPieces {
  readonly index: string;
  readonly width: number;
  readonly count: number;
  readonly ids: Int32Array;
  readonly present: Uint8Array;
  readonly pieces: readonly Float64Array[];
}

/**
 * Fixed-width numeric rows by dense key number, grown by doubling. `data` is the live buffer: read and
 * write row `n` at `data[offset … offset + width)` from `open` or `create`, and take `data` again after
 * either (growing replaces it). While a snapshot is in progress a row is copied out before `open`,
 * `create` or `delete` hands it over for change, so the snapshot keeps the row as it was at its start.
 */
export class DenseRows {
  private buf: Float64Array;
  private present: Uint8Array;
  /** 1 where a row was handed over for change (or deleted) since the last capture began. */
  private dirty: Uint8Array;
  /** One past the highest row number that ever existed. */
  private used = 0;
  private rowCount = 0;
  capture: RowsCapture | RowsDeltaCapture | undefined;

  constructor(
    readonly index: string,
    readonly width: number,
  ) {
    if (!(Number.isInteger(width) && width >= 1)) throw new RangeError(`row width must be ≥ 1, got ${width}`);
    this.buf = new Float64Array(16 * width);
    this.present = new Uint8Array(16);
    this.dirty = new Uint8Array(16);
  }

  /** The live buffer: valid until the next `create` of a row beyond the capacity. */
  get data(): Float64Array {
    return this.buf;
  }

  /** How many rows exist. */
  get size(): number {
    return this.rowCount;
  }

  has(n: number): boolean {
    return n < this.used && this.present[n] === 1;
  }

  /** The offset of row `n` in `data`, or -1 when it does not exist. */
  open(n: number): number {
    if (n >= this.used || this.present[n] !== 1) return -1;
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    return n * this.width;
  }

  /** Creates row `n` (all zeros; an existing one is zeroed) and returns its offset. */
  create(n: number): number {
    if (n >= this.present.length) this.grow(n + 1);
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    if (n >= this.used) this.used = n + 1;
    if (this.present[n] !== 1) {
      this.present[n] = 1;
      this.rowCount += 1;
    }
    const offset = n * this.width;
    this.buf.fill(0, offset, offset + this.width);
    return offset;
  }

  delete(n: number): void {
    if (!this.has(n)) return;
    if (this.capture !== undefined) this.capture.keep(n);
    this.dirty[n] = 1;
    this.present[n] = 0;
    this.rowCount -= 1;
    this.buf.fill(0, n * this.width, (n + 1) * this.width);
  }

  clear(): void {
    this.capture?.finish();
    this.buf.fill(0, 0, this.used * this.width);
    this.present.fill(0, 0, this.used);
    this.dirty.fill(0, 0, this.used);
    this.used = 0;
    this.rowCount = 0;
  }

  /** The rows as they are now, copied. */
  snapshot(): RowsSnapshot {
    return {
      index: this.index,
      width: this.width,
      count: this.used,
      present: this.present.slice(0, this.used),
      data: this.buf.slice(0, this.used * this.width),
    };
  }

  /** Replaces every row with the snapshot's (taken with the same width). */
  restore(s: RowsSnapshot): void {
    if (s.width !== this.width)
      throw new RangeError(`rows of width ${s.width} cannot be restored into rows of width ${this.width}`);
    this.clear();
    if (s.count > this.present.length) this.grow(s.count);
    this.present.set(s.present.subarray(0, s.count));
    this.buf.set(s.data.subarray(0, s.count * this.width));
    this.used = s.count;
    let rows = 0;
    for (let n = 0; n < s.count; n++) rows += this.present[n] === 1 ? 1 : 0;
    this.rowCount = rows;
  }

  /**
   * Starts a snapshot of the rows as they are now: rows are copied a slice at a time by `step`, or one by
   * one just before they change, into a buffer of the used size.
   */
  beginCapture(): RowsCapture {
    this.capture?.finish();
    this.dirty.fill(0, 0, this.used);
    const capture = new RowsCapture(this, this.used, () => {
      if (this.capture === capture) this.capture = undefined;
    });
    this.capture = capture;
    return capture;
  }

  /**
   * Starts a capture of the rows changed since the previous capture began (of either kind), as they are
   * now; like `beginCapture`, copied in steps or just before a change.
   */
  beginDeltaCapture(): RowsDeltaCapture {
    this.capture?.finish();
    const dirty = this.dirty;
    let k = 0;
    for (let n = 0; n < this.used; n++) k += dirty[n]!;
    const ids = new Int32Array(k);
    const positions = new Int32Array(this.used).fill(-1);
    for (let n = 0, i = 0; n < this.used; n++) {
      if (dirty[n] === 1) {
        positions[n] = i;
        ids[i++] = n;
      }
    }
    dirty.fill(0, 0, this.used);
    const capture = new RowsDeltaCapture(this, this.used, ids, positions, () => {
      if (this.capture === capture) this.capture = undefined;
    });
    this.capture = capture;
    return capture;
  }

  /** How many rows were handed over for change since the last capture began. */
  changedCount(): number {
    let k = 0;
    for (let n = 0; n < this.used; n++) k += this.dirty[n]!;
    return k;
  }

  /** Applies the changed rows of a delta taken of rows holding what these hold now. */
  applyDelta(d: RowsDelta): void {
    if (d.width !== this.width)
      throw new RangeError(`rows of width ${d.width} cannot be applied to rows of width ${this.width}`);
    if (d.count > this.present.length) this.grow(d.count);
    const w = this.width;
    for (let i = 0; i < d.ids.length; i++) {
      const n = d.ids[i]!;
      const was = n < this.used && this.present[n] === 1;
      const is = d.present[i] === 1;
      this.present[n] = is ? 1 : 0;
      this.rowCount += (is ? 1 : 0) - (was ? 1 : 0);
      this.buf.set(d.data.subarray(i * w, (i + 1) * w), n * w);
    }
    if (d.count > this.used) this.used = d.count;
  }

  /**
   * For the capture: copies rows `from … to - 1` as they are now into `present` and `data`, whose first
   * row is row `base`.
   */
  copyRows(from: number, to: number, present: Uint8Array, data: Float64Array, base = 0): void {
    present.set(this.present.subarray(from, to), from);
    data.set(this.buf.subarray(from * this.width, to * this.width), (from - base) * this.width);
  }

  /**
   * For a delta capture: copies row `n` as it is now into position `at` of `present` and of `data`, whose
   * first row is position `base`.
   */
  copyRowTo(n: number, at: number, present: Uint8Array, data: Float64Array, base = 0): void {
    present[at] = this.present[n]!;
    const w = this.width;
    data.set(this.buf.subarray(n * w, (n + 1) * w), (at - base) * w);
  }

  private grow(rows: number): void {
    let capacity = this.present.length;
    while (capacity < rows) capacity *= 2;
    const buf = new Float64Array(capacity * this.width);
    buf.set(this.buf.subarray(0, this.used * this.width));
    const present = new Uint8Array(capacity);
    present.set(this.present.subarray(0, this.used));
    const dirty = new Uint8Array(capacity);
    dirty.set(this.dirty.subarray(0, this.used));
    this.buf = buf;
    this.present = present;
    this.dirty = dirty;
  }
}

/** Rows copied per step before the deadline is checked again: ~1 MB of a 170-wide row. */
const ROWS_PER_STEP = 1024;

/** Room for `count` rows of `width` numbers in pieces of `ROWS_PER_STEP` rows, each allocated when first asked for. */
class LazyPieces {
  private readonly pieces: (Float64Array | undefined)[];
  allocatedRows = 0;

  constructor(
    private readonly count: number,
    private readonly width: number,
  ) {
    this.pieces = new Array<Float64Array | undefined>(Math.ceil(count / ROWS_PER_STEP)).fill(undefined);
  }

  piece(p: number): Float64Array {
    let piece = this.pieces[p];
    if (piece === undefined) {
      const rows = Math.min(ROWS_PER_STEP, this.count - p * ROWS_PER_STEP);
      piece = new Float64Array(rows * this.width);
      this.pieces[p] = piece;
      this.allocatedRows += rows;
    }
    return piece;
  }

  /** Every piece, those never written allocated now. */
  all(): Float64Array[] {
    return this.pieces.map((_, p) => this.piece(p));
  }
}

/**
 * The rows of one `DenseRows` at an instant, in pieces of `ROWS_PER_STEP` rows (see `SteppedCapture`).
 * A piece is allocated when its first row is copied, by a step or just before a change: one buffer of
 * all the rows (~70 MB at 50,000 meters), allocated and zero-filled at the barrier, held the loop 10–50 ms
 * there, with the collection its size set off.
 */
export class RowsCapture extends SteppedCapture {
  private readonly present: Uint8Array;
  private readonly pieces: LazyPieces;

  constructor(
    private readonly rows: DenseRows,
    count: number,
    release: () => void,
  ) {
    super(count, ROWS_PER_STEP, release);
    this.present = new Uint8Array(count);
    this.pieces = new LazyPieces(count, rows.width);
  }

  /** Rows whose room in the capture is allocated so far. */
  get allocatedRows(): number {
    return this.pieces.allocatedRows;
  }

  protected copyRange(from: number, to: number): void {
    // A step's range and a kept row lie in one piece: steps start at multiples of ROWS_PER_STEP.
    for (let n = from; n < to; ) {
      const p = Math.floor(n / ROWS_PER_STEP);
      const end = Math.min(to, (p + 1) * ROWS_PER_STEP);
      this.rows.copyRows(n, end, this.present, this.pieces.piece(p), p * ROWS_PER_STEP);
      n = end;
    }
  }

  /** The rows of the instant, their numbers in pieces of consecutive rows; only once `complete`. */
  result(): RowsPieces {
    if (!this.complete) throw new Error('rows capture read before it completed');
    const { index, width } = this.rows;
    return { index, width, count: this.count, present: this.present, pieces: this.pieces.all() };
  }
}

/** `RowsSnapshot` with its numbers in pieces: `pieces` one after the other are `data`. */
export interface RowsPieces {
  readonly index: string;
  readonly width: number;
  readonly count: number;
  readonly present: Uint8Array;
  readonly pieces: readonly Float64Array[];
}

/**
 * The changed rows of one `DenseRows` at an instant (see `SteppedCapture`), their numbers in pieces of
 * `ROWS_PER_STEP` rows allocated as they are first written, like `RowsCapture`'s: a delta of most rows
 * (~70 MB at 50,000 meters) is not allocated at the barrier.
 */
export class RowsDeltaCapture extends SteppedCapture {
  private readonly present: Uint8Array;
  private readonly pieces: LazyPieces;

  constructor(
    private readonly rows: DenseRows,
    private readonly used: number,
    private readonly ids: Int32Array,
    positions: Int32Array,
    release: () => void,
  ) {
    super(ids.length, ROWS_PER_STEP, release, positions);
    this.present = new Uint8Array(ids.length);
    this.pieces = new LazyPieces(ids.length, rows.width);
  }

  /** Changed rows whose room in the capture is allocated so far. */
  get allocatedRows(): number {
    return this.pieces.allocatedRows;
  }

  protected copyRange(from: number, to: number): void {
    for (let i = from; i < to; i++) {
      const p = Math.floor(i / ROWS_PER_STEP);
      this.rows.copyRowTo(this.ids[i]!, i, this.present, this.pieces.piece(p), p * ROWS_PER_STEP);
    }
  }

  /** The changed rows of the instant; only once `complete`. */
  result(): RowsDeltaPieces {
    if (!this.complete) throw new Error('rows capture read before it completed');
    const { index, width } = this.rows;
    return {
      index,
      width,
      count: this.used,
      ids: this.ids,
      present: this.present,
      pieces: this.pieces.all(),
    };
  }
}
