import { type KeyedProcessSpec, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { hasFlag } from './add-flag.js';
import {
  CADENCE_IV,
  CADENCE_LT,
  type Cadence,
  clearFault,
  excludeFromAnalytics,
  hours,
  isMeasuredValue,
  KW_SCALE,
  type OpenFault,
  observeCadenceAt,
  raiseFault,
} from './fault-internals.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Per meter, a typed row of six numbers (`DenseRows`, by meter number): its cadence, then the current
 * run. The keyed state is the open fault only, for the few meters that have one.
 */
const LT = CADENCE_LT;
const IV = CADENCE_IV;
/** Event time of the first reading of the current run (meaningful when N > 0). */
const RS = 2;
/** Event time of the latest reading of the run. */
const RE = 3;
/** The run's value: its first reading's kW × 10⁴ (integers: "within 0.01 kW" must not depend on float noise). */
const U = 4;
/** Readings in the run; 0 = no run. */
const N = 5;
const WIDTH = 6;

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyStuckRunState extends Cadence {
  rs: number;
  re: number;
  u: number;
  n: number;
  f: OpenFault | null;
}

/**
 * Stuck fault (architecture doc "Stuck Value Fault", σ² = 0 for ≥ 24 h; B4.1): the meter repeats the same
 * value — every measured reading within `stuckToleranceKw` (default 0: identical; compared in 0.0001 kW, the values' own precision) of the run's first value —
 * for at least `stuckMinDurationMs`, measured first to last reading plus one interval (96 readings at
 * 15 min are exactly 24 h). Comparing against the run's first value, not the previous one, keeps a slow
 * drift from passing as stuck.
 *
 * - Only measured values are evidence; missing rows, interpolated rows and NULL readings are bridged.
 * - Exact zeros are the zero rule's (a dead meter reads 0 kW and must be reported once, as `zero`): a zero
 *   ends any run and never starts one. With the seeds' labels, precision matters more than a second name.
 * - Readings over the physical limit (`over_limit`, on their way to quarantine) are the overload rule's and
 *   are bridged here.
 * - Detection tags FAULTS `stuck` + a `meter_fault` warning; the first reading off the value clears it (the
 *   same row again with the final windowEnd) and starts a new run. Readings from the detecting one to the
 *   clearing one are flagged `fault_excluded`, which keeps them out of the low-variance and erratic-spike
 *   windows downstream (a constant window is not also reported as low variance).
 */
export function detectStuckMeterSpec(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'stuckMinDurationMs' | 'stuckToleranceKw'>,
  name = 'detectStuckMeter',
): KeyedProcessSpec<Reading, Reading, OpenFault> {
  const minDuration = thresholds.stuckMinDurationMs;
  const tolerance = thresholds.stuckToleranceKw;
  const toleranceUnits = Math.round(tolerance * KW_SCALE);
  const runs = store.rows(`${name}/meter`, METER_KEYS, WIDTH, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      const st = value as LegacyStuckRunState;
      d[o + LT] = st.lt;
      d[o + IV] = st.iv;
      d[o + RS] = st.rs;
      d[o + RE] = st.re;
      d[o + U] = st.u;
      d[o + N] = st.n;
      return st.f ?? undefined;
    },
  });
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const m = ctx.keyNumber;
      let o = runs.open(m);
      if (o < 0) {
        o = runs.create(m);
        runs.data[o + LT] = r.ts;
      }
      const d = runs.data;
      observeCadenceAt(d, o, r.ts);
      if (isMeasuredValue(r) && !hasFlag(r, 'over_limit')) {
        const kw = r.kw as number;
        const u = Math.round(kw * KW_SCALE);
        if (u !== 0 && d[o + N]! > 0 && Math.abs(u - d[o + U]!) <= toleranceUnits) {
          const n = d[o + N]! + 1;
          d[o + N] = n;
          if (r.ts > d[o + RE]!) d[o + RE] = r.ts;
          const f = ctx.state;
          if (f !== undefined) f.e = d[o + RE]!;
          else {
            const rs = d[o + RS]!;
            const duration = d[o + RE]! - rs + d[o + IV]!;
            if (duration >= minDuration) {
              const value = d[o + U]! / KW_SCALE;
              ctx.state = raiseFault(
                ctx,
                r.meterId,
                'stuck',
                rs,
                r.ts,
                {
                  valueKw: value,
                  toleranceKw: tolerance,
                  durationHours: hours(duration),
                  readings: n,
                  thresholdHours: hours(minDuration),
                },
                `${value} kW repeated for ${hours(duration)} h`,
              );
            }
          }
        } else {
          const f = ctx.state;
          if (f !== undefined) {
            clearFault(ctx, r.meterId, 'stuck', f, r.ts, {
              durationHours: hours(d[o + RE]! - d[o + RS]! + d[o + IV]!),
              readings: d[o + N]!,
              kw,
            });
            ctx.state = undefined;
          }
          if (u === 0) d[o + N] = 0;
          else {
            d[o + RS] = r.ts;
            d[o + RE] = r.ts;
            d[o + U] = u;
            d[o + N] = 1;
          }
        }
      }
      if (ctx.state !== undefined) excludeFromAnalytics(r);
      ctx.emit(r);
    },
  };
}

/** `detectStuckMeterSpec` as a stage of its own. */
export function detectStuckMeter(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'stuckMinDurationMs' | 'stuckToleranceKw'>,
  name = 'detectStuckMeter',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectStuckMeterSpec(store, thresholds, name));
}
