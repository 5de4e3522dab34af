import {
  type KeyedContext,
  type KeyedProcessSpec,
  keyedProcess,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Alert, Reading, ReadingFlag } from '../schemas/reading.js';
import { byMeter } from './meter-key.js';
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
 * Per-meter state: a handful of numbers, whatever the meter's history. Two-letter names: 50,000 meters'
 * worth of this object is written at every checkpoint.
 */
interface GapState {
  /** Event time of the meter's last reading (NULL readings included). */
  lt: number;
  /** Its kW; null when it was a NULL or over-limit reading, so no interpolation starts from it. */
  lk: number | null;
  /** The meter's cadence, the profile default until its data shows one (see `fillGaps`). */
  iv: number;
  /** The cadence was seen in the data rather than assumed from the profile. */
  cs: boolean;
  /** The previous delta between readings, and how many deltas in a row had it. */
  ld: number;
  dr: number;
  /** NULL readings in a row up to the last reading. */
  nu: number;
  /** When the silence timer is set for, or 0 when none is set. */
  sa: number;
  /** The critical alert for the current silence was raised (by the timer or a reading). */
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
  thresholds: RuleProfile['gaps'],
  name = 'fillGaps',
): KeyedProcessSpec<Reading, Reading, GapState> {
  const { defaultIntervalMs, interpolateBelowMs, extendedFromMs, maxConsecutiveNulls } = thresholds;
  const { minIntervalMs, maxRowsPerGap } = thresholds;

  const deadlineOf = (s: GapState): number => s.lt + s.iv + extendedFromMs;

  const extendedAlert = (meterId: string, s: GapState): Alert => ({
    severity: 'critical',
    kind: 'missing_extended',
    meterId,
    ts: deadlineOf(s),
    message: `meter ${meterId} sent no reading for ${hours(extendedFromMs)} h after ${canonicalTimestamp(s.lt)}`,
  });

  const armSilence = (ctx: KeyedContext<Reading, GapState>, s: GapState): void => {
    const deadline = deadlineOf(s);
    // Only an earlier deadline needs the timer moved (the cadence got shorter); a later one re-arms on firing.
    if (s.sa === 0 || deadline < s.sa) {
      ctx.setTimer(SILENCE_TIMER, deadline);
      s.sa = deadline;
    }
  };

  const fill = (
    ctx: KeyedContext<Reading, GapState>,
    s: GapState,
    cur: Reading,
    curKw: number | null,
    missing: number,
  ): void => {
    const interval = s.iv;
    const gapMs = missing * interval;
    const prevTs = s.lt;
    const prevKw = s.lk;
    let status: Reading['status'] = 'missing';
    let flag: ReadingFlag | undefined;
    if (gapMs >= extendedFromMs) {
      flag = 'missing_extended';
      if (!s.ea) ctx.tag(ALERTS, extendedAlert(cur.meterId, s));
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
      if (!s.ea) ctx.tag(ALERTS, extendedAlert(cur.meterId, s));
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
      const s = ctx.state;
      if (s === undefined) {
        const fresh: GapState = {
          lt: r.ts,
          lk: interpolationValue(r),
          iv: defaultIntervalMs,
          cs: false,
          ld: 0,
          dr: 0,
          nu: r.kw === null ? 1 : 0,
          sa: 0,
          ea: false,
        };
        ctx.state = fresh;
        armSilence(ctx, fresh);
        ctx.emit(r);
        return;
      }
      const delta = r.ts - s.lt;
      if (delta <= 0) {
        ctx.emit(r);
        return;
      }
      inferCadence(s, delta, minIntervalMs);
      const missing = Math.round(delta / s.iv) - 1;
      const kw = interpolationValue(r);
      if (missing > 0) fill(ctx, s, r, kw, missing);
      if (r.kw === null) {
        s.nu++;
        if (s.nu === maxConsecutiveNulls + 1) {
          ctx.tag(ALERTS, {
            severity: 'warning',
            kind: 'connectivity',
            meterId: r.meterId,
            ts: r.ts,
            message: `meter ${r.meterId} sent ${s.nu} NULL readings in a row up to ${canonicalTimestamp(r.ts)}`,
          });
        }
      } else s.nu = 0;
      s.lt = r.ts;
      s.lk = kw;
      s.ea = false;
      armSilence(ctx, s);
      ctx.emit(r);
    },
    onTimer: (ctx, timer) => {
      const s = ctx.state;
      if (s === undefined) return;
      const deadline = deadlineOf(s);
      if (deadline > timer.time) {
        ctx.setTimer(SILENCE_TIMER, deadline);
        s.sa = deadline;
        return;
      }
      s.sa = 0;
      if (!s.ea) {
        s.ea = true;
        ctx.tag(ALERTS, extendedAlert(ctx.key, s));
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
  return keyedProcess(store, fillGapsSpec(thresholds, name));
}

/**
 * The value a gap may be interpolated from: none for a NULL reading, and none for a reading over the
 * physical limit, which only travels this far for the overload rule and is quarantined after it.
 */
function interpolationValue(r: Reading): number | null {
  const flags = r.flags;
  for (let i = 0; i < flags.length; i++) if (flags[i] === 'over_limit') return null;
  return r.kw;
}

/** One generated row of a gap. */
function emitMissing(
  ctx: KeyedContext<Reading, GapState>,
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
    flags: flag === undefined ? [] : [flag],
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

/** Deltas below `minIntervalMs` never become the cadence: three readings 1 ms apart are not a 1 ms meter. */
function inferCadence(s: GapState, delta: number, minIntervalMs: number): void {
  s.dr = delta === s.ld ? s.dr + 1 : 1;
  s.ld = delta;
  if (delta === s.iv) s.cs = true;
  else if (delta >= minIntervalMs && s.dr >= (s.cs && delta > s.iv ? LONGER_CADENCE_RUN : 2)) {
    s.iv = delta;
    s.cs = true;
  }
}

function hours(ms: number): string {
  return String(Math.round((ms / HOUR) * 100) / 100);
}
