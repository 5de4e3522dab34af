import { type KeyedProcessSpec, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  type Cadence,
  clearFault,
  excludeFromAnalytics,
  hasFlag,
  hours,
  isMeasuredValue,
  KW_SCALE,
  type OpenFault,
  observeCadence,
  raiseFault,
} from './fault-internals.js';
import { byMeter } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/** Per-meter state: about 70 bytes of JSON (130 while a fault is open). */
interface StuckRunState extends Cadence {
  /** Event time of the first reading of the current run (meaningful when n > 0). */
  rs: number;
  /** Event time of the latest reading of the run. */
  re: number;
  /** The run's value: its first reading's kW × 10⁴ (integers: "within 0.01 kW" must not depend on float noise). */
  u: number;
  /** Readings in the run; 0 = no run. */
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
  thresholds: Pick<RuleProfile['faults'], 'stuckMinDurationMs' | 'stuckToleranceKw'>,
  name = 'detectStuckMeter',
): KeyedProcessSpec<Reading, Reading, StuckRunState> {
  const minDuration = thresholds.stuckMinDurationMs;
  const tolerance = thresholds.stuckToleranceKw;
  const toleranceUnits = Math.round(tolerance * KW_SCALE);
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { lt: r.ts, iv: 0, rs: 0, re: 0, u: 0, n: 0, f: null };
        ctx.state = st;
      }
      observeCadence(st, r.ts);
      if (isMeasuredValue(r) && !hasFlag(r, 'over_limit')) {
        const kw = r.kw as number;
        const u = Math.round(kw * KW_SCALE);
        if (u !== 0 && st.n > 0 && Math.abs(u - st.u) <= toleranceUnits) {
          st.n += 1;
          if (r.ts > st.re) st.re = r.ts;
          const f = st.f;
          if (f !== null) f.e = st.re;
          else {
            const duration = st.re - st.rs + st.iv;
            if (duration >= minDuration) {
              st.f = raiseFault(
                ctx,
                r.meterId,
                'stuck',
                st.rs,
                r.ts,
                {
                  valueKw: st.u / KW_SCALE,
                  toleranceKw: tolerance,
                  durationHours: hours(duration),
                  readings: st.n,
                  thresholdHours: hours(minDuration),
                },
                `${st.u / KW_SCALE} kW repeated for ${hours(duration)} h`,
              );
            }
          }
        } else {
          const f = st.f;
          if (f !== null) {
            clearFault(ctx, r.meterId, 'stuck', f, r.ts, {
              durationHours: hours(st.re - st.rs + st.iv),
              readings: st.n,
              kw,
            });
            st.f = null;
          }
          if (u === 0) st.n = 0;
          else {
            st.rs = r.ts;
            st.re = r.ts;
            st.u = u;
            st.n = 1;
          }
        }
      }
      if (st.f !== null) excludeFromAnalytics(r);
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
  return keyedProcess(store, detectStuckMeterSpec(thresholds, name));
}
