/**
 * Readings as column vectors, for the columnar prototype of issue 15 (a bench, not production): a batch of
 * `Reading`s held as typed arrays — dense meter number, event time, kW with a NULL mask, status code, flag
 * bits — and, when the batch must become rows again, the remaining fields as plain columns. Also the
 * conversions a partial columnar step would pay at its edges: rows to columns at its entry, and at its exit
 * either the flags written back onto the rows it came from or fresh rows built from the columns.
 */
import type { DenseKeyIndex } from '../../core/index.js';
import { NO_FLAGS } from '../../operators/add-flag.js';
import {
  type Grade,
  METER_IX,
  type Measurements,
  type PeakClass,
  type QualityTier,
  READING_FLAGS,
  type Reading,
  type ReadingFlag,
  type ReadingStatus,
  type Season,
} from '../../schemas/reading.js';

/** Every reading flag, its bit its position in the schema's one order: a flag set is one `Uint32` a reading. */
export const FLAG_NAMES = READING_FLAGS;

const FLAG_BITS = new Map<ReadingFlag, number>(FLAG_NAMES.map((f, i) => [f, 1 << i]));

/** The bit of `flag` in a reading's flag set. */
export function flagBit(flag: ReadingFlag): number {
  return FLAG_BITS.get(flag)!;
}

/** Status as a byte: the order of `STATUS_NAMES`. */
export const STATUS_NAMES = [
  'measured',
  'interpolated',
  'missing',
] as const satisfies readonly ReadingStatus[];
export const MEASURED = 0;
export const INTERPOLATED = 1;
export const MISSING = 2;
const STATUS_CODES = new Map<ReadingStatus, number>(STATUS_NAMES.map((s, i) => [s, i]));

const TIERS = ['premium', 'standard', 'quarantine'] as const satisfies readonly QualityTier[];
const GRADES = ['A', 'B', 'C', 'F'] as const satisfies readonly Grade[];
const PEAK_CLASSES = ['peak', 'off_peak', 'standard'] as const satisfies readonly PeakClass[];
const SEASONS = ['winter', 'spring', 'summer', 'fall'] as const satisfies readonly Season[];

/** What the per-meter rules read and write: one entry per reading, in the batch's order. */
export interface ReadingColumns {
  readonly length: number;
  /** The meter's number in the store's dense index of meters (its id: `index.keyOf(meter[i])`). */
  readonly meter: Int32Array;
  readonly ts: Float64Array;
  /** kW; meaningless where `kwNull` is 1. */
  readonly kw: Float64Array;
  readonly kwNull: Uint8Array;
  /** Index into `STATUS_NAMES`. */
  readonly status: Uint8Array;
  /** Flag set, bit `i` for `FLAG_NAMES[i]`; the rules set bits in place. */
  readonly flags: Uint32Array;
  /**
   * The row each entry stands for, never changed by the rules: the reading itself, or for a reading gap
   * filling created, the reading that revealed the gap (whose id, source, season, peak class, processing
   * time and version the created one copies).
   */
  readonly row: readonly Reading[];
  /** Where gap filling created the entry: its record id; absent (or undefined at `i`) for an arrived one. */
  readonly gapRecordId?: readonly (string | undefined)[];
}

/** The fields the rules do not read, kept as columns so the batch can become rows again. */
export interface OtherColumns {
  readonly rawValue: string[];
  readonly rawUnit: string[];
  readonly warnings: Float64Array;
  readonly qualityScore: Float64Array;
  readonly qualityTier: Uint8Array;
  readonly grade: Uint8Array;
  readonly peakClass: Uint8Array;
  readonly season: Uint8Array;
  readonly recordId: string[];
  readonly source: string[];
  readonly processedAt: Float64Array;
  readonly pipelineVersion: string[];
  readonly measurements: (Measurements | undefined)[];
}

/**
 * The number `r` carries when it names its meter in `index`, else the meter interned: the check the keyed
 * chain makes for every reading it is given.
 */
function meterNumber(index: DenseKeyIndex, r: Reading): number {
  const n = r[METER_IX];
  return n !== undefined && index.keyOf(n) === r.meterId ? n : index.intern(r.meterId);
}

/** The bits of a flags list. */
export function flagSet(flags: readonly ReadingFlag[]): number {
  let bits = 0;
  for (let i = 0; i < flags.length; i++) bits |= FLAG_BITS.get(flags[i]!)!;
  return bits;
}

/** The columns the rules read, from rows (a chain's entry when the rows go on after it). */
export function toColumns(rows: readonly Reading[], index: DenseKeyIndex): ReadingColumns {
  const n = rows.length;
  const meter = new Int32Array(n);
  const ts = new Float64Array(n);
  const kw = new Float64Array(n);
  const kwNull = new Uint8Array(n);
  const status = new Uint8Array(n);
  const flags = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    meter[i] = meterNumber(index, r);
    ts[i] = r.ts;
    const v = r.kw;
    if (v === null) kwNull[i] = 1;
    else kw[i] = v;
    status[i] = r.status === 'measured' ? MEASURED : STATUS_CODES.get(r.status)!;
    const f = r.flags;
    if (f.length > 0) flags[i] = flagSet(f);
  }
  return { length: n, meter, ts, kw, kwNull, status, flags, row: rows };
}

/** Every field as columns, for rows that are to be built again from them (`toRows`). */
export function otherColumns(rows: readonly Reading[]): OtherColumns {
  const n = rows.length;
  const c: OtherColumns = {
    rawValue: new Array<string>(n),
    rawUnit: new Array<string>(n),
    warnings: new Float64Array(n),
    qualityScore: new Float64Array(n),
    qualityTier: new Uint8Array(n),
    grade: new Uint8Array(n),
    peakClass: new Uint8Array(n),
    season: new Uint8Array(n),
    recordId: new Array<string>(n),
    source: new Array<string>(n),
    processedAt: new Float64Array(n),
    pipelineVersion: new Array<string>(n),
    measurements: new Array<Measurements | undefined>(n),
  };
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    c.rawValue[i] = r.rawValue;
    c.rawUnit[i] = r.rawUnit;
    c.warnings[i] = r.warnings;
    c.qualityScore[i] = r.qualityScore;
    c.qualityTier[i] = TIERS.indexOf(r.qualityTier as (typeof TIERS)[number]);
    c.grade[i] = GRADES.indexOf(r.grade as (typeof GRADES)[number]);
    c.peakClass[i] = PEAK_CLASSES.indexOf(r.peakClass as (typeof PEAK_CLASSES)[number]);
    c.season[i] = SEASONS.indexOf(r.season as (typeof SEASONS)[number]);
    c.recordId[i] = r.recordId;
    c.source[i] = r.source;
    c.processedAt[i] = r.processedAt;
    c.pipelineVersion[i] = r.pipelineVersion;
    c.measurements[i] = r.measurements;
  }
  return c;
}

/** The flag names of a set, in `FLAG_NAMES` order. */
function flagList(bits: number): ReadingFlag[] {
  const out: ReadingFlag[] = [];
  for (let b = 0; bits !== 0; b++, bits >>>= 1) if ((bits & 1) !== 0) out.push(FLAG_NAMES[b]!);
  return out;
}

/**
 * Flags set while the rows were columns, appended to the rows' own lists (a chain's exit when the rows go
 * on after it). A bit set only records that a flag is there; `order` gives the order the rules add flags
 * in (the chain's rule order), so each row's list is the one the row rules would have made.
 */
export function writeBackFlags(
  rows: readonly Reading[],
  c: ReadingColumns,
  entry: Uint32Array,
  order: readonly ReadingFlag[],
): void {
  const bits = order.map(flagBit);
  const flags = c.flags;
  for (let i = 0; i < rows.length; i++) {
    const added = flags[i]! & ~entry[i]!;
    if (added === 0) continue;
    const r = rows[i]!;
    const list = r.flags.slice();
    for (let k = 0; k < bits.length; k++) if ((added & bits[k]!) !== 0) list.push(order[k]!);
    r.flags = list;
  }
}

/**
 * The rows a chain's column output stands for, as the row chain would emit them (a chain's exit when rows
 * came in and go on): each arrived reading itself with the flags the chain set appended in `order`, and a
 * row made for each reading gap filling created, as `fillGaps` makes it.
 */
export function rowsOut(pieces: readonly ReadingColumns[], order: readonly ReadingFlag[]): Reading[] {
  const bits = order.map(flagBit);
  const out: Reading[] = [];
  for (const c of pieces) {
    const { flags, row } = c;
    const ids = c.gapRecordId;
    for (let i = 0; i < c.length; i++) {
      const r = row[i]!;
      const id = ids?.[i];
      const set = flags[i]!;
      if (id === undefined) {
        const added = set === 0 ? 0 : set & ~flagSet(r.flags);
        if (added !== 0) {
          const list = r.flags.slice();
          for (let k = 0; k < bits.length; k++) if ((added & bits[k]!) !== 0) list.push(order[k]!);
          r.flags = list;
        }
        out.push(r);
        continue;
      }
      let list: ReadingFlag[] | readonly ReadingFlag[] = NO_FLAGS;
      if (set !== 0) {
        const made: ReadingFlag[] = [];
        for (let k = 0; k < bits.length; k++) if ((set & bits[k]!) !== 0) made.push(order[k]!);
        list = made;
      }
      out.push({
        meterId: r.meterId,
        ts: c.ts[i]!,
        kw: c.kwNull[i] === 1 ? null : c.kw[i]!,
        rawValue: '',
        rawUnit: '',
        status: STATUS_NAMES[c.status[i]!]!,
        flags: list,
        warnings: 0,
        qualityScore: 0,
        qualityTier: 'quarantine',
        grade: 'F',
        peakClass: r.peakClass,
        season: r.season,
        recordId: id,
        source: r.source,
        processedAt: r.processedAt,
        pipelineVersion: r.pipelineVersion,
      });
    }
  }
  return out;
}

/**
 * Rows built afresh from the columns (a chain's exit when columns came in and rows must go on). Flags come
 * out in `FLAG_NAMES` order: a columnar graph that stores them would keep that order (or the stages'), not
 * the order of arrival; here it only prices the rows' making.
 */
export function toRows(c: ReadingColumns, o: OtherColumns, index: DenseKeyIndex): Reading[] {
  const rows = new Array<Reading>(c.length);
  for (let i = 0; i < c.length; i++) {
    const m = c.meter[i]!;
    const bits = c.flags[i]!;
    rows[i] = {
      meterId: index.keyOf(m)!,
      ts: c.ts[i]!,
      kw: c.kwNull[i] === 1 ? null : c.kw[i]!,
      rawValue: o.rawValue[i]!,
      rawUnit: o.rawUnit[i]!,
      status: STATUS_NAMES[c.status[i]!]!,
      flags: bits === 0 ? NO_FLAGS : flagList(bits),
      warnings: o.warnings[i]!,
      qualityScore: o.qualityScore[i]!,
      qualityTier: TIERS[o.qualityTier[i]!]!,
      grade: GRADES[o.grade[i]!]!,
      peakClass: PEAK_CLASSES[o.peakClass[i]!]!,
      season: SEASONS[o.season[i]!]!,
      recordId: o.recordId[i]!,
      source: o.source[i]!,
      processedAt: o.processedAt[i]!,
      pipelineVersion: o.pipelineVersion[i]!,
      measurements: o.measurements[i],
      [METER_IX]: m,
    };
  }
  return rows;
}

/** A fresh copy of a batch's columns (the rules write `flags` in place). */
export function copyColumns(c: ReadingColumns): ReadingColumns {
  return {
    length: c.length,
    meter: c.meter,
    ts: c.ts,
    kw: c.kw,
    kwNull: c.kwNull,
    status: c.status,
    flags: c.flags.slice(),
    row: c.row,
    ...(c.gapRecordId === undefined ? {} : { gapRecordId: c.gapRecordId }),
  };
}

/** Entries `from … to - 1` of `b` as a batch viewing its arrays. */
export function slice(b: ReadingColumns, from: number, to: number): ReadingColumns {
  return {
    length: to - from,
    meter: b.meter.subarray(from, to),
    ts: b.ts.subarray(from, to),
    kw: b.kw.subarray(from, to),
    kwNull: b.kwNull.subarray(from, to),
    status: b.status.subarray(from, to),
    flags: b.flags.subarray(from, to),
    row: b.row.slice(from, to),
    ...(b.gapRecordId === undefined ? {} : { gapRecordId: b.gapRecordId.slice(from, to) }),
  };
}
