import {
  type KeyedContext,
  type KeyedProcessSpec,
  keyedProcess,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  bucketCount,
  clearFault,
  DAY_MS,
  excludeFromAnalytics,
  hours,
  type OpenFault,
  raiseFault,
  round,
} from './fault-internals.js';
import { listRingSlot, listRingWindowStart, RING_TOT, startListRing } from './list-ring.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

const FIELDS = 2;

/**
 * Per meter, a row of three numbers beside its ring: the latest row's time (`lt`), the cadence (`iv`, the
 * smallest step seen; 0 until a second row), and the latest row before the silence timer counted
 * intervals as missing (`sv`, NaN when it has not).
 */
const LT = 0;
const IV = 1;
const SV = 2;
const WIDTH = 3;

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
export function detectCommFailureSpec(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'commMissingShare'> &
    Partial<Pick<RuleProfile['faults'], 'commMinObservedMs'>>,
  name = 'detectCommFailure',
): KeyedProcessSpec<Reading, Reading, OpenFault> {
  const k = bucketCount(thresholds.rollingWindowMs);
  const tot = RING_TOT;
  const maxShare = thresholds.commMissingShare;
  const minObserved = thresholds.commMinObservedMs ?? DAY_MS;
  // Per meter: its ring of up to 84 buckets of [rows, missing] in a typed list (`list-ring.ts`, whose
  // first row is the ring's origin), its three numbers in a typed row; the keyed state is the open fault
  // only, for the few meters that have one.
  const rings = store.vectors(`${name}/ring`, METER_KEYS);
  const meters = store.rows(`${name}/meter`, METER_KEYS, WIDTH);

  /** Counts one expected reading of meter `m` at `ts` (after the latest one) and raises or clears the fault. */
  const count = (
    ctx: KeyedContext<Reading, OpenFault>,
    m: number,
    meterId: string,
    ts: number,
    missing: number,
  ): void => {
    const off = listRingSlot(rings, m, k, FIELDS, ts);
    if (off < 0) return;
    const ring = rings.array(m);
    ring[off]! += 1;
    ring[off + 1]! += missing;
    ring[tot]! += 1;
    ring[tot + 1]! += missing;
    const expected = ring[tot]!;
    const missed = ring[tot + 1]!;
    const windowStart = listRingWindowStart(ring, k);
    const observed = ts + meters.data[m * WIDTH + IV]! - windowStart;
    if (observed < minObserved) return;
    const share = missed / expected;
    const f = ctx.state;
    if (share > maxShare) {
      if (f !== undefined) f.e = ts;
      else {
        ctx.state = raiseFault(
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
    } else if (f !== undefined) {
      clearFault(ctx, meterId, 'comm_failure', f, ts, {
        missingShare: round(share),
        missing: missed,
        expected: expected,
      });
      ctx.state = undefined;
    }
  };

  /** The earliest time at which silence from meter `m`'s latest row on could alone push the share over the threshold. */
  const silenceDeadline = (m: number): number => {
    const ring = rings.array(m);
    const d = meters.data;
    const o = m * WIDTH;
    const intervals = Math.max(0, Math.floor((maxShare * ring[tot]! - ring[tot + 1]!) / (1 - maxShare))) + 1;
    return Math.max(
      d[o + LT]! + intervals * d[o + IV]!,
      listRingWindowStart(ring, k) + minObserved - d[o + IV]!,
    );
  };

  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const m = ctx.keyNumber;
      let o = meters.open(m);
      if (o < 0) {
        o = meters.create(m);
        const fresh = meters.data;
        fresh[o + LT] = r.ts;
        fresh[o + SV] = Number.NaN;
        startListRing(rings, m, k, FIELDS, r.ts);
      }
      const d = meters.data;
      const step = r.ts - d[o + LT]!;
      if (step > 0) {
        if (d[o + IV] === 0 || step < d[o + IV]!) d[o + IV] = step;
        d[o + LT] = r.ts;
      } else if (step < 0 || rings.array(m)[tot]! > 0 || d[o + IV]! > 0) {
        // A row at or before the latest one: an over-limit reading rejoined beside its interval's row, a
        // duplicate, or a row the silence timer already counted as missing. A reading that arrived late
        // behind the watermark is taken back out of the missing count; it is not another expected reading.
        if (!Number.isNaN(d[o + SV]!) && r.ts > d[o + SV]! && r.kw !== null && r.status === 'measured') {
          const off = listRingSlot(rings, m, k, FIELDS, r.ts);
          const ring = rings.array(m);
          if (off >= 0 && ring[off + 1]! > 0) {
            ring[off + 1]! -= 1;
            ring[tot + 1]! -= 1;
          }
        }
        const f = ctx.state;
        if (f !== undefined && r.ts >= f.d) excludeFromAnalytics(r);
        ctx.emit(r);
        return;
      }
      d[o + SV] = Number.NaN;
      count(ctx, m, r.meterId, r.ts, r.kw === null || r.status !== 'measured' ? 1 : 0);
      if (ctx.state !== undefined) excludeFromAnalytics(r);
      else if (meters.data[o + IV]! > 0 && ctx.timerTime(SILENCE_TIMER) === undefined) {
        ctx.setTimer(SILENCE_TIMER, silenceDeadline(m) + 1);
      }
      ctx.emit(r);
    },
    onTimer: (ctx, timer) => {
      const m = ctx.keyNumber;
      const o = meters.open(m);
      if (o < 0 || ctx.state !== undefined || meters.data[o + IV] === 0) return;
      const deadline = silenceDeadline(m);
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
      const d = meters.data;
      if (Number.isNaN(d[o + SV]!)) d[o + SV] = d[o + LT]!;
      const iv = d[o + IV]!;
      for (let ts = d[o + LT]! + iv; ts < timer.time; ts += iv) {
        d[o + LT] = ts;
        count(ctx, m, ctx.key, ts, 1);
        if (ctx.state !== undefined) return;
      }
      ctx.setTimer(SILENCE_TIMER, silenceDeadline(m) + 1);
    },
  };
}

/** `detectCommFailureSpec` as a stage of its own. */
export function detectCommFailure(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'commMissingShare'> &
    Partial<Pick<RuleProfile['faults'], 'commMinObservedMs'>>,
  name = 'detectCommFailure',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectCommFailureSpec(store, thresholds, name));
}
