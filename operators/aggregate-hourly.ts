import {
  type Aggregator,
  fixedWindows,
  parDo,
  type SideInput,
  type StateStore,
  type Transform,
  windowAggregate,
} from '../core/index.js';
import type { HourlyConsumption, Reading } from '../schemas/reading.js';
import type { MeterRegistry } from './outputs.js';

const HOUR = 3_600_000;

/**
 * Running moments of one meter-hour, plain JSON for checkpoints: `[n, shift, sum, sumSq, min, max]`, an
 * array because every open hour of every meter is checkpointed and field names were a third of it. Sums
 * are taken relative to `shift` (the hour's first value), so the variance of near-equal readings does not
 * vanish into rounding error.
 */
type HourMoments = [n: number, shift: number, sum: number, sumSq: number, min: number, max: number];

const N = 0;
const SHIFT = 1;
const SUM = 2;
const SUM_SQ = 3;
const MIN = 4;
const MAX = 5;

const moments: Aggregator<Reading, HourMoments> = {
  init: () => {
    // A double in the literal makes the array hold unboxed doubles from the start (kW are rarely integers).
    const acc: HourMoments = [0.5, 0, 0, 0, 0, 0];
    acc[N] = 0;
    return acc;
  },
  add: (acc, r) => {
    const kw = r.kw!;
    if (acc[N] === 0) {
      acc[SHIFT] = kw;
      acc[MIN] = kw;
      acc[MAX] = kw;
    } else if (kw < acc[MIN]) acc[MIN] = kw;
    else if (kw > acc[MAX]) acc[MAX] = kw;
    const d = kw - acc[SHIFT];
    acc[N]++;
    acc[SUM] += d;
    acc[SUM_SQ] += d * d;
    return acc;
  },
  merge: (a, b) => {
    if (a[N] === 0) return [...b];
    if (b[N] === 0) return [...a];
    // Re-base b's sums on a's shift: Σ(x−Ka) = Σ(x−Kb) + n·δ, Σ(x−Ka)² = Σ(x−Kb)² + 2δ·Σ(x−Kb) + n·δ².
    const delta = b[SHIFT] - a[SHIFT];
    return [
      a[N] + b[N],
      a[SHIFT],
      a[SUM] + b[SUM] + b[N] * delta,
      a[SUM_SQ] + b[SUM_SQ] + 2 * delta * b[SUM] + b[N] * delta * delta,
      Math.min(a[MIN], b[MIN]),
      Math.max(a[MAX], b[MAX]),
    ];
  },
};

/**
 * The hourly consumption of each meter (the first seed's "AVG, MIN, MAX, STDDEV" per hour): fixed 1 h
 * event-time windows keyed by meter, fired when the watermark passes the hour's end. Only measured readings
 * with a value count. Interpolated rows stay out: they are estimates, and they are only known once the
 * reading after a gap arrives, often after the gap's hours have closed, so counting them would make an
 * hour's figures depend on how the input happened to be batched. NULL readings (`MISSING_READING`), missing rows and
 * readings of a meter under an active fault (`fault_excluded`) stay out, as the rules exclude them from
 * analytics, and so do readings over the physical limit (`over_limit`) should any reach this branch, and
 * readings scored below `minQualityScore` (the quarantine tier, < 70: "excluded from production analytics",
 * architecture doc), so the daily peaks built on these hours leave them out too. The standard deviation is the population one. The neighborhood comes from the registry when
 * the hour fires (empty for a meter the registry no longer knows).
 *
 * Readings behind an hour that was already fired re-fire it as a late pane (the whole hour again, to
 * replace the earlier row) while within `allowedLatenessMs`, and go to the core's `late` output after.
 */
export function aggregateHourly(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  opts: { allowedLatenessMs: number; minQualityScore?: number },
  name = 'aggregateHourly',
): Transform<Reading, HourlyConsumption> {
  const minScore = opts.minQualityScore ?? Number.NEGATIVE_INFINITY;
  const analyticsReadings = parDo<Reading, Reading>((r, out) => {
    if (r.kw === null || r.status !== 'measured' || r.qualityScore < minScore) return;
    const flags = r.flags;
    for (let i = 0; i < flags.length; i++) {
      const f = flags[i];
      if (f === 'fault_excluded' || f === 'MISSING_READING' || f === 'over_limit') return;
    }
    out.emit(r);
  });
  const hours = windowAggregate<Reading, HourMoments, HourlyConsumption>({
    name,
    store,
    key: (r) => r.meterId,
    eventTime: (r) => r.ts,
    windows: fixedWindows(HOUR),
    allowedLatenessMs: opts.allowedLatenessMs,
    aggregator: moments,
    result: ({ key, start, acc }) => {
      const mean = acc[SUM] / acc[N];
      const variance = acc[SUM_SQ] / acc[N] - mean * mean;
      return {
        meterId: key,
        neighborhood: registry.value.get(key)?.neighborhood ?? '',
        hour: start,
        avgKw: acc[SHIFT] + mean,
        minKw: acc[MIN],
        maxKw: acc[MAX],
        stddevKw: variance > 0 ? Math.sqrt(variance) : 0,
        count: acc[N],
      };
    },
  });
  return (source) => hours(analyticsReadings(source));
}
