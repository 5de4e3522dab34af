import {
  type KeyedContext,
  type KeyedProcessSpec,
  keyedProcess,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Alert, Reading, ReadingFlag } from '../schemas/reading.js';
import { hasFlag, NO_FLAGS } from './add-flag.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import { ALERTS } from './outputs.js';
import { canonicalTimestamp, recordId } from './record-id.js';
import type { RuleProfile } from './rule-profile.js';

const HOUR = 3_600_000;
const SILENCE_TIMER = 'silence';
/**
 * Consecutive equal deltas needed before a meter whose cadence is known is taken to report less often:
 * a few identical gaps in a row must not pass for a new cadence, while a real reconfiguration (every
 * 15 min → every hour) still wins within a working day.
 */
const LONGER_CADENCE_RUN = 8;

/**
 * Per-meter state: a typed row of ten numbers by meter number (`DenseRows`), whatever the meter's history;
 * no keyed entry. Booleans are 0 / 1, and the last kW is a number beside a flag saying it exists (rather
 * than NaN for none: any number a reading carries goes through as it came).
 */
/** Event time of the meter's last reading (NULL readings included). */
const LT = 0;
/** Its kW, when `HK` is 1; with `HK` 0 it was a NULL or over-limit reading, so no interpolation starts from it. */
const LK = 1;
const HK = 2;
/** The meter's cadence, the profile default until its data shows one (see `fillGaps`). */
const IV = 3;
/** 1: the cadence was seen in the data rather than assumed from the profile. */
const CS = 4;
/** The previous delta between readings, and how many deltas in a row had it. */
const LD = 5;
const DR = 6;
/** NULL readings in a row up to the last reading. */
const NU = 7;
/** When the silence timer is set for, or 0 when none is set. */
const SA = 8;
/** 1: the critical alert for the current silence was raised (by the timer or a reading). */
const EA = 9;
const WIDTH = 10;

/** The row's layout, for a port of this rule that must keep the same state (bench/columnar). */
export const GAP_ROW = { LT, LK, HK, IV, CS, LD, DR, NU, SA, EA, WIDTH } as const;
export { SILENCE_TIMER };

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyGapState {
  lt: number;
  lk: number | null;
  iv: number;
  cs: boolean;
  ld: number;
  dr: number;
  nu: number;
  sa: number;
  ea: boolean;
}

/**
 * Step 7: turns each meter's readings (in event-time order, from `orderByEventTime`) into one row per
 * interval, and raises the gap alerts.
 *
 * Definitions (the seeds leave them open):
 * - Cadence: a meter's interval starts as `defaultIntervalMs`. A delta equal to it confirms it; a delta
 *   that occurs twice in a row replaces it while it is unconfirmed or when the new delta is shorter, so a
 *   meter reporting every 5 min or every hour is recognised by its third reading. A confirmed cadence is
 *   lengthened only by 8 equal deltas in a row, so repeated equal gaps are not taken for a new cadence.
 * - Gap: between readings `prev` and `cur` with delta `d`, `n = round(d / interval) − 1` intervals are
 *   missing (rounding absorbs clock jitter); the gap's length is `n × interval`, the time no reading covers.
 *   At 15 min, a gap of exactly 4 h is readings at 10:00 and 14:15 (16 missing intervals). B2.3 measures
 *   NULL runs the same way: more than 4 NULLs is more than 1 hour without a value.
 * - gap < `interpolateBelowMs` with a kW on both sides: `n` rows `interpolated`, kW linear in time between
 *   the two, 4 decimals. A short gap beside a NULL reading (or one over the physical limit, flagged
 *   `over_limit`, which is quarantined later) has no value to start or end from: its rows are `missing`
 *   without a length flag.
 * - `interpolateBelowMs` ≤ gap < `extendedFromMs`: `n` rows `missing` flagged `missing_short`, and one
 *   `connectivity` alert of severity `warning` (the seed's "⚠ Warning"; the alert kinds have no
 *   missing_short, and a multi-hour silence is a connectivity problem).
 * - gap ≥ `extendedFromMs`: rows `missing` flagged `missing_extended`, and one `missing_extended` alert of
 *   severity `critical`. It is raised by an event-time timer at `last + interval + extendedFromMs` — the
 *   first moment the watermark proves the gap is extended — so a meter that never sends again is still
 *   reported; when the meter resumes, the alert is not repeated. If the resuming reading reveals the gap
 *   before the watermark fired the timer, the reading raises the same alert (same `ts`, same text).
 * - Bounds: a delta shorter than `minIntervalMs` never becomes the cadence, and a gap of more than
 *   `maxRowsPerGap` intervals emits one `missing` row flagged `missing_extended` at its first interval
 *   (plus the usual extended alert) instead of a row per interval.
 * - NULL readings (kW null, `MISSING_READING`) are kept as they are. When a run of them grows past
 *   `maxConsecutiveNulls`, one `connectivity` alert of severity `warning` is raised for the run: a run of
 *   5 NULLs is a shorter outage than a missing_short gap, which the seed rates a warning. Only a reading
 *   with a value ends a run.
 *
 * Generated rows carry the record id of (meter, canonical ts, empty value), the `source` of the reading
 * that revealed the gap, empty raw value and unit, and placeholder scores for `scoreQuality` to set.
 * Input out of order for its meter (which `orderByEventTime` prevents) passes through without gap logic.
 *
 * The silence timer is set once per silence rather than moved on every reading: when it fires it compares
 * with the meter's current deadline and re-arms if the meter spoke in between. Moving a timer costs a heap
 * entry per reading; this way a reading costs a few comparisons.
 */
export function fillGapsSpec(
  store: StateStore,
  thresholds: RuleProfile['gaps'],
  name = 'fillGaps',
): KeyedProcessSpec<Reading, Reading, never> {
  const { defaultIntervalMs, interpolateBelowMs, extendedFromMs, maxConsecutiveNulls } = thresholds;
  const { minIntervalMs, maxRowsPerGap } = thresholds;
  const meters = store.rows(`${name}/meter`, METER_KEYS, WIDTH, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      const s = value as LegacyGapState;
      d[o + LT] = s.lt;
      if (s.lk !== null) {
        d[o + LK] = s.lk;
        d[o + HK] = 1;
      }
      d[o + IV] = s.iv;
      d[o + CS] = s.cs ? 1 : 0;
      d[o + LD] = s.ld;
      d[o + DR] = s.dr;
      d[o + NU] = s.nu;
      d[o + SA] = s.sa;
      d[o + EA] = s.ea ? 1 : 0;
      return undefined;
    },
  });

  /** The deadline of the silence after the reading at `lt` of a meter reporting every `iv`. */
  const deadlineOf = (lt: number, iv: number): number => lt + iv + extendedFromMs;

  const extendedAlert = (meterId: string, lt: number, iv: number): Alert => ({
    severity: 'critical',
    kind: 'missing_extended',
    meterId,
    ts: deadlineOf(lt, iv),
    message: `meter ${meterId} sent no reading for ${hours(extendedFromMs)} h after ${canonicalTimestamp(lt)}`,
  });

  /** Arms the silence timer of the meter whose row is at `d[o …]`. */
  const armSilence = (ctx: KeyedContext<Reading, never>, d: Float64Array, o: number): void => {
    const deadline = deadlineOf(d[o + LT]!, d[o + IV]!);
    // Only an earlier deadline needs the timer moved (the cadence got shorter); a later one re-arms on firing.
    const sa = d[o + SA]!;
    if (sa === 0 || deadline < sa) {
      ctx.setTimer(SILENCE_TIMER, deadline);
      d[o + SA] = deadline;
    }
  };

  const fill = (
    ctx: KeyedContext<Reading, never>,
    d: Float64Array,
    o: number,
    cur: Reading,
    curKw: number | null,
    missing: number,
  ): void => {
    const interval = d[o + IV]!;
    const gapMs = missing * interval;
    const prevTs = d[o + LT]!;
    const prevKw = d[o + HK] === 1 ? d[o + LK]! : null;
    const alerted = d[o + EA] === 1;
    let status: Reading['status'] = 'missing';
    let flag: ReadingFlag | undefined;
    if (gapMs >= extendedFromMs) {
      flag = 'missing_extended';
      if (!alerted) ctx.tag(ALERTS, extendedAlert(cur.meterId, prevTs, interval));
    } else if (gapMs >= interpolateBelowMs) {
      flag = 'missing_short';
      ctx.tag(ALERTS, {
        severity: 'warning',
        kind: 'connectivity',
        meterId: cur.meterId,
        ts: prevTs + interval,
        message: `meter ${cur.meterId} sent no reading for ${hours(gapMs)} h from ${canonicalTimestamp(prevTs + interval)} (missing_short)`,
      });
    } else if (prevKw !== null && curKw !== null) {
      status = 'interpolated';
      flag = 'interpolated';
    }
    const delta = cur.ts - prevTs;
    if (missing > maxRowsPerGap) {
      // One row stands for the whole span: a gap this long is an outage (or a stray timestamp), and a row
      // per interval would be millions of rows of nothing.
      // The alert is the one the silence timer raises (same ts and text), so it is never doubled.
      if (!alerted) ctx.tag(ALERTS, extendedAlert(cur.meterId, prevTs, interval));
      emitMissing(ctx, cur, prevTs + interval, null, 'missing', 'missing_extended');
      return;
    }
    for (let k = 1; k <= missing; k++) {
      const ts = prevTs + k * interval;
      let kw: number | null = null;
      if (status === 'interpolated') {
        kw = Math.round((prevKw! + ((curKw! - prevKw!) * (ts - prevTs)) / delta) * 10_000) / 10_000;
      }
      emitMissing(ctx, cur, ts, kw, status, flag);
    }
  };

  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const m = ctx.keyNumber;
      const o = meters.open(m);
      if (o < 0) {
        const c = meters.create(m);
        const fresh = meters.data;
        fresh[c + LT] = r.ts;
        const kw = interpolationValue(r);
        if (kw !== null) {
          fresh[c + LK] = kw;
          fresh[c + HK] = 1;
        }
        fresh[c + IV] = defaultIntervalMs;
        fresh[c + NU] = r.kw === null ? 1 : 0;
        armSilence(ctx, fresh, c);
        ctx.emit(r);
        return;
      }
      const d = meters.data;
      const delta = r.ts - d[o + LT]!;
      if (delta <= 0) {
        ctx.emit(r);
        return;
      }
      inferCadence(d, o, delta, minIntervalMs);
      const missing = Math.round(delta / d[o + IV]!) - 1;
      const kw = interpolationValue(r);
      if (missing > 0) fill(ctx, d, o, r, kw, missing);
      if (r.kw === null) {
        const nu = d[o + NU]! + 1;
        d[o + NU] = nu;
        if (nu === maxConsecutiveNulls + 1) {
          ctx.tag(ALERTS, {
            severity: 'warning',
            kind: 'connectivity',
            meterId: r.meterId,
            ts: r.ts,
            message: `meter ${r.meterId} sent ${nu} NULL readings in a row up to ${canonicalTimestamp(r.ts)}`,
          });
        }
      } else d[o + NU] = 0;
      d[o + LT] = r.ts;
      if (kw !== null) {
        d[o + LK] = kw;
        d[o + HK] = 1;
      } else {
        d[o + LK] = 0;
        d[o + HK] = 0;
      }
      d[o + EA] = 0;
      armSilence(ctx, d, o);
      ctx.emit(r);
    },
    onTimer: (ctx, timer) => {
      const o = meters.open(ctx.keyNumber);
      if (o < 0) return;
      const d = meters.data;
      const deadline = deadlineOf(d[o + LT]!, d[o + IV]!);
      if (deadline > timer.time) {
        ctx.setTimer(SILENCE_TIMER, deadline);
        d[o + SA] = deadline;
        return;
      }
      d[o + SA] = 0;
      if (d[o + EA] === 0) {
        d[o + EA] = 1;
        ctx.tag(ALERTS, extendedAlert(ctx.key, d[o + LT]!, d[o + IV]!));
      }
    },
  };
}

/** `fillGapsSpec` as a stage of its own. */
export function fillGaps(
  store: StateStore,
  thresholds: RuleProfile['gaps'],
  name = 'fillGaps',
): Transform<Reading, Reading> {
  return keyedProcess(store, fillGapsSpec(store, thresholds, name));
}

/**
 * The value a gap may be interpolated from: none for a NULL reading, and none for a reading over the
 * physical limit, which only travels this far for the overload rule and is quarantined after it.
 */
function interpolationValue(r: Reading): number | null {
  return hasFlag(r, 'over_limit') ? null : r.kw;
}

/** One generated row of a gap. */
function emitMissing(
  ctx: KeyedContext<Reading, never>,
  cur: Reading,
  ts: number,
  kw: number | null,
  status: Reading['status'],
  flag: ReadingFlag | undefined,
): void {
  ctx.emit({
    meterId: cur.meterId,
    ts,
    kw,
    rawValue: '',
    rawUnit: '',
    status,
    flags: flag === undefined ? NO_FLAGS : [flag],
    warnings: 0,
    qualityScore: 0,
    qualityTier: 'quarantine',
    grade: 'F',
    peakClass: cur.peakClass,
    season: cur.season,
    recordId: recordId(cur.meterId, canonicalTimestamp(ts), ''),
    source: cur.source,
    processedAt: cur.processedAt,
    pipelineVersion: cur.pipelineVersion,
  });
}

/**
 * Deltas below `minIntervalMs` never become the cadence: three readings 1 ms apart are not a 1 ms meter.
 * The meter's row is at `d[o …]`.
 */
export function inferCadence(d: Float64Array, o: number, delta: number, minIntervalMs: number): void {
  d[o + DR] = delta === d[o + LD] ? d[o + DR]! + 1 : 1;
  d[o + LD] = delta;
  const iv = d[o + IV]!;
  if (delta === iv) d[o + CS] = 1;
  else if (delta >= minIntervalMs && d[o + DR]! >= (d[o + CS] === 1 && delta > iv ? LONGER_CADENCE_RUN : 2)) {
    d[o + IV] = delta;
    d[o + CS] = 1;
  }
}

/** A duration in hours as alerts word it (two decimals at most). */
export function hours(ms: number): string {
  return String(Math.round((ms / HOUR) * 100) / 100);
}
