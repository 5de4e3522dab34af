import { type KeyedProcessSpec, keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  bucketCount,
  clearFault,
  excludeFromAnalytics,
  MOMENT_FIELDS as FIELDS,
  isExcludedValue,
  isMeasuredValue,
  KW_SCALE,
  type OpenFault,
  raiseFault,
  round,
} from './fault-internals.js';
import {
  addMomentAt,
  listRingSlot,
  listRingWindowStart,
  RING_TOT,
  scaledVarianceAt,
  startListRing,
} from './list-ring.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Low-variance fault (architecture doc "Low Variance Fault": 7-day coefficient of variation < 0.01, a
 * malfunctioning sensor): CV = σ/μ of the meter's measured values over the rolling `rollingWindowMs`
 * window (2-hour buckets, see `BUCKET_MS`), judged at every measured reading once the window holds
 * `minWindowReadings` values and μ > 0. Strict: CV exactly at the threshold is not a fault.
 *
 * - Evidence is measured, non-NULL values only. Values an upstream detector excluded (a detected stuck or
 *   overload run: flag `fault_excluded`) and values over the physical limit (`over_limit`) stay out of the
 *   window, so this rule never re-reports another rule's fault and faulty data do not skew its statistics.
 * - Overlaps: an all-zero window has μ = 0 (the zero rule's); an exactly constant window (σ = 0, exact
 *   since the sums are integers) is the stuck rule's and is NOT low variance here — the seed's low-variance
 *   fault is a near-constant, noisy-but-flat signal, the stuck fault a repeated value. A window drifting into
 *   exact constancy therefore clears an open low-variance fault.
 * - windowStart is the start of the window the CV was computed over (its first reading while the window is
 *   not yet full, else its oldest bucket's start); detection tags FAULTS `low_variance` + a warning alert;
 *   the first judgement with CV ≥ threshold (or σ = 0) clears it with the final windowEnd. Readings from the
 *   detecting one to the clearing one are flagged `fault_excluded`.
 */
export function detectLowVarianceSpec(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'lowVarianceCv' | 'minWindowReadings'>,
  name = 'detectLowVariance',
): KeyedProcessSpec<Reading, Reading, OpenFault> {
  const k = bucketCount(thresholds.rollingWindowMs);
  const tot = RING_TOT;
  const { lowVarianceCv: maxCv, minWindowReadings } = thresholds;
  // Per meter, its ring of up to 84 buckets of [n, Σu, Σu²] in a typed list (`list-ring.ts`); the keyed
  // state is the open fault only, for the few meters that have one.
  const rings = store.vectors(`${name}/ring`, METER_KEYS);
  return {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      if (isMeasuredValue(r) && !isExcludedValue(r)) {
        const m = ctx.keyNumber;
        if (rings.length(m) === 0) startListRing(rings, m, k, FIELDS, r.ts);
        const off = listRingSlot(rings, m, k, FIELDS, r.ts);
        if (off >= 0) {
          const ring = rings.array(m);
          addMomentAt(ring, off, Math.round((r.kw as number) * KW_SCALE));
          const n = ring[tot]!;
          const sum = ring[tot + 1]!;
          if (n >= minWindowReadings && sum > 0) {
            const nnVar = scaledVarianceAt(ring);
            // σ/μ = √(n·Σu² − (Σu)²) / Σu; a constant window (exactly 0) belongs to the stuck rule.
            const cv = nnVar > 0 ? Math.sqrt(nnVar) / sum : 0;
            const low = nnVar > 0 && cv < maxCv;
            const f = ctx.state;
            if (low) {
              if (f !== undefined) f.e = r.ts;
              else {
                const mean = sum / n / KW_SCALE;
                ctx.state = raiseFault(
                  ctx,
                  r.meterId,
                  'low_variance',
                  listRingWindowStart(ring, k),
                  r.ts,
                  {
                    cv: round(cv, 6),
                    meanKw: round(mean),
                    stddevKw: round(Math.sqrt(nnVar) / n / KW_SCALE, 6),
                    readings: n,
                    thresholdCv: maxCv,
                  },
                  `7-day coefficient of variation ${round(cv, 6)} over ${n} readings`,
                );
              }
            } else if (f !== undefined) {
              clearFault(ctx, r.meterId, 'low_variance', f, r.ts, { cv: round(cv, 6), readings: n });
              ctx.state = undefined;
            }
          }
        }
        if (ctx.state !== undefined) excludeFromAnalytics(r);
      } else if (ctx.state !== undefined) excludeFromAnalytics(r);
      ctx.emit(r);
    },
  };
}

/** `detectLowVarianceSpec` as a stage of its own. */
export function detectLowVariance(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'lowVarianceCv' | 'minWindowReadings'>,
  name = 'detectLowVariance',
): Transform<Reading, Reading> {
  return keyedProcess(store, detectLowVarianceSpec(store, thresholds, name));
}
