import {
  type KeyedContext,
  type KeyedProcessSpec,
  keyedProcess,
  type SideInput,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { hasFlag } from './add-flag.js';
import {
  CADENCE_IV,
  CADENCE_LT,
  type Cadence,
  clearFault,
  excludeFromAnalytics,
  isMeasuredValue,
  type OpenFault,
  observeCadenceAt,
  raiseFault,
} from './fault-internals.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { MeterRegistry } from './outputs.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Per meter, a typed row of six numbers (`DenseRows`, by meter number): its cadence, then the current
 * chain of over-limit readings. The keyed state is the open fault only, for the few meters that have one.
 */
const LT = CADENCE_LT;
const IV = CADENCE_IV;
/** Event time of the first over-limit reading of the current chain (meaningful when N > 0). */
const RS = 2;
/** Event time of the latest over-limit reading of the chain. */
const RE = 3;
/** Highest kW in the chain. */
const MX = 4;
/** Over-limit readings in the chain; 0 = no chain. */
const N = 5;
const WIDTH = 6;

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyOverloadRunState extends Cadence {
  rs: number;
  re: number;
  mx: number;
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
): KeyedProcessSpec<Reading, Reading, OpenFault> {
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
  const chains = store.rows(`${name}/meter`, METER_KEYS, WIDTH, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      const st = value as LegacyOverloadRunState;
      d[o + LT] = st.lt;
      d[o + IV] = st.iv;
      d[o + RS] = st.rs;
      d[o + RE] = st.re;
      d[o + MX] = st.mx;
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
      let o = chains.open(m);
      if (o < 0) {
        o = chains.create(m);
        chains.data[o + LT] = r.ts;
      }
      const d = chains.data;
      observeCadenceAt(d, o, r.ts);
      if (isMeasuredValue(r) && (d[o + N] === 0 || r.ts > d[o + RE]!)) {
        const kw = r.kw as number;
        const limit = limitOf(m, r.meterId);
        if (kw > limit || hasFlag(r, 'over_limit')) {
          if (d[o + N]! > 0 && d[o + IV]! > 0 && r.ts - d[o + RE]! > d[o + IV]!) endChain(ctx, d, o, r);
          if (d[o + N] === 0) {
            d[o + RS] = r.ts;
            d[o + MX] = kw;
          } else if (kw > d[o + MX]!) d[o + MX] = kw;
          const n = d[o + N]! + 1;
          d[o + N] = n;
          d[o + RE] = r.ts;
          const f = ctx.state;
          if (f !== undefined) f.e = r.ts;
          else if (n >= overloadConsecutive) {
            const limitText = Number.isFinite(limit) ? `${limit} kW` : 'its physical limit';
            const mx = d[o + MX]!;
            ctx.state = raiseFault(
              ctx,
              r.meterId,
              'overload',
              d[o + RS]!,
              r.ts,
              {
                limitKw: Number.isFinite(limit) ? limit : null,
                limitSource:
                  registry.value.get(r.meterId)?.maxKw != null
                    ? 'max_kw'
                    : Number.isFinite(limit)
                      ? 'overloadKw'
                      : 'over_limit',
                consecutive: n,
                maxKw: mx,
                thresholdConsecutive: overloadConsecutive,
              },
              `above ${limitText} for ${n} consecutive readings (max ${mx} kW)`,
              'critical',
            );
          }
        } else endChain(ctx, d, o, r);
      }
      if (ctx.state !== undefined) excludeFromAnalytics(r);
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

/** Ends the meter's chain (its row at `d[o …]`) at reading `r`, clearing its fault if one is open. */
function endChain(ctx: KeyedContext<Reading, OpenFault>, d: Float64Array, o: number, r: Reading): void {
  const f = ctx.state;
  if (f !== undefined) {
    clearFault(ctx, r.meterId, 'overload', f, r.ts, { consecutive: d[o + N]!, maxKw: d[o + MX]!, kw: r.kw });
    ctx.state = undefined;
  }
  d[o + N] = 0;
}
