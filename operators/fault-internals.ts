/**
 * Logic shared by the fault detectors (`detect-*.ts`), like RxJS's `*Internals.ts`: how a fault is raised
 * and cleared, which readings count as evidence, the meter's reading cadence, and the rolling-window
 * bucket rings. Nothing here is an operator; nothing here keeps state outside the state objects or typed
 * rows it is handed, so everything stays checkpointable.
 */
import type { OutputTag } from '../core/index.js';
import type { Alert, AlertSeverity, FaultEvent, FaultType, Reading } from '../schemas/reading.js';
import { addFlag, hasFlag } from './add-flag.js';
import { ALERTS, FAULTS } from './outputs.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/** kW carry 4 decimals (B1.3); as integers of 0.0001 kW, window sums are exact (see {@link MomentRing}). */
export const KW_SCALE = 10_000;

/** Anything that can take a tagged record: a keyed context or a ParDo emitter. */
export interface TagSink {
  tag<T>(tag: OutputTag<T>, item: T): void;
}

/** Figures that tripped (or released) a rule, stored as the fault's JSON evidence. */
export type Evidence = Readonly<Record<string, number | string | boolean | null>>;

/**
 * A fault that is active on a meter, kept in the detector's state until it clears. Short field names:
 * 50,000 meters × several detectors are checkpointed.
 */
export interface OpenFault {
  /** windowStart: event time of the first reading of the condition. */
  s: number;
  /** windowEnd so far: event time of the latest reading still in the condition. */
  e: number;
  /** detectedAt: event time of the reading at which the threshold was reached. */
  d: number;
  /** Evidence JSON at detection, repeated with the clearing figures in the clearing event. */
  x: string;
}

/**
 * Builds the fault row. The faults table is a ReplacingMergeTree on (meter_id, fault_type, window_start):
 * the clearing event repeats windowStart and detectedAt so it replaces the detection row.
 */
export function faultEvent(
  meterId: string,
  faultType: FaultType,
  fault: OpenFault,
  evidence: string = fault.x,
): FaultEvent {
  return { meterId, faultType, windowStart: fault.s, windowEnd: fault.e, detectedAt: fault.d, evidence };
}

/**
 * A fault was just detected: records it on FAULTS and raises a `meter_fault` alert on ALERTS. Returns the
 * open fault for the detector's state.
 */
export function raiseFault(
  out: TagSink,
  meterId: string,
  faultType: FaultType,
  windowStart: number,
  detectedAt: number,
  evidence: Evidence,
  message: string,
  severity: AlertSeverity = 'warning',
): OpenFault {
  const fault: OpenFault = {
    s: windowStart,
    e: detectedAt,
    d: detectedAt,
    x: JSON.stringify({ status: 'active', ...evidence }),
  };
  out.tag(FAULTS, faultEvent(meterId, faultType, fault));
  out.tag(ALERTS, faultAlert(meterId, faultType, detectedAt, message, severity));
  return fault;
}

/**
 * The fault cleared at `clearedAt` (the first reading out of the condition): the final row keeps
 * windowStart and detectedAt, ends at the last reading of the condition, and adds the clearing figures.
 */
export function clearFault(
  out: TagSink,
  meterId: string,
  faultType: FaultType,
  fault: OpenFault,
  clearedAt: number,
  evidence: Evidence,
): void {
  out.tag(FAULTS, faultEvent(meterId, faultType, fault, clearedEvidence(fault, clearedAt, evidence)));
}

export function clearedEvidence(fault: OpenFault, clearedAt: number, evidence: Evidence): string {
  const detected = JSON.parse(fault.x) as Record<string, unknown>;
  return JSON.stringify({ ...detected, status: 'cleared', clearedAt, cleared: evidence });
}

export function faultAlert(
  meterId: string,
  faultType: FaultType,
  ts: number,
  message: string,
  severity: AlertSeverity = 'warning',
): Alert {
  return {
    severity,
    kind: 'meter_fault',
    meterId,
    ts,
    message: `${faultType} fault on ${meterId}: ${message}`,
  };
}

/** Marks a reading as taken out of analytics while a fault is active; once, whatever the number of faults. */
export function excludeFromAnalytics(r: Reading): void {
  if (!hasFlag(r, 'fault_excluded')) addFlag(r, 'fault_excluded');
}

/** A value the meter actually sent: not interpolated, not a missing row, not a NULL reading. */
export function isMeasuredValue(r: Reading): boolean {
  return r.kw !== null && r.status === 'measured';
}

/**
 * True for a reading that must stay out of a detector's value statistics: one an upstream detector has
 * already excluded (a stuck run, an overload …: faulty data would skew the 7-day statistics and make the
 * same fault show up again under another name), or one over the physical limit that is only passing
 * through for the overload rule and will be quarantined.
 */
export function isExcludedValue(r: Reading): boolean {
  const flags = r.flags;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f === 'fault_excluded' || f === 'over_limit') return true;
  }
  return false;
}

/**
 * The meter's reading cadence. Durations are measured as `last − first + interval`, because a reading's
 * `ts` is the start of the interval it covers: 192 readings 15 min apart cover exactly 48 h.
 */
export interface Cadence {
  /** Latest event time seen. */
  lt: number;
  /** Reading interval: the smallest positive step between successive readings; 0 until known. */
  iv: number;
}

/**
 * The smallest step is the interval once fillGaps has put a row in every interval, and it is immune to
 * the gaps and the re-sent earlier readings (over-limit rejoins) that a "last step" would pick up.
 */
export function observeCadence(c: Cadence, ts: number): void {
  const step = ts - c.lt;
  if (step > 0) {
    if (c.iv === 0 || step < c.iv) c.iv = step;
    c.lt = ts;
  }
}

/** Where a detector's typed row (`DenseRows`) holds its {@link Cadence}: its first two numbers. */
export const CADENCE_LT = 0;
export const CADENCE_IV = 1;

/** {@link observeCadence} on the cadence in the row at `data[o …]`. */
export function observeCadenceAt(data: Float64Array, o: number, ts: number): void {
  const step = ts - data[o + CADENCE_LT]!;
  if (step > 0) {
    const iv = data[o + CADENCE_IV]!;
    if (iv === 0 || step < iv) data[o + CADENCE_IV] = step;
    data[o + CADENCE_LT] = ts;
  }
}

/** Rounds a figure for evidence and messages (evidence is for people; the rule used full precision). */
export function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function hours(ms: number): number {
  return round(ms / HOUR_MS, 2);
}

// ---------------------------------------------------------------------------------------------------------
// Rolling windows as rings of buckets.

/**
 * Width of a rolling-window bucket. A 7-day window is 84 buckets instead of 672 raw readings, and its far
 * edge moves in 2-hour steps: the statistics cover between 166 h and 168 h of readings, which moves a
 * 7-day mean, σ or missing share by far less than the rules' margins, while the state is 2.7× smaller
 * than the raw values and every update is O(1).
 */
export const BUCKET_MS = 2 * HOUR_MS;

/** Buckets a window of `windowMs` spans. */
export function bucketCount(windowMs: number): number {
  return Math.max(1, Math.ceil(windowMs / BUCKET_MS));
}

/**
 * A ring of `k` buckets of `f` numeric fields each, after the `f` running totals, all in ONE plain array:
 * the detectors touch a different meter at every reading, and each separate heap object is another cache
 * miss. The ring's origin is the bucket of its first reading (`fs`): bucket `b` lives at
 * `f + ((b − origin) mod k)·f`, so the array grows bucket by bucket from its first reading instead of
 * starting as k·f zeros — a meter's first days are checkpointed without the empty rest of its window
 * (a 7-day ring a day old is ~40 % of the full one). A slot past the end of the array is an empty bucket.
 * Advancing to a newer bucket empties the slots of the buckets that left the window.
 */
export interface BucketRing {
  /** Index of the newest bucket. */
  hb: number;
  /** f totals, then the buckets' fields (bucket-major), as far as the ring has reached. */
  r: number[];
  /** Event time of the first reading the ring took: its bucket is the ring's origin. */
  fs: number;
}

/** Offset of the running totals in `BucketRing.r`. */
export const RING_TOTALS = 0;

/** Index of the bucket holding `ts`. */
export function bucketOf(ts: number): number {
  return Math.floor(ts / BUCKET_MS);
}

/**
 * The `r` array of a new ring of `fields` fields: the totals only. Detectors build their state as ONE
 * object literal with every field (`{ hb: bucketOf(ts), r: ringArray(f), fs: ts, …, f: null }`):
 * spreading a helper's object and adding fields would put them out of line, another cache miss per
 * reading.
 */
export function ringArray(fields: number): number[] {
  return zeros(fields);
}

/**
 * A packed array of doubles from the start: `new Array(n).fill(0)` stays holey, and an array of small
 * integers changes representation once Σu² outgrows them, which leaves the hot functions polymorphic.
 */
function zeros(n: number): number[] {
  const a: number[] = [0.5];
  a[0] = 0;
  for (let i = 1; i < n; i++) a.push(0);
  return a;
}

/**
 * Moves the ring so that the bucket of `ts` is in it and returns its slot offset into `r`, or -1 when `ts`
 * is older than the window (such a reading no longer counts). Expired buckets are subtracted from the
 * totals, which is exact for integer sums below 2^53; past that (sums of squares of readings above
 * ~360 kW) the totals are recomputed from the ring instead, so they never drift.
 */
export function ringSlot(ring: BucketRing, k: number, fields: number, ts: number): number {
  const b = Math.floor(ts / BUCKET_MS);
  const hb = ring.hb;
  const r = ring.r;
  // hb ≥ origin, and a bucket in the window is newer than hb − k: every position below is in [0, k).
  const origin = Math.floor(ring.fs / BUCKET_MS);
  if (b > hb) {
    const expired = Math.min(b - hb, k);
    let exact = true;
    for (let i = 0; i < fields; i++) if (!(r[i] <= Number.MAX_SAFE_INTEGER)) exact = false;
    for (let j = 1; j <= expired; j++) {
      const off = fields + ((hb + j - origin) % k) * fields;
      if (off >= r.length) continue; // never reached: empty
      for (let i = 0; i < fields; i++) {
        r[i] -= r[off + i];
        r[off + i] = 0;
      }
    }
    ring.hb = b;
    if (!exact) recomputeTotals(r, k, fields, origin);
  } else if (b <= hb - k) return -1;
  const off = fields + ((b - origin + k) % k) * fields;
  while (r.length < off + fields) r.push(0);
  return off;
}

/**
 * Totals summed afresh, bucket by bucket in the order of `b mod k` (the order the ring always summed
 * them in): sums past 2^53 round, and the same order keeps the same result.
 */
function recomputeTotals(r: number[], k: number, fields: number, origin: number): void {
  for (let i = 0; i < fields; i++) r[i] = 0;
  const shift = origin % k;
  for (let slot = 0; slot < k; slot++) {
    const off = fields + ((slot - shift + k) % k) * fields;
    if (off >= r.length) continue;
    for (let i = 0; i < fields; i++) r[i] += r[off + i];
  }
}

/** Start of the window the ring covers now: the oldest bucket's start, or the ring's first reading if later. */
export function ringWindowStart(ring: BucketRing, k: number): number {
  return Math.max(ring.fs, (ring.hb - k + 1) * BUCKET_MS);
}

/**
 * Window moments of kW readings: per bucket [n, Σu, Σu²] with u = round(kW × 10⁴). Values carry 4
 * decimals, so u is an exact integer and every sum is exact while below 2^53: Σu² of 672 readings stays
 * exact up to ~360 kW per reading. Hence a constant window has n·Σu² − (Σu)² = 0 exactly (no rounding
 * noise passing for "low variance"), and σ² = (n·Σu² − (Σu)²)/n² loses nothing to cancellation that
 * matters: even at CV 10⁻⁴ the relative error of σ² is below 10⁻⁶.
 */
export type MomentRing = BucketRing;

export const MOMENT_FIELDS = 3;

/** Adds reading `u` (kW × 10⁴) at slot `off` returned by {@link ringSlot}; `tot`: the totals' offset. */
export function addMoment(r: number[], off: number, tot: number, u: number): void {
  const uu = u * u;
  r[off] += 1;
  r[off + 1] += u;
  r[off + 2] += uu;
  r[tot] += 1;
  r[tot + 1] += u;
  r[tot + 2] += uu;
}

/** n²·σ² of the window in (10⁻⁴ kW)² from the totals at `tot`: exactly 0 for a constant window. */
export function scaledVariance(r: number[], tot: number): number {
  return r[tot] * r[tot + 2] - r[tot + 1] * r[tot + 1];
}
