import { type KeyedProcessSpec, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { addFlag, hasFlag } from './add-flag.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/** kW values carry 4 decimals; comparing them as integers of 0.0001 kW keeps "exactly 500 %" exact. */
const SCALE = 10_000;

/** The per-meter state as checkpoints of layouts up to meter-quality/9 hold it (a keyed JSON entry). */
interface LegacyRateState {
  base: number;
}

/**
 * Flags a measured reading `spike` when it rose more than `spikeIncreasePct` above the meter's previous
 * measured value, `drop` when it fell more than `dropDecreasePct` below it (both strict: exactly 500 % is
 * not a spike). The previous value is the last measured, non-null reading: interpolated and missing rows,
 * NULL readings and readings over the physical limit (`over_limit`, quarantined after the fault rules)
 * neither get judged nor become the base. A base below `minBaseKw` is not judged, since ratios of
 * near-zero loads are noise. Per-meter state is that one number (× 10⁴), a typed row of one by meter
 * number (`DenseRows`): no keyed entry, no object per meter.
 */
export function detectRateOfChangeSpec(
  store: StateStore,
  thresholds: RuleProfile['rateOfChange'],
  name = 'detectRateOfChange',
): KeyedProcessSpec<Reading, Reading, never> {
  const spikeFactor = 100 + thresholds.spikeIncreasePct;
  const dropFactor = 100 - thresholds.dropDecreasePct;
  const minBase = Math.round(thresholds.minBaseKw * SCALE);
  const bases = store.rows(`${name}/base`, METER_KEYS, 1, {
    namespace: name,
    upgrade: (value, _n, d, o) => {
      d[o] = (value as LegacyRateState).base;
      return undefined;
    },
  });
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      if (r.kw !== null && r.status === 'measured' && !overLimit(r)) {
        const cur = Math.round(r.kw * SCALE);
        const m = ctx.keyNumber;
        const o = bases.open(m);
        if (o < 0) {
          const fresh = bases.create(m);
          bases.data[fresh] = cur;
        } else {
          const d = bases.data;
          const base = d[o]!;
          if (base >= minBase) {
            if (cur * 100 > base * spikeFactor) addFlag(r, 'spike');
            else if (cur * 100 < base * dropFactor) addFlag(r, 'drop');
          }
          d[o] = cur;
        }
      }
      ctx.emit(r);
    },
  };
}

/** `detectRateOfChangeSpec` as a stage of its own. */
export function detectRateOfChange(
  store: StateStore,
  thresholds: RuleProfile['rateOfChange'],
  name = 'detectRateOfChange',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectRateOfChangeSpec(store, thresholds, name));
}

/** Over the physical limit: quarantined after the fault rules, so never stored and never a base. */
function overLimit(r: Reading): boolean {
  return hasFlag(r, 'over_limit');
}
