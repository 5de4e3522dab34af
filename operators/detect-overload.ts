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
  hasFlag,
  isMeasuredValue,
  type OpenFault,
  observeCadence,
  raiseFault,
} from './fault-internals.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { MeterRegistry } from './outputs.js';
import type { RuleProfile } from './rule-profile.js';

/** Per-meter state: about 70 bytes of JSON (150 while a fault is open). */
interface OverloadRunState extends Cadence {
  /** Event time of the first over-limit reading of the current chain (meaningful when n > 0). */
  rs: number;
  /** Event time of the latest over-limit reading of the chain. */
  re: number;
  /** Highest kW in the chain. */
  mx: number;
  /** Over-limit readings in the chain; 0 = no chain. */
  n: number;
  f: OpenFault | null;
}

/**
 * Overload fault (architecture doc "Overload Fault": > 20 kW for ≥ 6 consecutive readings, critical alert +
 * field investigation): `overloadConsecutive` readings in consecutive intervals of the meter, each above
 * the meter's limit.
 *
 * - The limit: the registry's `max_kw`; else `overloadKw` for residential meters (and meters missing from
 *   the registry); a commercial meter without `max_kw` is over its limit when validateReading found it over
 *   the physical limit of its type (flag `over_limit`) — 20 kW is a residential figure and would put every
 *   shop in permanent overload. Any reading flagged `over_limit` counts as over.
 * - Readings above the physical limit are never stored: validateReading tags them, the pipeline rejoins
 *   them before ordering with the flag `over_limit`, and they are quarantined after the detectors. The
 *   detector therefore judges every reading it sees, stored or not.
 * - Consecutive means consecutive intervals: the chain breaks at a measured value at or below the limit,
 *   and when the next over-limit reading is more than one interval (the meter's cadence) after the last.
 *   Interpolated and missing rows and NULL readings do not break it on their own, and readings at or
 *   before the chain's last reading (duplicates, re-sent earlier intervals) are ignored, so the rule also
 *   holds when over-limit readings reach it ahead of their neighbours.
 * - Detection raises a `critical` `meter_fault` alert (the seed's "critical alert"; other faults warn) and
 *   tags FAULTS `overload`; the chain's end clears it (same row, final windowEnd = last over-limit
 *   reading). Readings from the detecting one to the clearing one are flagged `fault_excluded`.
 */
export function detectOverloadSpec(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'overloadConsecutive' | 'overloadKw'>,
  name = 'detectOverload',
): KeyedProcessSpec<Reading, Reading, OverloadRunState> {
  const { overloadConsecutive, overloadKw } = thresholds;
  const meters = store.denseKeys(METER_KEYS);
  // Each meter's limit by its number, worked out once per registry value (and numbering of the meters):
  // a registry lookup hashes the reading's meter id, a string of its own for every reading. NaN: not yet.
  let limits = new Float64Array(0);
  let limitsFor: MeterRegistry | undefined;
  let limitsGeneration = -1;
  const limitOf = (n: number, meterId: string): number => {
    const reg = registry.value;
    if (reg !== limitsFor || meters.generation !== limitsGeneration) {
      limitsFor = reg;
      limitsGeneration = meters.generation;
      limits.fill(Number.NaN);
    }
    if (n >= limits.length) {
      const grown = new Float64Array(Math.max(1024, 2 * n + 2)).fill(Number.NaN);
      grown.set(limits);
      limits = grown;
    }
    let limit = limits[n]!;
    if (Number.isNaN(limit)) {
      const meter = reg.get(meterId);
      limit =
        meter === undefined
          ? overloadKw
          : (meter.maxKw ?? (meter.meterType === 'residential' ? overloadKw : Number.POSITIVE_INFINITY));
      limits[n] = limit;
    }
    return limit;
  };
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { lt: r.ts, iv: 0, rs: 0, re: 0, mx: 0, n: 0, f: null };
        ctx.state = st;
      }
      observeCadence(st, r.ts);
      if (isMeasuredValue(r) && (st.n === 0 || r.ts > st.re)) {
        const kw = r.kw as number;
        const limit = limitOf(ctx.keyNumber, r.meterId);
        if (kw > limit || hasFlag(r, 'over_limit')) {
          if (st.n > 0 && st.iv > 0 && r.ts - st.re > st.iv) endChain(st, r, ctx);
          if (st.n === 0) {
            st.rs = r.ts;
            st.mx = kw;
          } else if (kw > st.mx) st.mx = kw;
          st.n += 1;
          st.re = r.ts;
          const f = st.f;
          if (f !== null) f.e = r.ts;
          else if (st.n >= overloadConsecutive) {
            const limitText = Number.isFinite(limit) ? `${limit} kW` : 'its physical limit';
            st.f = raiseFault(
              ctx,
              r.meterId,
              'overload',
              st.rs,
              r.ts,
              {
                limitKw: Number.isFinite(limit) ? limit : null,
                limitSource:
                  registry.value.get(r.meterId)?.maxKw != null
                    ? 'max_kw'
                    : Number.isFinite(limit)
                      ? 'overloadKw'
                      : 'over_limit',
                consecutive: st.n,
                maxKw: st.mx,
                thresholdConsecutive: overloadConsecutive,
              },
              `above ${limitText} for ${st.n} consecutive readings (max ${st.mx} kW)`,
              'critical',
            );
          }
        } else endChain(st, r, ctx);
      }
      if (st.f !== null) excludeFromAnalytics(r);
      ctx.emit(r);
    },
  };
}

/** `detectOverloadSpec` as a stage of its own. */
export function detectOverload(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'overloadConsecutive' | 'overloadKw'>,
  name = 'detectOverload',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectOverloadSpec(store, registry, thresholds, name));
}

function endChain(st: OverloadRunState, r: Reading, ctx: Parameters<typeof clearFault>[0]): void {
  const f = st.f;
  if (f !== null) {
    clearFault(ctx, r.meterId, 'overload', f, r.ts, { consecutive: st.n, maxKw: st.mx, kw: r.kw });
    st.f = null;
  }
  st.n = 0;
}
