/**
 * A batch of reading columns (`reading-columns.ts`) being filled entry by entry, for the columnar stages
 * that reorder and create readings: the typed arrays grow by doubling, and a builder that is emptied
 * keeps them, so a stage that holds readings (event-time ordering's minute buckets) reuses its arrays.
 */
import type { Reading } from '../../schemas/reading.js';
import type { ReadingColumns } from './reading-columns.js';

export class ColumnBuilder {
  length = 0;
  meter: Int32Array;
  ts: Float64Array;
  kw: Float64Array;
  kwNull: Uint8Array;
  status: Uint8Array;
  flags: Uint32Array;
  row: Reading[] = [];
  /** Record ids of created entries by position; undefined until one is created. */
  gapRecordId: (string | undefined)[] | undefined;

  constructor(capacity = 256) {
    this.meter = new Int32Array(capacity);
    this.ts = new Float64Array(capacity);
    this.kw = new Float64Array(capacity);
    this.kwNull = new Uint8Array(capacity);
    this.status = new Uint8Array(capacity);
    this.flags = new Uint32Array(capacity);
  }

  /** Room for `extra` more entries. */
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.meter.length) return;
    let capacity = Math.max(16, this.meter.length * 2);
    while (capacity < need) capacity *= 2;
    const grow = <A extends Int32Array | Float64Array | Uint8Array | Uint32Array>(a: A, b: A): A => {
      b.set(a.subarray(0, this.length));
      return b;
    };
    this.meter = grow(this.meter, new Int32Array(capacity));
    this.ts = grow(this.ts, new Float64Array(capacity));
    this.kw = grow(this.kw, new Float64Array(capacity));
    this.kwNull = grow(this.kwNull, new Uint8Array(capacity));
    this.status = grow(this.status, new Uint8Array(capacity));
    this.flags = grow(this.flags, new Uint32Array(capacity));
  }

  /** Appends entry `i` of `b` (room reserved). */
  copy(b: ReadingColumns | ColumnBuilder, i: number): void {
    const j = this.length++;
    this.meter[j] = b.meter[i]!;
    this.ts[j] = b.ts[i]!;
    this.kw[j] = b.kw[i]!;
    this.kwNull[j] = b.kwNull[i]!;
    this.status[j] = b.status[i]!;
    this.flags[j] = b.flags[i]!;
    this.row[j] = b.row[i]!;
    const id = b.gapRecordId?.[i];
    if (id !== undefined) this.setRecordId(j, id);
    else if (this.gapRecordId !== undefined) this.gapRecordId[j] = undefined;
  }

  /** Appends entries `from … to - 1` of `b`. */
  copyRange(b: ReadingColumns | ColumnBuilder, from: number, to: number): void {
    if (to <= from) return;
    this.reserve(to - from);
    const j = this.length;
    this.meter.set(b.meter.subarray(from, to), j);
    this.ts.set(b.ts.subarray(from, to), j);
    this.kw.set(b.kw.subarray(from, to), j);
    this.kwNull.set(b.kwNull.subarray(from, to), j);
    this.status.set(b.status.subarray(from, to), j);
    this.flags.set(b.flags.subarray(from, to), j);
    const row = b.row;
    const ids = b.gapRecordId;
    for (let i = from; i < to; i++) {
      const k = j + i - from;
      this.row[k] = row[i]!;
      const id = ids?.[i];
      if (id !== undefined) this.setRecordId(k, id);
      else if (this.gapRecordId !== undefined) this.gapRecordId[k] = undefined;
    }
    this.length = j + to - from;
  }

  /** Appends a reading gap filling created (room reserved). */
  created(
    meter: number,
    ts: number,
    kw: number | null,
    status: number,
    flags: number,
    from: Reading,
    recordId: string,
  ): void {
    const j = this.length++;
    this.meter[j] = meter;
    this.ts[j] = ts;
    this.kw[j] = kw === null ? 0 : kw;
    this.kwNull[j] = kw === null ? 1 : 0;
    this.status[j] = status;
    this.flags[j] = flags;
    this.row[j] = from;
    this.setRecordId(j, recordId);
  }

  private setRecordId(j: number, id: string): void {
    if (this.gapRecordId === undefined) {
      // Filled up to `j` by appending: `new Array(j)` of more than ~100,000 entries is a dictionary (a hash
      // table), every later write a hash insert.
      const ids: (string | undefined)[] = [];
      for (let k = 0; k < j; k++) ids.push(undefined);
      this.gapRecordId = ids;
    }
    this.gapRecordId[j] = id;
  }

  /** Keeps the entries `keep` accepts, in order. */
  retain(keep: (i: number) => boolean): void {
    let k = 0;
    for (let i = 0; i < this.length; i++) {
      if (!keep(i)) continue;
      if (k !== i) {
        this.meter[k] = this.meter[i]!;
        this.ts[k] = this.ts[i]!;
        this.kw[k] = this.kw[i]!;
        this.kwNull[k] = this.kwNull[i]!;
        this.status[k] = this.status[i]!;
        this.flags[k] = this.flags[i]!;
        this.row[k] = this.row[i]!;
        if (this.gapRecordId !== undefined) this.gapRecordId[k] = this.gapRecordId[i];
      }
      k++;
    }
    this.truncate(k);
  }

  /** Empties the builder, keeping its arrays. */
  clear(): void {
    this.truncate(0);
  }

  private truncate(n: number): void {
    this.length = n;
    // Rows past the end would otherwise be held until overwritten.
    this.row.length = n;
    if (this.gapRecordId !== undefined) this.gapRecordId.length = n;
  }

  /**
   * The entries as a batch that views the builder's arrays: valid until the builder changes (a stage's
   * scratch output, consumed by the chain before the stage takes its next piece).
   */
  view(): ReadingColumns {
    return this.take();
  }

  /** The entries as a batch that views the builder's arrays: the builder must not be used after. */
  take(): ReadingColumns {
    const n = this.length;
    this.row.length = n;
    if (this.gapRecordId !== undefined) this.gapRecordId.length = n;
    return {
      length: n,
      meter: this.meter.subarray(0, n),
      ts: this.ts.subarray(0, n),
      kw: this.kw.subarray(0, n),
      kwNull: this.kwNull.subarray(0, n),
      status: this.status.subarray(0, n),
      flags: this.flags.subarray(0, n),
      row: this.row,
      ...(this.gapRecordId === undefined ? {} : { gapRecordId: this.gapRecordId }),
    };
  }

  /** The entries as a batch of their own (copies: the builder may go on and be reused). */
  finish(): ReadingColumns {
    const n = this.length;
    const c: ReadingColumns = {
      length: n,
      meter: this.meter.slice(0, n),
      ts: this.ts.slice(0, n),
      kw: this.kw.slice(0, n),
      kwNull: this.kwNull.slice(0, n),
      status: this.status.slice(0, n),
      flags: this.flags.slice(0, n),
      row: this.row.slice(0, n),
      ...(this.gapRecordId === undefined ? {} : { gapRecordId: this.gapRecordId.slice(0, n) }),
    };
    return c;
  }
}
