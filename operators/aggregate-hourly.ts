import { concat, defer, EMPTY, filter, map, of, tap } from 'rxjs';
import {
  type Aggregator,
  type DenseKey,
  type FlowEvent,
  fixedWindows,
  keyedProcess,
  parDo,
  type SideInput,
  type StateStore,
  type Transform,
  watermarkEvent,
  windowAggregate,
} from '../core/index.js';
import { type FaultEvent, type HourlyConsumption, METER_IX, type Reading } from '../schemas/reading.js';
import { METER_KEYS } from './meter-key.js';
import { FAULTS, type MeterRegistry } from './outputs.js';

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

/** What an hour is built from: one measured value of a meter. */
type Sample = Pick<Reading, 'meterId' | 'ts' | 'kw' | typeof METER_IX>;

/** The readings a recognised fault takes out of analytics: its meter's readings in [from, to]. */
interface Exclusion {
  meterId: string;
  [METER_IX]?: number | undefined;
  from: number;
  to: number;
}

/**
 * One meter's held readings as flat `[ts, kw, ts, kw, …]` in event-time order, and the exclusion windows
 * `[from, to, …]` of its recognised faults still needed for readings that have not yet arrived.
 */
interface HoldState {
  held: number[];
  excl: number[];
}

const RELEASE = 'release';

/**
 * The meter's dense key, read by a function of this stage's own rather than the shared `byMeter`: samples
 * and exclusions are objects of other shapes than readings, and one reader seeing them all makes its
 * property load megamorphic in every per-meter stage (~30 ns a call, measured).
 */
const sampleMeter: DenseKey<Sample> = { index: METER_KEYS, of: (s) => s[METER_IX] };
const heldMeter: DenseKey<Sample | Exclusion> = { index: METER_KEYS, of: (s) => s[METER_IX] };

/** Faults whose readings before recognition carry no flag: the ones the hold exists for. */
const EXCLUDING_FAULTS: ReadonlySet<string> = new Set(['zero', 'stuck']);

const moments: Aggregator<Sample, HourMoments> = {
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
  opts: { allowedLatenessMs: number; minQualityScore?: number; faultHoldMs?: number },
  name = 'aggregateHourly',
): Transform<Reading | FaultEvent, HourlyConsumption> {
  const minScore = opts.minQualityScore ?? Number.NEGATIVE_INFINITY;
  const holdMs = opts.faultHoldMs ?? 0;
  const analyticsFilter = (r: Reading, out: { emit: (s: Sample) => void }): void => {
    if (r.kw === null || r.status !== 'measured' || r.qualityScore < minScore) return;
    const flags = r.flags;
    for (let i = 0; i < flags.length; i++) {
      const f = flags[i];
      if (f === 'fault_excluded' || f === 'MISSING_READING' || f === 'over_limit') return;
    }
    out.emit(r);
  };
  const hours = windowAggregate<Sample, HourMoments, HourlyConsumption>({
    name,
    store,
    key: (r) => r.meterId,
    dense: sampleMeter,
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
  if (holdMs === 0)
    return (source) =>
      hours(
        parDo<Reading | FaultEvent, Sample>((item, out) => {
          if (!('faultType' in item)) analyticsFilter(item, out);
        })(source),
      );
  const hold = holdForFaults(store, holdMs, `${name}/hold`);
  const samplesAndExclusions = parDo<Reading | FaultEvent, Sample | Exclusion>((item, out) => {
    if (!('faultType' in item)) analyticsFilter(item, out);
    else if (EXCLUDING_FAULTS.has(item.faultType))
      out.emit({ meterId: item.meterId, from: item.windowStart, to: item.detectedAt });
  });
  return (source) => hours(hold(samplesAndExclusions(source)));
}

/**
 * Feeds a branch its trunk's FAULTS side output as data, beside the readings, and drops the other tagged
 * events (the trunk's own route collects them, so they reach the sinks once). A fault travels in event-time
 * order with the readings: it leaves its detector in the batch of the reading that recognised it.
 */
export function faultsBesideReadings<T>(): Transform<T, T | FaultEvent> {
  return (source) =>
    source.pipe(
      filter((e) => e.kind !== 'tagged' || e.tag === FAULTS.name),
      map(
        (e): FlowEvent<T | FaultEvent> =>
          e.kind === 'tagged' ? { kind: 'data', items: e.items as readonly FaultEvent[] } : e,
      ),
    );
}

/**
 * Holds each meter's readings for `holdMs` of event time and delays the watermark by as much, so that a
 * zero or stuck fault recognised up to `holdMs` after its start removes the meter's readings from its start
 * to its recognition before any hour containing them is aggregated. Which readings leave depends only on
 * event time (readings reach this stage in event-time order per meter, and a fault before the watermark
 * passes its recognising reading), not on how the input was batched. A fault is kept until the watermark
 * passes its end, since the readings it names may arrive in a later batch than the fault itself.
 */
function holdForFaults(
  store: StateStore,
  holdMs: number,
  name: string,
): Transform<Sample | Exclusion, Sample> {
  const process = keyedProcess<Sample | Exclusion, Sample, HoldState>(store, {
    name,
    key: (item) => item.meterId,
    dense: heldMeter,
    onElement: (ctx, item) => {
      let s = ctx.state;
      if ('from' in item) {
        if (s === undefined) s = { held: [], excl: [] };
        s.excl.push(item.from, item.to);
        const kept: number[] = [];
        for (let i = 0; i < s.held.length; i += 2)
          if (s.held[i]! < item.from || s.held[i]! > item.to) kept.push(s.held[i]!, s.held[i + 1]!);
        s.held = kept;
        ctx.state = s;
        schedule(ctx, s);
        return;
      }
      if (s !== undefined)
        for (let i = 0; i < s.excl.length; i += 2)
          if (item.ts >= s.excl[i]! && item.ts <= s.excl[i + 1]!) return;
      if (item.ts + holdMs <= ctx.watermark) {
        // Behind the held watermark already: downstream counts it late, as it would without the hold.
        ctx.emit(item);
        return;
      }
      if (s === undefined) s = { held: [], excl: [] };
      s.held.push(item.ts, item.kw!);
      ctx.state = s;
      schedule(ctx, s);
    },
    onTimer: (ctx) => {
      const s = ctx.state;
      if (s === undefined) return;
      const wm = ctx.watermark;
      let i = 0;
      for (; i < s.held.length && s.held[i]! + holdMs <= wm; i += 2)
        ctx.emit({ meterId: ctx.key, ts: s.held[i]!, kw: s.held[i + 1]! });
      const held = s.held.slice(i);
      const excl: number[] = [];
      for (let j = 0; j < s.excl.length; j += 2)
        if (s.excl[j + 1]! >= wm) excl.push(s.excl[j]!, s.excl[j + 1]!);
      if (held.length === 0 && excl.length === 0) {
        ctx.state = undefined;
        return;
      }
      const next = { held, excl };
      ctx.state = next;
      schedule(ctx, next);
    },
  });

  function schedule(
    ctx: { setTimer: (name: string, time: number) => void; clearTimer: (name: string) => void },
    s: HoldState,
  ): void {
    let at = Number.POSITIVE_INFINITY;
    if (s.held.length > 0) at = s.held[0]! + holdMs;
    for (let j = 1; j < s.excl.length; j += 2) at = Math.min(at, s.excl[j]! + 1);
    if (at === Number.POSITIVE_INFINITY) ctx.clearTimer(RELEASE);
    else ctx.setTimer(RELEASE, at);
  }

  return (source) => {
    let last = Number.NEGATIVE_INFINITY;
    // At the end of a finite input no later reading can arrive, and so no later fault: the last watermark,
    // moved on by the hold, releases every held reading and the hours close as they would without a hold.
    const input = concat(
      source.pipe(
        tap((e) => {
          if (e.kind === 'watermark') last = e.time;
        }),
      ),
      defer(() => (last === Number.NEGATIVE_INFINITY ? EMPTY : of(watermarkEvent(last + holdMs)))),
    );
    return process(input).pipe(map((e) => (e.kind === 'watermark' ? watermarkEvent(e.time - holdMs) : e)));
  };
}
