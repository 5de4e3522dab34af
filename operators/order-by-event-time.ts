import {
  type Emitter,
  type KeyedProcessSpec,
  keyedProcess,
  type OutputBuffer,
  type StateStore,
  type Transform,
} from '../core/index.js';
import { METER_IX, type Measurements, type Reading } from '../schemas/reading.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import { QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/** Width of a pending bucket. Readings of a bucket are sorted by `ts` when it is released. */
const BUCKET_MS = 60_000;

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyMeterOrder {
  last: number;
}

/**
 * A reading as parsing leaves it: `receivedAt` (when the server got it) travels with it until the
 * timestamp checks, and a buffered reading keeps it so it comes out exactly as it went in.
 */
type BufferedReading = Reading & { receivedAt?: number };

/**
 * The fields a reading of a minute usually shares with the others (parsing's defaults, the batch's
 * processing time, the pipeline version, the landing hour): stored once per bucket, not per reading.
 */
interface SharedFields {
  status: Reading['status'];
  flags: Reading['flags'];
  warnings: number;
  qualityScore: number;
  qualityTier: Reading['qualityTier'];
  grade: Reading['grade'];
  peakClass: Reading['peakClass'];
  season: Reading['season'];
  processedAt: number;
  pipelineVersion: string;
  /** Absent (not in the JSON) for a reading that carries none. */
  receivedAt?: number;
  /** kW is null (a NULL reading): the segment's numbers then hold 0 for it. */
  nk: boolean;
}

/**
 * The readings a live segment took, as they arrived: a running worker keeps only these and releases the
 * very objects it took (a rebuilt copy per reading cost the graph ~40 % more scavenging time, 5,000 meters
 * × 1 day). Kept under a symbol: JSON and structured clones skip symbol keys. The flat arrays a checkpoint
 * holds are built from them at a snapshot's barrier only (`freezePending`): filled per reading, they were
 * ~220 bytes of allocation a reading (five strings and three numbers pushed into growing arrays) and a
 * comparison of the shared fields, for a copy that only a checkpoint reads. A segment restored from a
 * checkpoint has no readings under the symbol and is rebuilt from its arrays.
 */
const ARRIVED = Symbol('arrived');

/**
 * The readings of one minute waiting for the watermark, in arrival order: checkpoints serialize every
 * pending reading, and as whole Reading objects they were ~40 % of the state (every field name and every
 * default repeated per reading). One-letter names: this is checkpoint JSON.
 */
interface PendingBucket {
  /** Start of the minute. */
  s: number;
  /** The readings, {@link SEGMENT} at most per segment. */
  g: Segment[];
  /** The distinct shared fields of the bucket's readings (usually one). */
  p: SharedFields[];
}

/**
 * Up to {@link SEGMENT} readings. In a checkpoint (and once restored from one), as two flat arrays where the
 * numbers stay unboxed doubles; while the worker runs, as the reading objects themselves (`ARRIVED`, the
 * arrays then empty). Segments keep every array small: a minute of a 50,000-meter fleet in one array would
 * be 250,000 strings, re-allocated and copied as it grows, and far past the size V8 allocates in the young
 * generation.
 */
interface Segment {
  /** Per reading {@link TEXTS} strings: meterId, rawValue, rawUnit, recordId, source. */
  r: string[];
  /** Per reading {@link NUMBERS} numbers: ts − s (0 on the minute), kW (0 when null), index into `p`. */
  n: number[];
  /** A live segment's readings, in arrival order (its `r` and `n` then empty); absent once restored. */
  [ARRIVED]?: Reading[];
  /** Optional measurements by reading index, for the few readings that carry them. */
  m?: Record<number, Measurements>;
}

const TEXTS = 5;
const NUMBERS = 3;
const SEGMENT = 1024;

/**
 * Holds readings back until the watermark reaches their event time (`ts <= watermark`) and releases them
 * sorted by `ts`, so every per-meter rule downstream sees each meter in event-time order. At the watermark,
 * not only behind it: the watermark promises every earlier time has arrived, and another reading of the same
 * meter at the same time is a duplicate, so a reading at the watermark is already in order for its meter
 * (readings stamped on a shared second or interval boundary then go out without waiting for the next one). Keyed by meter:
 * the per-meter state is one number, the `ts` of the meter's last released reading, in a typed row by meter
 * number (`DenseRows`).
 *
 * - A reading at or before its meter's last released `ts` can no longer be put in order: it goes to
 *   QUARANTINE with reason `late` (and `duplicate_timestamp` when it repeats that exact time, which
 *   `dedupeReadings` lets through beyond its horizon). Two pending readings of one meter with the same `ts`
 *   are resolved the same way: the first to arrive is kept, since every rule downstream needs strictly
 *   increasing times per meter.
 * - A reading at or behind the watermark but after its meter's last released one is still in order for
 *   its meter (nothing pending is at or before the watermark), so it passes straight through. Only the
 *   event-time windows downstream may count it as late.
 *
 * Pending readings are kept in minute buckets ordered by time and released in the watermark step, rather
 * than one event-time timer per meter: a timer costs a heap entry and string keys per reading (measured
 * ~1.1 µs a reading against ~0.23 µs for the buckets, 1 M readings of 10 k meters delivered gateway by
 * gateway), while appending to the newest bucket is a comparison and a few pushes.
 *
 * What a checkpoint holds of a bucket is its readings as flat arrays (see {@link PendingBucket}). A running
 * worker releases the very objects it took; a worker restored from a checkpoint releases new objects with
 * the same fields, in the order parsing creates them: the Reading fields and parsing's `receivedAt` (any
 * other field a reading carries does not survive a restore).
 */
export function orderByEventTimeSpec(
  store: StateStore,
  name = 'orderByEventTime',
): KeyedProcessSpec<Reading, Reading, never> {
  // Per meter, the event time of its last released reading: a typed row of one by meter number.
  const lastReleased = store.rows(`${name}/last`, METER_KEYS, 1, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      d[o] = (value as LegacyMeterOrder).last;
      return undefined;
    },
  });
  const meters = store.denseKeys(METER_KEYS);
  const initial: PendingBucket[] = [];
  const pendingValue = store.value<PendingBucket[]>(`${name}/pending`, initial, freezePending);
  // A restore from a snapshot taken before this stage existed hands back the shared initial array.
  const pending = (): PendingBucket[] => {
    let buckets = pendingValue.get();
    if (buckets === initial) {
      buckets = [];
      pendingValue.set(buckets);
    }
    return buckets;
  };

  const quarantine = (out: Pick<Emitter<Reading>, 'tag'>, r: Reading, reasons: string[]): void => {
    out.tag(QUARANTINE, {
      meterId: r.meterId,
      ts: r.ts,
      raw: reconstructedRaw(r),
      reasons,
      source: r.source,
      quarantinedAt: r.processedAt,
    });
  };

  const release = (watermark: number, out: OutputBuffer<Reading>): void => {
    const buckets = pending();
    if (buckets.length === 0 || buckets[0]!.s >= watermark) return;
    const due: Reading[] = [];
    let whole = 0;
    while (whole < buckets.length && buckets[whole]!.s + BUCKET_MS <= watermark) {
      const b = buckets[whole]!;
      for (const g of b.g) {
        const arrived = g[ARRIVED];
        if (arrived !== undefined) for (let j = 0; j < arrived.length; j++) due.push(arrived[j]!);
        else for (let j = 0; j * NUMBERS < g.n.length; j++) due.push(unpack(b, g, j));
      }
      whole++;
    }
    if (whole > 0) buckets.splice(0, whole);
    const straddling = buckets[0];
    if (straddling !== undefined && straddling.s < watermark) releaseBefore(straddling, watermark, due);
    // Buckets come out in time order, so only readings within a bucket can be out of order: the stable
    // sort runs in near-linear time and keeps arrival order among equal times. Readings stamped on the
    // interval's boundary usually come out in order already: one pass finds that without a call a pair.
    if (!sortedByTs(due)) due.sort(byTs);
    for (let i = 0; i < due.length; i++) {
      const r = due[i]!;
      // By the meter's number when the reading carries this index's: a hash of the id string otherwise.
      const carried = r[METER_IX];
      const m =
        carried !== undefined && meters.keyOf(carried) === r.meterId ? carried : meters.intern(r.meterId);
      const o = lastReleased.open(m);
      if (o < 0) {
        const c = lastReleased.create(m);
        lastReleased.data[c] = r.ts;
      } else if (r.ts <= lastReleased.data[o]!) {
        quarantine(out, r, ['late', 'duplicate_timestamp']);
        continue;
      } else lastReleased.data[o] = r.ts;
      out.emit(r);
    }
  };

  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const m = ctx.keyNumber;
      // Read without `open`: most readings wait in a bucket and leave the row as it is.
      const known = lastReleased.has(m);
      if (known) {
        const last = lastReleased.data[m]!;
        if (r.ts <= last) {
          quarantine(ctx, r, r.ts === last ? ['late', 'duplicate_timestamp'] : ['late']);
          return;
        }
      }
      if (r.ts <= ctx.watermark) {
        const o = known ? lastReleased.open(m) : lastReleased.create(m);
        lastReleased.data[o] = r.ts;
        ctx.emit(r);
        return;
      }
      const buckets = pending();
      const start = Math.floor(r.ts / BUCKET_MS) * BUCKET_MS;
      let i = buckets.length - 1;
      while (i >= 0 && buckets[i]!.s > start) i--;
      let bucket: PendingBucket;
      if (i >= 0 && buckets[i]!.s === start) bucket = buckets[i]!;
      else {
        bucket = { s: start, g: [], p: [] };
        buckets.splice(i + 1, 0, bucket);
      }
      take(bucket, r);
    },
    // Released once the watermark reaches their time: `ts <= watermark` is `ts < watermark + 1` in whole ms.
    onWatermark: (watermark, out) => release(watermark + 1, out),
  };
}

/** `orderByEventTimeSpec` as a stage of its own. */
export function orderByEventTime(store: StateStore, name = 'orderByEventTime'): Transform<Reading, Reading> {
  return keyedProcess(store, orderByEventTimeSpec(store, name));
}

/**
 * The buckets as they are now, for a checkpoint printed after its barrier, a bucket at a time: the arrays
 * that change in place are copied (strings and numbers, no text printed), the shared fields never change.
 */
function freezePending(buckets: PendingBucket[]): PendingBucket[] {
  return buckets.map((b) => {
    // A live segment's shared fields are added to the copy as its readings are packed.
    const p = b.p.slice();
    const g = b.g.map((segment) => freezeSegment(b.s, p, segment));
    return { s: b.s, g, p };
  });
}

function freezeSegment(s: number, p: SharedFields[], g: Segment): Segment {
  const arrived = g[ARRIVED];
  if (arrived !== undefined) {
    const packed: Segment = { r: [], n: [] };
    for (let j = 0; j < arrived.length; j++) pack(s, p, packed, arrived[j]!);
    return packed;
  }
  const copy: Segment = { r: g.r.slice(), n: g.n.slice() };
  if (g.m !== undefined) {
    const m: Record<number, Measurements> = {};
    for (const j of Object.keys(g.m)) m[Number(j)] = { ...g.m[Number(j)] };
    copy.m = m;
  }
  return copy;
}

/** Appends `r` to the bucket's newest live segment, opening one when it is full or restored. */
function take(b: PendingBucket, r: Reading): void {
  const segments = b.g;
  const g = segments[segments.length - 1];
  const arrived = g?.[ARRIVED];
  if (arrived !== undefined && arrived.length < SEGMENT) arrived.push(r);
  else segments.push({ r: [], n: [], [ARRIVED]: [r] });
}

/** Appends `r` to the flat arrays of a checkpoint's segment `g` of the bucket starting at `s`. */
function pack(s: number, p: SharedFields[], g: Segment, r: BufferedReading): void {
  const kw = r.kw;
  g.r.push(r.meterId, r.rawValue, r.rawUnit, r.recordId, r.source);
  // ts − s is exact: both are integers, or doubles within a factor of two of each other.
  g.n.push(r.ts - s, kw === null ? 0 : kw, sharedIndex(p, r));
  if (r.measurements !== undefined) {
    // A copy: the reading may leave, and be changed downstream, before the snapshot is printed.
    g.m ??= {};
    g.m[g.r.length / TEXTS - 1] = { ...r.measurements };
  }
}

/** Index of `r`'s shared fields in `p`, added when no entry matches; the newest entry is the likeliest. */
function sharedIndex(p: SharedFields[], r: BufferedReading): number {
  for (let j = p.length - 1; j >= 0; j--) {
    const s = p[j]!;
    if (
      s.processedAt === r.processedAt &&
      s.receivedAt === r.receivedAt &&
      s.season === r.season &&
      s.status === r.status &&
      s.warnings === r.warnings &&
      s.qualityScore === r.qualityScore &&
      s.qualityTier === r.qualityTier &&
      s.grade === r.grade &&
      s.peakClass === r.peakClass &&
      s.pipelineVersion === r.pipelineVersion &&
      s.nk === (r.kw === null) &&
      sameFlags(s.flags, r.flags)
    )
      return j;
  }
  const shared: SharedFields = {
    status: r.status,
    flags: r.flags.slice(),
    warnings: r.warnings,
    qualityScore: r.qualityScore,
    qualityTier: r.qualityTier,
    grade: r.grade,
    peakClass: r.peakClass,
    season: r.season,
    processedAt: r.processedAt,
    pipelineVersion: r.pipelineVersion,
    nk: r.kw === null,
  };
  if (r.receivedAt !== undefined) shared.receivedAt = r.receivedAt;
  return p.push(shared) - 1;
}

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reading `j` of segment `g` as a new object, fields in the order `parseReading` creates them. */
function unpack(b: PendingBucket, g: Segment, j: number): Reading {
  const texts = g.r;
  const t = j * TEXTS;
  const numbers = g.n;
  const n = j * NUMBERS;
  const s = b.p[numbers[n + 2]!]!;
  // A fresh array per reading, as restored readings have always had (`addFlag` copies in any case).
  const flags = s.flags.length === 0 ? [] : s.flags.slice();
  const meterId = texts[t]!;
  const ts = b.s + numbers[n]!;
  const kw = s.nk ? null : numbers[n + 1]!;
  const rawValue = texts[t + 1]!;
  const rawUnit = texts[t + 2]!;
  const recordId = texts[t + 3]!;
  const source = texts[t + 4]!;
  const reading: BufferedReading = {
    meterId,
    ts,
    kw,
    rawValue,
    rawUnit,
    status: s.status,
    flags,
    warnings: s.warnings,
    qualityScore: s.qualityScore,
    qualityTier: s.qualityTier,
    grade: s.grade,
    peakClass: s.peakClass,
    season: s.season,
    recordId,
    source,
    processedAt: s.processedAt,
    pipelineVersion: s.pipelineVersion,
  };
  // Only readings restored from a checkpoint are rebuilt here (a running worker releases the objects it
  // took), so one literal serves both shapes: the hidden class differs from parsing's for one hour at most.
  if (s.receivedAt !== undefined) reading.receivedAt = s.receivedAt;
  const measurements = g.m?.[j];
  if (measurements !== undefined) reading.measurements = measurements;
  return reading;
}

/** Moves the bucket's readings before `watermark` to `due` (in arrival order) and keeps the rest. */
function releaseBefore(b: PendingBucket, watermark: number, due: Reading[]): void {
  for (const g of b.g) {
    const arrived = g[ARRIVED];
    if (arrived !== undefined) {
      let kept = 0;
      for (let j = 0; j < arrived.length; j++) {
        const r = arrived[j]!;
        if (r.ts < watermark) due.push(r);
        else arrived[kept++] = r;
      }
      arrived.length = kept;
      continue;
    }
    const { r: texts, n: numbers, m } = g;
    const count = numbers.length / NUMBERS;
    // Measurements are by reading index: the kept readings' move with them.
    const keptMeasurements: Record<number, Measurements> | undefined = m === undefined ? undefined : {};
    let kept = 0;
    for (let j = 0; j < count; j++) {
      if (b.s + numbers[j * NUMBERS]! < watermark) {
        due.push(unpack(b, g, j));
        continue;
      }
      for (let f = 0; f < TEXTS; f++) texts[kept * TEXTS + f] = texts[j * TEXTS + f]!;
      for (let f = 0; f < NUMBERS; f++) numbers[kept * NUMBERS + f] = numbers[j * NUMBERS + f]!;
      const measurements = m?.[j];
      if (measurements !== undefined) keptMeasurements![kept] = measurements;
      kept++;
    }
    texts.length = kept * TEXTS;
    numbers.length = kept * NUMBERS;
    if (keptMeasurements !== undefined) g.m = keptMeasurements;
  }
}

function sortedByTs(readings: readonly Reading[]): boolean {
  for (let i = 1; i < readings.length; i++) if (readings[i]!.ts < readings[i - 1]!.ts) return false;
  return true;
}

function byTs(a: Reading, b: Reading): number {
  return a.ts - b.ts;
}
