import {
  type KeyedProcessSpec,
  keyedProcess,
  type SideInput,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  type Cadence,
  clearFault,
  excludeFromAnalytics,
  hours,
  isMeasuredValue,
  type OpenFault,
  observeCadence,
  raiseFault,
} from './fault-internals.js';
import { byMeter } from './meter-key.js';
import type { MeterRegistry } from './outputs.js';
import type { RuleProfile } from './rule-profile.js';

/** Per-meter state: about 60 bytes of JSON (120 while a fault is open). */
interface ZeroRunState extends Cadence {
  /** Event time of the first zero of the current run (meaningful when n > 0). */
  rs: number;
  /** Event time of the latest zero of the run. */
  re: number;
  /** Zero readings in the run; 0 = no run. */
  n: number;
  f: OpenFault | null;
}

/**
 * Zero fault (architecture doc "Zero Value Fault"; B3.2): a meter reporting 0 kW continuously for at least
 * `zeroMinDurationMs` (48 h by default; B3.2 says 24 h: set the profile to use it). The run lasts from its
 * first to its latest zero reading plus one interval (readings stand for the interval they start), so 192
 * zeros 15 min apart are exactly 48 h.
 *
 * - Only measured values are evidence. A measured non-zero value ends the run; missing rows, interpolated
 *   rows and NULL readings neither break nor extend it (the meter said nothing about its consumption; a
 *   silent meter is the communication-failure rule's business), so a zero run bridges them.
 * - Meters the registry marks vacant are excluded: for them a zero breaks any run and clears an open fault.
 *   The registry is read only for zero readings.
 * - Detection: a FaultEvent `zero` on FAULTS (windowStart = first zero, windowEnd = the reading that reached
 *   the duration) and a `meter_fault` warning on ALERTS. Clearing, at the first measured non-zero value:
 *   the same row again with the final windowEnd (the last zero). From the detecting reading until the
 *   clearing one, readings are flagged `fault_excluded`.
 * - Exact zeros are only this rule's: the stuck rule ignores them, and the low-variance rule needs a mean
 *   above zero.
 */
export function detectZeroMeterSpec(
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'zeroMinDurationMs'>,
  name = 'detectZeroMeter',
): KeyedProcessSpec<Reading, Reading, ZeroRunState> {
  const minDuration = thresholds.zeroMinDurationMs;
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { lt: r.ts, iv: 0, rs: 0, re: 0, n: 0, f: null };
        ctx.state = st;
      }
      observeCadence(st, r.ts);
      if (isMeasuredValue(r)) {
        if (r.kw === 0 && registry.value.get(r.meterId)?.vacant !== true) {
          if (st.n === 0) st.rs = r.ts;
          st.n += 1;
          if (r.ts > st.re || st.n === 1) st.re = r.ts;
          const f = st.f;
          if (f !== null) f.e = st.re;
          else {
            const duration = st.re - st.rs + st.iv;
            if (duration >= minDuration) {
              st.f = raiseFault(
                ctx,
                r.meterId,
                'zero',
                st.rs,
                r.ts,
                { durationHours: hours(duration), zeroReadings: st.n, thresholdHours: hours(minDuration) },
                `0 kW for ${hours(duration)} h`,
              );
            }
          }
        } else {
          const f = st.f;
          if (f !== null) {
            clearFault(ctx, r.meterId, 'zero', f, r.ts, {
              durationHours: hours(st.re - st.rs + st.iv),
              zeroReadings: st.n,
              kw: r.kw,
            });
            st.f = null;
          }
          st.n = 0;
        }
      }
      if (st.f !== null) excludeFromAnalytics(r);
      ctx.emit(r);
    },
  };
}

/** `detectZeroMeterSpec` as a stage of its own. */
export function detectZeroMeter(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'zeroMinDurationMs'>,
  name = 'detectZeroMeter',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectZeroMeterSpec(registry, thresholds, name));
}
