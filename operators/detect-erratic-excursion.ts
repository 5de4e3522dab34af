/**
 * Erratic-spike fault judged against the meter's own normal (the default `faults.spikeRule`,
 * `own_profile`): a short excursion far above what the meter draws at that time of day, that comes back
 * down at once. The seed's literal rule (mean + 4σ of 7 days, `detect-erratic-spike.ts`) fires on the
 * ordinary evening peak of most homes, whose readings are skewed, not normal.
 */
import {
  type KeyedContext,
  type KeyedProcessSpec,
  keyedProcess,
  type StateStore,
  type Transform,
} from '../core/index.js';
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
 * Per meter, two rows of numbers in the store's rows (`DenseRows`, by meter number): six fields, and the
 * highest reading of each clock hour over the window, as a ring of epoch hours (hour `h` at `h mod W`;
 * W = window + 2 h so that "7 days ago, one hour later" is still held). Numbers in typed arrays rather
 * than a JSON object per meter: the ring is the largest per-meter state of the graph, and held apart
 * from the fields (a time in ms, fractional thresholds) its whole-number maxima checkpoint as int32.
 */
/** Newest epoch hour the ring holds. */
const HB = 0;
/** Event time of the first reading taken: judging starts `spikeMinHistoryMs` later. */
const FS = 1;
/** The previous measured value (kW × 10⁴), -1 before the first. */
const PK = 2;
/** The candidate's threshold and baselines (kW × 10⁴). */
const T = 3;
const B = 4;
const G = 5;
const FIELDS = 6;

/**
 * The keyed state, only while a candidate excursion is judged: the readings held back, the candidate
 * first.
 */
type HeldReadings = Reading[];

/** The whole per-meter state as checkpoints of layout meter-quality/5 hold it (JSON). */
interface LegacyExcursionState {
  hb: number;
  fs: number;
  r: number[];
  pk: number;
  q: Reading[] | null;
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
export function detectErraticExcursionSpec(
  store: StateStore,
  thresholds: Thresholds,
  name = 'detectErraticSpike',
): KeyedProcessSpec<Reading, Reading, HeldReadings> {
  const windowHours = Math.max(1, Math.ceil(thresholds.rollingWindowMs / HOUR_MS));
  const days = Math.max(1, Math.floor(windowHours / 24));
  const w = windowHours + 2 * SLOT_REACH_HOURS;
  const factor = thresholds.spikeProfileFactor;
  const weekFactor = thresholds.spikeWeekMaxFactor;
  const minExcess = Math.round(thresholds.spikeMinExcessKw * KW_SCALE);
  const maxReadings = thresholds.spikeMaxReadings;
  const returnShare = thresholds.spikeReturnShare;
  const { spikeMinHistoryMs: minHistory, spikeMinSlotDays: minSlotDays } = thresholds;
  /** Hourly maxima in kW × 10⁴; 0 for an hour without a judged reading. */
  const maxima = store.rows(`${name}/maxima`, byMeter.index, w);
  const fields = store.rows(`${name}/fields`, byMeter.index, FIELDS, {
    namespace: name,
    upgrade: (value, n, d, o) => {
      const st = value as LegacyExcursionState;
      d[o + HB] = st.hb;
      d[o + FS] = st.fs;
      d[o + PK] = st.pk;
      d[o + T] = st.t;
      d[o + B] = st.b;
      d[o + G] = st.g;
      const m = maxima.create(n);
      const ring = maxima.data;
      for (let i = 0; i < Math.min(w, st.r.length); i++) ring[m + i] = st.r[i]!;
      return st.q ?? undefined;
    },
  });

  // The current meter's rows: `f` / `m` are the live buffers and `fo` / `mo` its offsets in them, set by
  // `open` or `create` (a created row may move the buffers) before the functions below run.
  let f = fields.data;
  let fo = 0;
  let m = maxima.data;
  let mo = 0;
  const open = (n: number): boolean => {
    fo = fields.open(n);
    if (fo < 0) return false;
    mo = maxima.open(n);
    f = fields.data;
    m = maxima.data;
    return true;
  };
  const create = (n: number, r: Reading): void => {
    fo = fields.create(n);
    mo = maxima.create(n);
    f = fields.data;
    m = maxima.data;
    f[fo + HB] = Math.floor(r.ts / HOUR_MS);
    f[fo + FS] = r.ts;
    f[fo + PK] = -1;
  };

  const advance = (hour: number): void => {
    const hb = f[fo + HB]!;
    if (hour <= hb) return;
    const steps = Math.min(hour - hb, w);
    for (let j = 1; j <= steps; j++) m[mo + ((hb + j) % w)] = 0;
    f[fo + HB] = hour;
  };
  const held = (hour: number): number => {
    const hb = f[fo + HB]!;
    return hour > hb - w && hour <= hb ? m[mo + (hour % w)]! : 0;
  };
  const add = (r: Reading): void => {
    const u = Math.round((r.kw as number) * KW_SCALE);
    f[fo + PK] = u;
    if (u === 0) return;
    const hour = Math.floor(r.ts / HOUR_MS);
    advance(hour);
    if (hour <= f[fo + HB]! - w) return;
    const slot = mo + (hour % w);
    if (u > m[slot]!) m[slot] = u;
  };
  /** The threshold for a reading at `hour`, baselines into B/G; 0 when the meter cannot be judged there yet. */
  const threshold = (hour: number, u: number): number => {
    let base = 0;
    let slotDays = 0;
    for (let day = 1; day <= days; day++) {
      let dayMax = 0;
      for (let dh = -SLOT_REACH_HOURS; dh <= SLOT_REACH_HOURS; dh++) {
        const v = held(hour - 24 * day + dh);
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
      const v = held(h);
      if (v > top) top = v;
    }
    f[fo + B] = base;
    f[fo + G] = top;
    return Math.max(local, weekFactor * top);
  };

  const release = (ctx: KeyedContext<Reading, HeldReadings>, q: HeldReadings, spike: number): void => {
    ctx.state = undefined;
    ctx.clearTimer(RELEASE_TIMER);
    if (spike > 0) {
      const first = q[0]!;
      const last = q[spike - 1]!;
      const kw = first.kw as number;
      const b = f[fo + B]!;
      raiseFault(
        ctx,
        first.meterId,
        'erratic_spike',
        first.ts,
        last.ts,
        {
          kw,
          readings: spike,
          baselineKw: round(b / KW_SCALE),
          windowMaxKw: round(f[fo + G]! / KW_SCALE),
          thresholdKw: round(f[fo + T]! / KW_SCALE),
          rule: 'own_profile',
        },
        `${kw} kW is ${round(kw / Math.max(b / KW_SCALE, 1e-4), 2)}× the meter's highest reading at that time of day over the last ${days} days (${round(b / KW_SCALE, 3)} kW), back down after ${spike} reading(s)`,
      );
    }
    let judged = 0;
    for (const r of q) {
      if (isMeasuredValue(r) && !isExcludedValue(r)) {
        judged += 1;
        if (judged <= spike) excludeFromAnalytics(r);
        else add(r);
      }
      ctx.emit(r);
    }
  };

  /** Judges the held excursion; `final`: no more readings will come for it before its hour closes. */
  const decide = (ctx: KeyedContext<Reading, HeldReadings>, q: HeldReadings, final: boolean): void => {
    open(ctx.keyNumber);
    const t = f[fo + T]!;
    let high = 1;
    for (let i = 1; i < q.length; i++) {
      const r = q[i]!;
      if (!isMeasuredValue(r) || isExcludedValue(r)) continue;
      const u = Math.round((r.kw as number) * KW_SCALE);
      if (u <= t && u < returnShare * (q[0]!.kw as number) * KW_SCALE) {
        release(ctx, q, high);
        return;
      }
      high += 1;
      if (high > maxReadings) {
        release(ctx, q, 0);
        return;
      }
    }
    if (final) release(ctx, q, 0);
  };

  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const q = ctx.state;
      if (q !== undefined) {
        q.push(r);
        decide(ctx, q, false);
        return;
      }
      if (!isMeasuredValue(r) || isExcludedValue(r)) {
        ctx.emit(r);
        return;
      }
      const n = ctx.keyNumber;
      if (!open(n)) create(n, r);
      const u = Math.round((r.kw as number) * KW_SCALE);
      if (u > 0 && r.ts - f[fo + FS]! >= minHistory) {
        const hour = Math.floor(r.ts / HOUR_MS);
        const t = threshold(hour, u);
        if (t > 0 && u > t && f[fo + PK]! <= t) {
          f[fo + T] = t;
          ctx.state = [r];
          ctx.setTimer(RELEASE_TIMER, (hour + 1) * HOUR_MS);
          return;
        }
      }
      add(r);
      ctx.emit(r);
    },
    onTimer: (ctx) => {
      const q = ctx.state;
      if (q !== undefined) decide(ctx, q, true);
    },
  };
}

/** `detectErraticExcursionSpec` as a stage of its own. */
export function detectErraticExcursion(
  store: StateStore,
  thresholds: Thresholds,
  name = 'detectErraticSpike',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectErraticExcursionSpec(store, thresholds, name));
}
