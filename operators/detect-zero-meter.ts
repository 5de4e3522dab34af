import {
  type KeyedProcessSpec,
  keyedProcess,
  type SideInput,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  CADENCE_IV,
  CADENCE_LT,
  type Cadence,
  clearFault,
  excludeFromAnalytics,
  hours,
  isMeasuredValue,
  type OpenFault,
  observeCadenceAt,
  raiseFault,
} from './fault-internals.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { MeterRegistry } from './outputs.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Per meter, a typed row of five numbers (`DenseRows`, by meter number): its cadence, then the current
 * run of zeros. The keyed state is the open fault only, for the few meters that have one.
 */
const LT = CADENCE_LT;
const IV = CADENCE_IV;
/** Event time of the first zero of the current run (meaningful when N > 0). */
const RS = 2;
/** Event time of the latest zero of the run. */
const RE = 3;
/** Zero readings in the run; 0 = no run. */
const N = 4;
const WIDTH = 5;

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyZeroRunState extends Cadence {
  rs: number;
  re: number;
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
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'zeroMinDurationMs'>,
  name = 'detectZeroMeter',
): KeyedProcessSpec<Reading, Reading, OpenFault> {
  const minDuration = thresholds.zeroMinDurationMs;
  const runs = store.rows(`${name}/meter`, METER_KEYS, WIDTH, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      const st = value as LegacyZeroRunState;
      d[o + LT] = st.lt;
      d[o + IV] = st.iv;
      d[o + RS] = st.rs;
      d[o + RE] = st.re;
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
      if (isMeasuredValue(r)) {
        if (r.kw === 0 && registry.value.get(r.meterId)?.vacant !== true) {
          if (d[o + N] === 0) d[o + RS] = r.ts;
          const n = d[o + N]! + 1;
          d[o + N] = n;
          if (r.ts > d[o + RE]! || n === 1) d[o + RE] = r.ts;
          const f = ctx.state;
          if (f !== undefined) f.e = d[o + RE]!;
          else {
            const rs = d[o + RS]!;
            const duration = d[o + RE]! - rs + d[o + IV]!;
            if (duration >= minDuration) {
              ctx.state = raiseFault(
                ctx,
                r.meterId,
                'zero',
                rs,
                r.ts,
                { durationHours: hours(duration), zeroReadings: n, thresholdHours: hours(minDuration) },
                `0 kW for ${hours(duration)} h`,
              );
            }
          }
        } else {
          const f = ctx.state;
          if (f !== undefined) {
            clearFault(ctx, r.meterId, 'zero', f, r.ts, {
              durationHours: hours(d[o + RE]! - d[o + RS]! + d[o + IV]!),
              zeroReadings: d[o + N]!,
              kw: r.kw,
            });
            ctx.state = undefined;
          }
          d[o + N] = 0;
        }
      }
      if (ctx.state !== undefined) excludeFromAnalytics(r);
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
  return keyedProcess(store, detectZeroMeterSpec(store, registry, thresholds, name));
}
