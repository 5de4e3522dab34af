import {
  type KeyedContext,
  keyedProcess,
  type SideInput,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { FaultEvent, HourlyConsumption } from '../schemas/reading.js';
import {
  clearedEvidence,
  DAY_MS,
  faultAlert,
  faultEvent,
  HOUR_MS,
  KW_SCALE,
  type OpenFault,
  round,
} from './fault-internals.js';
import { ALERTS, type MeterRegistry } from './outputs.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Hourly values a meter needs in the window to be judged: one full day, so the daily shape — what the
 * correlation is about — is in it. Belongs in the rule profile when the profile next changes.
 */
export const NEIGHBORHOOD_MIN_HOURS = 24;

const EVAL_TIMER = 'evaluate';

/**
 * State per neighborhood: for each meter, its hourly mean over the window as a ring of W = window/1 h
 * slots, plus the meters currently reported. A slot holds round(mean kW × 10⁴) — an integer, a third
 * shorter in JSON than the 4-decimal kW it stands for — or null where the meter has no aggregate. Hour
 * `h` lives at slot (h − h0) mod W, counted from the neighborhood's first hour, so a series grows from
 * there as hours arrive instead of starting as W nulls; a slot past a series' end is empty.
 * 72 slots × ~5 bytes ≈ 0.4 KB of JSON per meter for the 3-day default; a 50-meter neighborhood ≈ 20 KB.
 */
interface NeighborhoodState {
  /** Epoch hour one past the newest hour held; the ring holds hours [end − W, end). */
  end: number;
  /** Epoch hour of the neighborhood's first aggregate: the ring's origin. */
  h0: number;
  m: Record<string, (number | null)[]>;
  /** Open outlier faults by meter. */
  o: Record<string, OpenFault>;
  /** Consecutive judgements below the threshold, by meter (absent: none). */
  l?: Record<string, number>;
  /** Time of the pending day-end timer, 0 when none: read per element, cheaper than asking the timers. */
  ev: number;
}

/**
 * Neighborhood-outlier fault (architecture doc "Neighborhood Correlation Fault": correlation with nearby
 * meters < 0.3, an atypical pattern): a separate stage keyed by NEIGHBORHOOD, fed by the per-meter hourly
 * aggregates (aggregateHourly, which leaves out `fault_excluded` readings), so it can run on another worker
 * after a repartition. Its main output is the faults.
 *
 * - At every day end in event time (a timer that fires when the watermark passes midnight UTC, after the
 *   day's last hourly panes arrived — or earlier, when a pane of a later day arrives first, see onElement)
 *   each meter with ≥ {@link NEIGHBORHOOD_MIN_HOURS} hourly values in the
 *   trailing `neighborhoodWindowMs` window is correlated (Pearson) with the mean of the OTHER judged meters
 *   of ITS TYPE in its neighborhood (the registry's `meter_type`, a side input) over the same hours (hours
 *   where it has a value and another meter does too). A type needs `neighborhoodMinMeters` judged meters
 *   in the neighborhood; with fewer (the two shops of a residential street) its meters are not judged:
 *   a shop's 08:00–18:00 plateau does not follow homes, and two shops are no norm. Evidence names the type
 *   and the peers the mean was taken over. Correlation strictly below `neighborhoodMinCorrelation`
 *   → FaultEvent `neighborhood_outlier` on the main output (evidence {correlation, hours, meters}) and a
 *   `meter_fault` warning on ALERTS; a reported meter judged at or above the threshold on a later day gets
 *   the clearing event (same windowStart, the final windowEnd). windowStart/windowEnd are the first and last
 *   hours of the meter's data in the window that tripped it; detectedAt is the day end.
 * - Why a plain mean works: households (and, in their own districts, businesses) share the daily shape
 *   (morning/evening peaks, business hours), the weekly shape and the weather; that common signal, not the
 *   level, is what Pearson measures, so clean meters of different sizes correlate with their neighbours
 *   well above 0.3 while an inverted or unrelated profile does not. `HourlyConsumption` carries no meter
 *   type: a neighborhood mixing shops (daytime plateau) with homes (evening peak) could make a shop look
 *   atypical. The simulator builds single-type neighborhoods; with mixed real ones, the stage should take
 *   the registry as a side input and correlate each meter with its own type's mean.
 * - Not evidence, so not reported twice: flat hours (≥ 2 readings, min = max — a zero or stuck run
 *   before its rule detects it; after detection its readings are `fault_excluded` and never aggregated),
 *   and meters whose hourly series is exactly constant (correlation undefined: vacant meters) or
 *   near-constant (hourly CV below `lowVarianceCv`: the low-variance rule's; noise on a flat line
 *   correlates with nothing).
 * - A meter whose ring empties (no aggregates for a whole window: silent, or excluded by another fault)
 *   leaves the state; an open outlier fault on it stays open until it is judged again.
 */
export function detectNeighborhoodOutlier(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<
    RuleProfile['faults'],
    | 'neighborhoodMinCorrelation'
    | 'neighborhoodWindowMs'
    | 'neighborhoodMinMeters'
    | 'lowVarianceCv'
    | 'neighborhoodTrimIqr'
    | 'neighborhoodConsecutive'
  >,
  name = 'detectNeighborhoodOutlier',
): Transform<HourlyConsumption, FaultEvent> {
  const w = Math.max(1, Math.ceil(thresholds.neighborhoodWindowMs / HOUR_MS));
  const {
    neighborhoodMinCorrelation: minCorrelation,
    neighborhoodMinMeters: minMeters,
    lowVarianceCv,
    neighborhoodTrimIqr: trimIqr,
    neighborhoodConsecutive: consecutive,
  } = thresholds;
  const minHours = Math.min(NEIGHBORHOOD_MIN_HOURS, w);
  /** Slot of epoch hour `h`; hours before the origin (still in the window) wrap like any other. */
  const slotOf = (st: NeighborhoodState, h: number): number => (((h - st.h0) % w) + w) % w;
  /** kW of a slot's value (exactly the 4-decimal value the slot was rounded to), or null. */
  const kwAt = (series: (number | null)[], slot: number): number | null => {
    const u = series[slot];
    return u === null || u === undefined ? null : u / KW_SCALE;
  };

  /** Q3 + trimIqr × IQR of the meter's own hourly values in [lo, hi): hours above it are its own loads. */
  const ownFence = (st: NeighborhoodState, series: (number | null)[], lo: number, hi: number): number => {
    const values: number[] = [];
    for (let h = lo; h < hi; h++) {
      const v = kwAt(series, slotOf(st, h));
      if (v !== null) values.push(v);
    }
    if (values.length < 4) return Number.POSITIVE_INFINITY;
    values.sort((a, b) => a - b);
    const q = (p: number) => values[Math.floor(p * (values.length - 1))]!;
    return q(0.75) + trimIqr * (q(0.75) - q(0.25));
  };

  const evaluate = (
    ctx: KeyedContext<FaultEvent, NeighborhoodState>,
    st: NeighborhoodState,
    at: number,
  ): void => {
    const atHour = Math.floor(at / HOUR_MS);
    const lo = Math.max(atHour - w, st.end - w);
    const hi = Math.min(atHour, st.end);
    const span = hi - lo;
    const ids = Object.keys(st.m).sort();
    const judged: string[] = [];
    for (const id of ids) {
      const series = st.m[id]!;
      if (series.every((v) => v === null)) {
        delete st.m[id];
        continue;
      }
      if (span < minHours) continue;
      let n = 0;
      let sum = 0;
      let sumSq = 0;
      for (let h = lo; h < hi; h++) {
        const v = kwAt(series, slotOf(st, h));
        if (v === null) continue;
        n += 1;
        sum += v;
        sumSq += v * v;
      }
      if (n < minHours) continue;
      const mean = sum / n;
      const variance = sumSq / n - mean * mean;
      // Exactly or nearly constant: correlation undefined or meaningless (stuck, zero, vacant, low variance).
      if (!(variance > 0) || !(mean > 0) || Math.sqrt(variance) / mean < lowVarianceCv) continue;
      judged.push(id);
    }
    const byType = new Map<string, string[]>();
    for (const id of judged) {
      const type = registry.value.get(id)?.meterType ?? 'unregistered';
      const group = byType.get(type);
      if (group === undefined) byType.set(type, [id]);
      else group.push(id);
    }
    for (const [type, group] of byType) judgeGroup(ctx, st, at, lo, hi, type, group);
  };

  const judgeGroup = (
    ctx: KeyedContext<FaultEvent, NeighborhoodState>,
    st: NeighborhoodState,
    at: number,
    lo: number,
    hi: number,
    meterType: string,
    judged: string[],
  ): void => {
    const span = hi - lo;
    if (judged.length < minMeters || judged.length < 2) return;
    const total = new Float64Array(span);
    const count = new Uint32Array(span);
    // Each meter's own heavy hours stay out of the mean too: one EV among six homes would set its shape.
    const fences = new Map<string, number>();
    for (const id of judged) {
      const series = st.m[id]!;
      const fence = ownFence(st, series, lo, hi);
      fences.set(id, fence);
      for (let h = lo; h < hi; h++) {
        const v = kwAt(series, slotOf(st, h));
        if (v === null || v > fence) continue;
        total[h - lo] += v;
        count[h - lo] += 1;
      }
    }
    const x = new Float64Array(span);
    const y = new Float64Array(span);
    for (const id of judged) {
      const series = st.m[id]!;
      const fence = fences.get(id)!;
      let pairs = 0;
      let first = -1;
      let last = -1;
      for (let h = lo; h < hi; h++) {
        const v = kwAt(series, slotOf(st, h));
        const i = h - lo;
        if (v === null || count[i] < 2 || v > fence) continue;
        x[pairs] = v;
        y[pairs] = (total[i] - v) / (count[i] - 1);
        pairs += 1;
        if (first < 0) first = h;
        last = h;
      }
      if (pairs < minHours) continue;
      const r = pearson(x, y, pairs);
      if (Number.isNaN(r)) continue;
      const open = st.o[id];
      st.l ??= {};
      const low = st.l;
      if (r < minCorrelation) {
        const times = (low[id] ?? 0) + 1;
        low[id] = times;
        if (open !== undefined) open.e = last * HOUR_MS;
        else if (times >= consecutive) {
          const evidence = {
            status: 'active',
            correlation: round(r),
            hours: pairs,
            meters: judged.length,
            meterType,
            judgements: low[id],
            thresholdCorrelation: minCorrelation,
          };
          const fault: OpenFault = {
            s: first * HOUR_MS,
            e: last * HOUR_MS,
            d: at,
            x: JSON.stringify(evidence),
          };
          st.o[id] = fault;
          ctx.emit(faultEvent(id, 'neighborhood_outlier', fault));
          ctx.tag(
            ALERTS,
            faultAlert(
              id,
              'neighborhood_outlier',
              at,
              `hourly profile correlates ${round(r, 3)} with the mean of ${judged.length - 1} ${meterType} neighbours over ${pairs} h`,
            ),
          );
        }
      } else if (open === undefined) delete low[id];
      else {
        delete low[id];
        const evidence = clearedEvidence(open, at, {
          correlation: round(r),
          hours: pairs,
          meters: judged.length,
        });
        ctx.emit(faultEvent(id, 'neighborhood_outlier', open, evidence));
        delete st.o[id];
      }
    }
  };

  return keyedProcess<HourlyConsumption, FaultEvent, NeighborhoodState>(store, {
    name,
    key: (h) => h.neighborhood,
    onElement: (ctx, h) => {
      const hour = Math.floor(h.hour / HOUR_MS);
      let st = ctx.state;
      if (st === undefined) {
        st = { end: hour + 1, h0: hour, m: {}, o: {}, ev: 0 };
        ctx.state = st;
      }
      const pending = st.ev;
      if (pending !== 0 && h.hour >= pending) {
        // A pane of a later day proves upstream's watermark passed `pending` (aggregateHourly emits a pane
        // only once the watermark passed its hour, and the panes before it came first). Judge those days
        // now, before the ring moves past their hours: a watermark that jumps several days at once (a
        // bounded replay) delivers all the panes ahead of the timers.
        for (let t = pending; t <= h.hour; t += DAY_MS) evaluate(ctx, st, t);
        st.ev = 0;
        ctx.clearTimer(EVAL_TIMER);
      }
      if (hour >= st.end) {
        const steps = Math.min(hour + 1 - st.end, w);
        for (const series of Object.values(st.m)) {
          for (let j = 0; j < steps; j++) {
            const slot = slotOf(st, st.end + j);
            if (slot < series.length) series[slot] = null;
          }
        }
        st.end = hour + 1;
      } else if (hour < st.end - w) return; // older than the window: it can no longer count
      let series = st.m[h.meterId];
      if (series === undefined) {
        series = [];
        st.m[h.meterId] = series;
      }
      const slot = slotOf(st, hour);
      while (series.length < slot) series.push(null);
      // A flat hour (every reading identical: a zero or stuck run not yet detected) is the zero and stuck
      // rules' evidence; correlating it would report the same dead meter again as an outlier.
      // Kept to 0.0001 kW like the readings: a mean of 4-decimal values printed in full is 3× the JSON.
      series[slot] = h.count >= 2 && h.minKw === h.maxKw ? null : Math.round(h.avgKw * KW_SCALE);
      const dayEnd = (Math.floor(h.hour / DAY_MS) + 1) * DAY_MS;
      // A pane of a day already judged joins the next judgement instead of re-judging the past.
      if (dayEnd > ctx.watermark && (st.ev === 0 || dayEnd < st.ev)) {
        st.ev = dayEnd;
        ctx.setTimer(EVAL_TIMER, dayEnd);
      }
    },
    onTimer: (ctx, timer) => {
      const st = ctx.state;
      if (st === undefined) return;
      st.ev = 0;
      evaluate(ctx, st, timer.time);
      // Data beyond this day end (a watermark that lagged, or an earlier day's late pane that moved the
      // timer back) is judged at the following day end.
      if (st.end * HOUR_MS > timer.time) {
        st.ev = timer.time + DAY_MS;
        ctx.setTimer(EVAL_TIMER, st.ev);
      }
      if (Object.keys(st.m).length === 0 && Object.keys(st.o).length === 0) ctx.state = undefined;
    },
  });
}

/** Pearson correlation of the first n values of x and y, two-pass for accuracy; NaN when either is constant. */
function pearson(x: Float64Array, y: Float64Array, n: number): number {
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return Number.NaN;
  return sxy / Math.sqrt(sxx * syy);
}
