/**
 * Erratic-spike fault judged against the meter's own normal (the default `faults.spikeRule`,
 * `own_profile`): a short excursion far above what the meter draws at that time of day, that comes back
 * down at once. The seed's literal rule (mean + 4σ of 7 days, `detect-erratic-spike.ts`) fires on the
 * ordinary evening peak of most homes, whose readings are skewed, not normal.
 */
import { type KeyedContext, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  excludeFromAnalytics,
  HOUR_MS,
  isExcludedValue,
  isMeasuredValue,
  KW_SCALE,
  raiseFault,
  round,
} from './fault-internals.js';
import { byMeter } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/** Hours either side of a reading's clock hour that count as "the same time of day". */
const SLOT_REACH_HOURS = 1;
const RELEASE_TIMER = 'release';

/**
 * Per meter: the highest reading of each clock hour over the window, as a ring of epoch hours (hour `h`
 * at `h mod W`; W = window + 2 h so that "7 days ago, one hour later" is still held), and the readings
 * held back while a candidate excursion is judged. One-letter names: this is checkpoint JSON.
 */
interface ExcursionState {
  /** Newest epoch hour the ring holds. */
  hb: number;
  /** Event time of the first reading taken: judging starts `spikeMinHistoryMs` later. */
  fs: number;
  /** Hourly maxima in kW × 10⁴; 0 for an hour without a judged reading. */
  r: number[];
  /** The previous measured value (kW × 10⁴), -1 before the first. */
  pk: number;
  /** Readings held back, the candidate first; null when none is. */
  q: Reading[] | null;
  /** The candidate's threshold and baselines (kW × 10⁴). */
  t: number;
  b: number;
  g: number;
}

type Thresholds = Pick<
  RuleProfile['faults'],
  | 'rollingWindowMs'
  | 'spikeProfileFactor'
  | 'spikeWeekMaxFactor'
  | 'spikeMinExcessKw'
  | 'spikeMaxReadings'
  | 'spikeReturnShare'
  | 'spikeMinHistoryMs'
  | 'spikeMinSlotDays'
>;

/**
 * - Baseline: the highest reading within ±1 h of the same time of day on each of the previous days of
 *   the window (7 by default, weekdays and weekends together: two weekend days are too few to hold a
 *   household's habits, and pooling only raises the baseline), judged once the meter has
 *   `spikeMinHistoryMs` of history and `spikeMinSlotDays` days with readings at that time.
 * - Candidate: a measured reading above `spikeProfileFactor` × that baseline, above `spikeWeekMaxFactor`
 *   × the highest reading of the whole window (so a 7 kW EV night explains a 7 kW evening), at least
 *   `spikeMinExcessKw` above the baseline, and a rise (the reading before was below the threshold).
 * - Isolated: the meter comes back down (below the threshold and below `spikeReturnShare` of the
 *   candidate: a 7 kW charge that dips under the threshold with noise has not come back down) within
 *   `spikeMaxReadings` readings. Longer is a
 *   load that runs (a new appliance, an EV charging for the first time): its readings enter the baseline
 *   and nothing is reported. To see that, the candidate and the readings after it are held back (order
 *   kept) until the excursion ends, or until the watermark reaches the end of the candidate's clock hour
 *   (an event-time timer: the hourly aggregate of that hour must not miss it); undecided then, they go
 *   on unreported.
 * - A spike: one FaultEvent `erratic_spike` (windowStart = the first reading of the excursion, windowEnd =
 *   detectedAt = its last) and a `meter_fault` warning; its readings are flagged `fault_excluded` and stay
 *   out of the baseline, so a second spike at the same hour is judged against the normal, not the first.
 * - Evidence is measured, non-NULL, non-zero values not excluded by another rule (over the limit: the
 *   overload rule's; zero: the zero rule's).
 */
export function detectErraticExcursion(
  store: StateStore,
  thresholds: Thresholds,
  name = 'detectErraticSpike',
): Transform<Reading, Reading> {
  const windowHours = Math.max(1, Math.ceil(thresholds.rollingWindowMs / HOUR_MS));
  const days = Math.max(1, Math.floor(windowHours / 24));
  const w = windowHours + 2 * SLOT_REACH_HOURS;
  const factor = thresholds.spikeProfileFactor;
  const weekFactor = thresholds.spikeWeekMaxFactor;
  const minExcess = Math.round(thresholds.spikeMinExcessKw * KW_SCALE);
  const maxReadings = thresholds.spikeMaxReadings;
  const returnShare = thresholds.spikeReturnShare;
  const { spikeMinHistoryMs: minHistory, spikeMinSlotDays: minSlotDays } = thresholds;

  const advance = (st: ExcursionState, hour: number): void => {
    if (hour <= st.hb) return;
    const steps = Math.min(hour - st.hb, w);
    for (let j = 1; j <= steps; j++) st.r[(st.hb + j) % w] = 0;
    st.hb = hour;
  };
  const held = (st: ExcursionState, hour: number): number =>
    hour > st.hb - w && hour <= st.hb ? st.r[hour % w]! : 0;
  const add = (st: ExcursionState, r: Reading): void => {
    const u = Math.round((r.kw as number) * KW_SCALE);
    st.pk = u;
    if (u === 0) return;
    const hour = Math.floor(r.ts / HOUR_MS);
    advance(st, hour);
    if (hour <= st.hb - w) return;
    const slot = hour % w;
    if (u > st.r[slot]!) st.r[slot] = u;
  };
  /** The threshold for a reading at `hour`, into st.t/b/g; 0 when the meter cannot be judged there yet. */
  const threshold = (st: ExcursionState, hour: number, u: number): number => {
    let base = 0;
    let slotDays = 0;
    for (let d = 1; d <= days; d++) {
      let dayMax = 0;
      for (let dh = -SLOT_REACH_HOURS; dh <= SLOT_REACH_HOURS; dh++) {
        const v = held(st, hour - 24 * d + dh);
        if (v > dayMax) dayMax = v;
      }
      if (dayMax > 0) slotDays += 1;
      if (dayMax > base) base = dayMax;
    }
    if (slotDays < minSlotDays) return 0;
    const local = Math.max(factor * base, base + minExcess);
    if (u <= local) return local; // the common case: no need for the window's maximum
    let top = 0;
    for (let h = hour - windowHours; h < hour; h++) {
      const v = held(st, h);
      if (v > top) top = v;
    }
    st.b = base;
    st.g = top;
    return Math.max(local, weekFactor * top);
  };

  const release = (ctx: KeyedContext<Reading, ExcursionState>, st: ExcursionState, spike: number): void => {
    const q = st.q!;
    st.q = null;
    ctx.clearTimer(RELEASE_TIMER);
    if (spike > 0) {
      const first = q[0]!;
      const last = q[spike - 1]!;
      const kw = first.kw as number;
      raiseFault(
        ctx,
        first.meterId,
        'erratic_spike',
        first.ts,
        last.ts,
        {
          kw,
          readings: spike,
          baselineKw: round(st.b / KW_SCALE),
          windowMaxKw: round(st.g / KW_SCALE),
          thresholdKw: round(st.t / KW_SCALE),
          rule: 'own_profile',
        },
        `${kw} kW is ${round(kw / Math.max(st.b / KW_SCALE, 1e-4), 2)}× the meter's highest reading at that time of day over the last ${days} days (${round(st.b / KW_SCALE, 3)} kW), back down after ${spike} reading(s)`,
      );
    }
    let judged = 0;
    for (const r of q) {
      if (isMeasuredValue(r) && !isExcludedValue(r)) {
        judged += 1;
        if (judged <= spike) excludeFromAnalytics(r);
        else add(st, r);
      }
      ctx.emit(r);
    }
  };

  /** Judges the held excursion; `final`: no more readings will come for it before its hour closes. */
  const decide = (ctx: KeyedContext<Reading, ExcursionState>, st: ExcursionState, final: boolean): void => {
    const q = st.q!;
    let high = 1;
    for (let i = 1; i < q.length; i++) {
      const r = q[i]!;
      if (!isMeasuredValue(r) || isExcludedValue(r)) continue;
      const u = Math.round((r.kw as number) * KW_SCALE);
      if (u <= st.t && u < returnShare * (q[0]!.kw as number) * KW_SCALE) {
        release(ctx, st, high);
        return;
      }
      high += 1;
      if (high > maxReadings) {
        release(ctx, st, 0);
        return;
      }
    }
    if (final) release(ctx, st, 0);
  };

  return keyedProcess<Reading, Reading, ExcursionState>(store, {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st !== undefined && st.q !== null) {
        st.q.push(r);
        decide(ctx, st, false);
        return;
      }
      if (!isMeasuredValue(r) || isExcludedValue(r)) {
        ctx.emit(r);
        return;
      }
      if (st === undefined) {
        st = {
          hb: Math.floor(r.ts / HOUR_MS),
          fs: r.ts,
          r: new Array<number>(w).fill(0),
          pk: -1,
          q: null,
          t: 0,
          b: 0,
          g: 0,
        };
        ctx.state = st;
      }
      const u = Math.round((r.kw as number) * KW_SCALE);
      if (u > 0 && r.ts - st.fs >= minHistory) {
        const hour = Math.floor(r.ts / HOUR_MS);
        const t = threshold(st, hour, u);
        if (t > 0 && u > t && st.pk <= t) {
          st.t = t;
          st.q = [r];
          ctx.setTimer(RELEASE_TIMER, (hour + 1) * HOUR_MS);
          return;
        }
      }
      add(st, r);
      ctx.emit(r);
    },
    onTimer: (ctx) => {
      const st = ctx.state;
      if (st !== undefined && st.q !== null) decide(ctx, st, true);
    },
  });
}
