import { type KeyedProcessSpec, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { hasFlag } from './add-flag.js';
import {
  addMoment,
  bucketCount,
  bucketOf,
  excludeFromAnalytics,
  MOMENT_FIELDS as FIELDS,
  isExcludedValue,
  isMeasuredValue,
  KW_SCALE,
  type MomentRing,
  RING_TOTALS,
  raiseFault,
  ringArray,
  ringSlot,
  round,
  scaledVariance,
  type TagSink,
} from './fault-internals.js';
import { byMeter } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/** Per-meter state: up to 84 buckets of [n, Σu, Σu²] — about 1.7 KB of JSON once a 7-day window is full. */
type ErraticSpikeState = MomentRing;

/**
 * Erratic-spike fault (B4.2): a measured reading above mean + `spikeSigmas`·σ of the meter's preceding
 * rolling window (`rollingWindowMs`, 2-hour buckets; the reading itself excluded), judged once the window
 * holds `minWindowReadings` values. Strict: a reading exactly at mean + 4σ is not a spike.
 *
 * - A point fault: one FaultEvent `erratic_spike` with windowStart = windowEnd = detectedAt = the reading's
 *   time, which is already its final form (there is nothing to clear), a `meter_fault` warning on ALERTS,
 *   and the reading alone is flagged `fault_excluded`.
 * - A detected spike then enters the window like any reading, as the seed's plain 7-day statistics have
 *   it. Keeping spikes out would shield the next ones of an erratic meter a little longer, but a meter whose
 *   level truly shifts up (new occupants, a heat pump) would then be "spiking" at every reading for a week;
 *   with spikes counted, σ widens within a few dozen readings, while a handful of spikes a week still
 *   stand out (ten 10× spikes on a 1 kW meter with σ 0.6 leave the limit near 5 kW).
 * - Evidence is measured, non-NULL values; values over the physical limit (`over_limit`, the overload
 *   rule's business) are neither judged nor added, so an overload reading is not reported again as a spike.
 * - A reading an upstream detector excluded (zero, stuck, overload, low variance: `fault_excluded`) is not
 *   judged and DISCARDS the window: it holds the fault's onset from before its detection (the first 24 h of
 *   a stuck value, 48 h of zeros), and a σ shrunk by a constant stretch would turn the repaired meter's
 *   first normal evening into a string of "spikes". Judging resumes `minWindowReadings` after the fault
 *   clears.
 * - Exact zeros are the zero rule's: neither judged nor added. A dead meter's 48 h of zeros before its
 *   zero fault is detected would otherwise drag the mean down for a week and make its first normal evening
 *   after the repair look like a spike.
 * - A window with σ = 0 (exactly constant, a stuck meter before its detection) is not judged: "4σ above"
 *   a constant would make any change a spike.
 */
export function detectErraticSpikeSpec(
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'spikeSigmas' | 'minWindowReadings'>,
  name = 'detectErraticSpike',
): KeyedProcessSpec<Reading, Reading, ErraticSpikeState> {
  const k = bucketCount(thresholds.rollingWindowMs);
  const tot = RING_TOTALS;
  const { spikeSigmas, minWindowReadings } = thresholds;
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      if (isMeasuredValue(r) && !isExcludedValue(r)) {
        let st = ctx.state;
        if (st === undefined) {
          st = { hb: bucketOf(r.ts), r: ringArray(FIELDS), fs: r.ts };
          ctx.state = st;
        }
        const off = ringSlot(st, k, FIELDS, r.ts);
        const u = Math.round((r.kw as number) * KW_SCALE);
        if (off >= 0 && u !== 0) {
          const ring = st.r;
          const n = ring[tot];
          if (n >= minWindowReadings) {
            const nnVar = scaledVariance(ring, tot);
            if (nnVar > 0) {
              const mean = ring[tot + 1] / n;
              const sd = Math.sqrt(nnVar) / n;
              if (u > mean + spikeSigmas * sd) reportSpike(ctx, r, u, mean, sd, n, spikeSigmas);
            }
          }
          addMoment(ring, off, tot, u);
        }
      } else if (ctx.state !== undefined && hasFlag(r, 'fault_excluded')) {
        // Another rule caught a fault on this meter; the window holds its onset (a stuck value's first
        // 24 h, a dead spell), which shrinks σ: against it, the repaired meter's first normal evening
        // would read as a string of spikes. Start afresh once the fault clears.
        ctx.state = undefined;
      }
      ctx.emit(r);
    },
  };
}

/** `detectErraticSpikeSpec` as a stage of its own. */
export function detectErraticSpike(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'spikeSigmas' | 'minWindowReadings'>,
  name = 'detectErraticSpike',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectErraticSpikeSpec(thresholds, name));
}

/** Out of the per-reading path: keeps `onElement` small enough for V8 to inline the ring updates. */
function reportSpike(
  out: TagSink,
  r: Reading,
  u: number,
  mean: number,
  sd: number,
  n: number,
  spikeSigmas: number,
): void {
  const sigmas = (u - mean) / sd;
  raiseFault(
    out,
    r.meterId,
    'erratic_spike',
    r.ts,
    r.ts,
    {
      kw: r.kw,
      meanKw: round(mean / KW_SCALE),
      stddevKw: round(sd / KW_SCALE),
      sigmas: round(sigmas, 3),
      readings: n,
      thresholdSigmas: spikeSigmas,
    },
    `${r.kw} kW is ${round(sigmas, 2)}σ above the 7-day mean ${round(mean / KW_SCALE, 3)} kW`,
  );
  excludeFromAnalytics(r);
}
