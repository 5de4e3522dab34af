import { type KeyedContext, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  type BucketRing,
  bucketCount,
  bucketOf,
  type Cadence,
  clearFault,
  DAY_MS,
  excludeFromAnalytics,
  hours,
  type OpenFault,
  RING_TOTALS,
  raiseFault,
  ringArray,
  ringSlot,
  ringWindowStart,
  round,
} from './fault-internals.js';
import { byMeter } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

const FIELDS = 2;

/**
 * Per-meter state: up to 84 buckets of [rows, missing] — about 400–500 bytes of JSON for a 7-day window.
 * The ring's `fs` is the meter's first row.
 */
interface CommState extends BucketRing, Cadence {
  f: OpenFault | null;
  /** The latest row before the silence timer counted intervals as missing (null when it has not). */
  sv: number | null;
}

const SILENCE_TIMER = 'silence';

/**
 * Communication-failure fault (B4.3: > 20 % missing readings over 7 days): the share of the meter's
 * expected readings that did not arrive, over the rolling `rollingWindowMs` window (2-hour buckets).
 *
 * - After fillGaps every interval of the meter has a row, so rows = expected readings. Missing = rows with
 *   no value from the meter: `missing` rows (gaps ≥ 4 h), NULL readings (`MISSING_READING`), and also
 *   interpolated rows — those readings never arrived either (fillGaps filled gaps < 4 h), and a meter that
 *   drops every third reading has a communication failure although all its gaps are short. Readings over the
 *   physical limit did arrive and count as present.
 * - Judged at every row once at least `commMinObservedMs` (1 day by default) of the meter has been
 *   observed, over the observed span up to the full window, so a 1-week run is judged from its second day:
 *   a share over a few hours is noise (one 4-hour gap is 100 %), and waiting for the full 7-day window the
 *   seed names would leave a meter unwatched in its first week; set it to 7 days for the literal reading. Strict:
 *   exactly 20 % is not a fault.
 * - windowStart is the start of the window judged (the meter's first row while the window is not full);
 *   detection tags FAULTS `comm_failure` + a `meter_fault` warning; the first row at which the share is
 *   back at or below the threshold clears it (final windowEnd = the last row in failure). Rows from the
 *   detecting one to the clearing one are flagged `fault_excluded`.
 * - A meter that goes silent sends no rows to judge: an event-time timer stands in for them. It is armed
 *   at the earliest time the silence alone could push the share over the threshold; when the watermark
 *   passes it, every interval since the meter's last row up to the timer's time is counted as missing, one
 *   by one through the same rule as a row, stopping at the fault. Those are exactly the rows fillGaps emits
 *   when the meter resumes (they pass through uncounted then), so the fault (window, detection time, evidence)
 *   is a function of event time alone, whether the watermark or the meter's next reading comes first.
 *   Limits: this holds while the cadence seen here is the one fillGaps fills with, and a reading arriving
 *   behind the watermark (in order for its meter) is taken back out of the missing count but cannot undo a
 *   fault already raised.
 * - Overlaps: missing rows and NULLs are neutral for every value rule, so a silent meter is reported only
 *   here (and by fillGaps' `missing_extended` alert, which is not a fault).
 */
export function detectCommFailure(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'commMissingShare'> &
    Partial<Pick<RuleProfile['faults'], 'commMinObservedMs'>>,
  name = 'detectCommFailure',
): Transform<Reading, Reading> {
  const k = bucketCount(thresholds.rollingWindowMs);
  const tot = RING_TOTALS;
  const maxShare = thresholds.commMissingShare;
  const minObserved = thresholds.commMinObservedMs ?? DAY_MS;

  /** Counts one expected reading at `ts` (after the latest one) and raises or clears the fault. */
  const count = (
    ctx: KeyedContext<Reading, CommState>,
    st: CommState,
    meterId: string,
    ts: number,
    missing: number,
  ): void => {
    const off = ringSlot(st, k, FIELDS, ts);
    if (off < 0) return;
    const ring = st.r;
    ring[off] += 1;
    ring[off + 1] += missing;
    ring[tot] += 1;
    ring[tot + 1] += missing;
    const expected = ring[tot];
    const missed = ring[tot + 1];
    const windowStart = ringWindowStart(st, k);
    const observed = ts + st.iv - windowStart;
    if (observed < minObserved) return;
    const share = missed / expected;
    const f = st.f;
    if (share > maxShare) {
      if (f !== null) f.e = ts;
      else {
        st.f = raiseFault(
          ctx,
          meterId,
          'comm_failure',
          windowStart,
          ts,
          {
            missingShare: round(share),
            missing: missed,
            expected: expected,
            observedHours: hours(observed),
            thresholdShare: maxShare,
          },
          `${round(share * 100, 1)} % of ${expected} expected readings missing over ${hours(observed)} h`,
        );
      }
    } else if (f !== null) {
      clearFault(ctx, meterId, 'comm_failure', f, ts, {
        missingShare: round(share),
        missing: missed,
        expected: expected,
      });
      st.f = null;
    }
  };

  /** The earliest time at which silence from the latest row on could alone push the share over the threshold. */
  const silenceDeadline = (st: CommState): number => {
    const intervals = Math.max(0, Math.floor((maxShare * st.r[tot]! - st.r[tot + 1]!) / (1 - maxShare))) + 1;
    return Math.max(st.lt + intervals * st.iv, ringWindowStart(st, k) + minObserved - st.iv);
  };

  return keyedProcess<Reading, Reading, CommState>(store, {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { hb: bucketOf(r.ts), r: ringArray(FIELDS), fs: r.ts, lt: r.ts, iv: 0, f: null, sv: null };
        ctx.state = st;
      }
      const step = r.ts - st.lt;
      if (step > 0) {
        if (st.iv === 0 || step < st.iv) st.iv = step;
        st.lt = r.ts;
      } else if (step < 0 || st.r[tot] > 0 || st.iv > 0) {
        // A row at or before the latest one: an over-limit reading rejoined beside its interval's row, a
        // duplicate, or a row the silence timer already counted as missing. A reading that arrived late
        // behind the watermark is taken back out of the missing count; it is not another expected reading.
        if (st.sv !== null && r.ts > st.sv && r.kw !== null && r.status === 'measured') {
          const off = ringSlot(st, k, FIELDS, r.ts);
          if (off >= 0 && st.r[off + 1]! > 0) {
            st.r[off + 1] -= 1;
            st.r[tot + 1] -= 1;
          }
        }
        if (st.f !== null && r.ts >= st.f.d) excludeFromAnalytics(r);
        ctx.emit(r);
        return;
      }
      st.sv = null;
      count(ctx, st, r.meterId, r.ts, r.kw === null || r.status !== 'measured' ? 1 : 0);
      if (st.f !== null) excludeFromAnalytics(r);
      else if (st.iv > 0 && ctx.timerTime(SILENCE_TIMER) === undefined) {
        ctx.setTimer(SILENCE_TIMER, silenceDeadline(st) + 1);
      }
      ctx.emit(r);
    },
    onTimer: (ctx, timer) => {
      const st = ctx.state;
      if (st === undefined || st.f !== null || st.iv === 0) return;
      const deadline = silenceDeadline(st);
      if (timer.time <= deadline) {
        ctx.setTimer(SILENCE_TIMER, deadline + 1);
        return;
      }
      // The timer is set 1 ms past the interval it judges: a watermark W releases only the readings before W
      // (orderByEventTime), so only then is a reading at the interval's own time known not to come in order.
      // The watermark proves no reading of the meter before timer.time is still coming in order: the rows
      // fillGaps will emit for the silence (one per interval, none with a value) are counted now, one by
      // one, exactly as the rows would be, so the fault and its window do not depend on whether the timer
      // or the meter's next reading comes first. Counting stops at the fault; later rows count as usual.
      if (st.sv === null) st.sv = st.lt;
      for (let ts = st.lt + st.iv; ts < timer.time; ts += st.iv) {
        st.lt = ts;
        count(ctx, st, ctx.key, ts, 1);
        if (st.f !== null) return;
      }
      ctx.setTimer(SILENCE_TIMER, silenceDeadline(st) + 1);
    },
  });
}
