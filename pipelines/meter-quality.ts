/** The meter-quality graph: every business rule as a named stage, its tagged outputs routed to the sinks. */
import { ignoreElements, merge, Observable, type SchedulerLike, share, tap } from 'rxjs';
import {
  assignWatermarks,
  awaitSideInputs,
  ConfigurationError,
  chainMember,
  type Flow,
  type FlowEvent,
  type KeyedProcessSpec,
  keyedChain,
  LATE,
  type OutputTag,
  PipelineGraph,
  type SideInput,
  type StageOptions,
  type StateStore,
  type Transform,
  untagged,
} from '../core/index.js';
import { aggregateHourly, faultsBesideReadings } from '../operators/aggregate-hourly.js';
import { classifyPeak } from '../operators/classify-peak.js';
import { dedupeReadings } from '../operators/dedupe-readings.js';
import { detectCommFailureSpec } from '../operators/detect-comm-failure.js';
import { detectErraticExcursionSpec } from '../operators/detect-erratic-excursion.js';
import { detectErraticSpikeSpec } from '../operators/detect-erratic-spike.js';
import { detectLowVarianceSpec } from '../operators/detect-low-variance.js';
import { detectNeighborhoodOutlier } from '../operators/detect-neighborhood-outlier.js';
import { detectOverloadSpec } from '../operators/detect-overload.js';
import { detectRateOfChangeSpec } from '../operators/detect-rate-of-change.js';
import { detectStuckMeterSpec } from '../operators/detect-stuck-meter.js';
import { detectZeroMeterSpec } from '../operators/detect-zero-meter.js';
import { fillGapsSpec } from '../operators/fill-gaps.js';
import { METER_KEYS } from '../operators/meter-key.js';
import { orderByEventTimeSpec } from '../operators/order-by-event-time.js';
import { ALERTS, FAULTS, type Lineage, type MeterRegistry, QUARANTINE } from '../operators/outputs.js';
import { parseReading } from '../operators/parse-reading.js';
import {
  type ExclusionInputs,
  excludePeakHours,
  PEAK_EXCLUSIONS,
  type PeakExclusion,
} from '../operators/peak-exclusions.js';
import { quarantineImplausibleTime } from '../operators/quarantine-implausible-time.js';
import { quarantineOverLimit } from '../operators/quarantine-over-limit.js';
import { peakDayOf, rankDailyPeaks } from '../operators/rank-daily-peaks.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import { scoreQuality } from '../operators/score-quality.js';
import { stampLineage } from '../operators/stamp-lineage.js';
import { standardizeUnits } from '../operators/standardize-units.js';
import { validateMeasurements } from '../operators/validate-measurements.js';
import { validateReading } from '../operators/validate-reading.js';
import type {
  Alert,
  DailyPeak,
  FaultEvent,
  HourlyConsumption,
  QuarantineRecord,
  RawReading,
  Reading,
} from '../schemas/reading.js';
import { failOnBatch, type StageFault, throwOnBatch } from './stage-fault.js';

export interface MeterQualityOptions {
  readonly profile: RuleProfile;
  readonly registry: SideInput<MeterRegistry>;
  readonly store: StateStore;
  readonly lineage: Lineage;
  /** Backfill: backdated readings are expected and not flagged. */
  readonly replay: boolean;
  /** Processing-time idleness after which a quiet source no longer holds the watermark back. */
  readonly idleTimeoutMs?: number;
  /** Watermark at the end of a bounded input; see `assignWatermarks`. */
  readonly finalWatermark?: (maxEventTime: number) => number;
  /** The final watermark's step per draining tick; see `assignWatermarks`. */
  readonly finalStepMs?: number;
  readonly scheduler?: SchedulerLike;
  /** Test hook: the named stage throws on its n-th data batch (see `stage-fault.ts`). */
  readonly fault?: StageFault;
  /** Weather and maintenance side inputs: the daily peaks leave out holidays, extreme weather, maintenance. */
  readonly exclusions?: Omit<ExclusionInputs, 'registry'>;
  /**
   * false: leave out the stages across meters (neighborhood outliers, daily peaks), for a worker that owns
   * some partitions and repartitions its hourly aggregates to the cross-meter stage. Default true.
   */
  readonly crossMeter?: boolean;
}

/** Receives every output of the graph synchronously, batch by batch; the runner buffers them for the sinks. */
export interface MeterQualitySink {
  readings(batch: readonly Reading[]): void;
  quarantine(batch: readonly QuarantineRecord[]): void;
  faults(batch: readonly FaultEvent[]): void;
  alerts(batch: readonly Alert[]): void;
  hourly(batch: readonly HourlyConsumption[]): void;
  dailyPeaks(batch: readonly DailyPeak[]): void;
  /** What the daily peaks left out (only with `exclusions`). */
  peakExclusions?(batch: readonly PeakExclusion[]): void;
  /** The watermark after the hourly stage: every hour ending at or before it has been emitted. */
  hourlyWatermark?(time: number): void;
}

const HOUR = 3_600_000;

/**
 * The layout of this graph's operator state in checkpoints. Bump it with any change to what an operator
 * keeps in the state store (a field, an encoding): a worker refuses a checkpoint of another layout.
 * 2: compact per-meter state (sort buffer as column segments, growing rings, dedupe offsets).
 * 3: the erratic-spike stage keeps hourly maxima and held readings; the outlier stage counts low judgements.
 * 6: the hourly stage keeps held readings, exclusions and open hours of a meter in one entry; numeric
 *    per-meter state in rows of typed arrays (`core/dense-rows.ts`), checkpointed in the binary snapshot
 *    encoding (the erratic-excursion ring and fields).
 * 7: typed lists by meter (`core/dense-vectors.ts`) for the hourly stage's held readings and open hours
 *    (its keyed entries only the exclusions), dedupe's seen pairs, the low-variance and comm-failure rings
 *    (their keyed entries only an open fault; comm-failure's numbers in a typed row).
 * 8: the hourly stage's `drained` value (how far the end of input's drain moved its hold's release); a
 *    7 checkpoint lacks it only before a drain started, where its default holds.
 * 9: the hourly stage's end of an hour is one timer for every meter (`end:<start>` under the first meter's
 *    key) instead of one per meter; an 8 or 7 checkpoint's per-meter timers fire the same hours in the
 *    same order (the first of them fires the hour of every meter), but a build of 8 would fire only the
 *    first meter's hour of a 9 checkpoint.
 * 10: the per-meter state of orderByEventTime, fillGaps, detectRateOfChange, detectZeroMeter,
 *    detectStuckMeter and detectOverload in typed rows by meter (`<rule>/last`, `/meter`, `/base`), their
 *    keyed entries only an open fault; a 9 (8, 7) checkpoint's entries are upgraded into the rows as it is
 *    restored, its deltas' too (`rows()` with an `upgrade`).
 * 11: the hourly stage keeps no timers: one release pass per watermark finds what is due from its held
 *    lists, exclusions and open hours; a 10 (9, 8, 7) checkpoint's `release` and `end:<start>` timers said
 *    the same and are dropped as it is restored, but a build of 10 would never release a held reading of
 *    an 11 checkpoint.
 */
export const METER_QUALITY_STATE_FORMAT = 'meter-quality/11';

/**
 * Layouts this build restores, upgrading them as it reads: 10 (11 only drops the hourly stage's timers),
 * 9 (10 only moved keyed entries into typed rows, whose `upgrade`s read them), 8 (9 only reads its timers
 * differently) and 7 (8 only added a value with a default). Not earlier: 7 moved the hourly stage's state
 * out of 6's keyed entries, and 6 had changed them from 5's, which cannot be read into.
 */
export const METER_QUALITY_RESTORES_STATE_FORMATS: readonly string[] = [
  'meter-quality/10',
  'meter-quality/9',
  'meter-quality/8',
  'meter-quality/7',
];

/**
 * The meter-quality graph: per-meter rules keyed by meter, then the cross-meter stages keyed by
 * neighborhood and by day, fed from per-meter hourly aggregates so they could run on another worker.
 */
export function meterQualityGraph(options: MeterQualityOptions): {
  graph: PipelineGraph;
  connect: (input: Flow<RawReading>, sink: MeterQualitySink) => Observable<void>;
} {
  const { profile, store, registry, lineage } = options;
  const g = new PipelineGraph('meter-quality');
  const fault = options.fault;
  const stage = <I, O>(
    name: string,
    transform: Transform<I, O>,
    options: StageOptions = {},
  ): Transform<I, O> =>
    fault?.stage === name
      ? g.stage(name, (source) => transform(source.pipe(failOnBatch<I>(fault))), options)
      : g.stage(name, transform, options);
  const quarantines = { emits: [QUARANTINE] };
  const detects = { emits: [FAULTS, ALERTS] };
  const rule = <S>(
    name: string,
    spec: KeyedProcessSpec<Reading, Reading, S>,
    options: { emits?: readonly OutputTag<unknown>[] } = {},
  ) => ({ name, spec: chainMember(spec).spec, ...options });
  const perMeterRules = [
    rule('orderByEventTime', orderByEventTimeSpec(store), quarantines),
    rule('fillGaps', fillGapsSpec(store, profile.gaps), { emits: [ALERTS] }),
    rule('detectRateOfChange', detectRateOfChangeSpec(store, profile.rateOfChange)),
    rule('detectZeroMeter', detectZeroMeterSpec(store, registry, profile.faults), detects),
    rule('detectStuckMeter', detectStuckMeterSpec(store, profile.faults), detects),
    rule('detectOverload', detectOverloadSpec(store, registry, profile.faults), detects),
    rule('detectLowVariance', detectLowVarianceSpec(store, profile.faults), detects),
    profile.faults.spikeRule === 'seed_sigma'
      ? rule('detectErraticSpike', detectErraticSpikeSpec(profile.faults), detects)
      : rule('detectErraticSpike', detectErraticExcursionSpec(store, profile.faults), detects),
    rule('detectCommFailure', detectCommFailureSpec(store, profile.faults), detects),
  ];
  g.source('readings-in');
  const stages = [
    stage('awaitRegistry', awaitSideInputs<RawReading>(registry)),
    stage('parseReading', parseReading(lineage, store.denseKeys(METER_KEYS)), quarantines),
    stage('validateMeasurements', validateMeasurements(profile.measurements, lineage), quarantines),
    stage('standardizeUnits', standardizeUnits(profile.units, registry), quarantines),
    // Readings over the physical limit stay in the stream, flagged `over_limit`, until the overload rule
    // has seen them; quarantineOverLimit then takes them out of the stored output.
    stage(
      'validateReading',
      validateReading(registry, profile.validation, { replay: options.replay }),
      quarantines,
    ),
    // Before the watermark: a reading years off would otherwise move it (or gap filling) for good.
    stage(
      'quarantineImplausibleTime',
      quarantineImplausibleTime(store, profile.validation, undefined, {
        replay: options.replay,
      }),
      quarantines,
    ),
    stage(
      'assignWatermarks',
      assignWatermarks<Reading>({
        name: 'assignWatermarks',
        store,
        eventTime: (r) => r.ts,
        maxOutOfOrdernessMs: profile.maxOutOfOrdernessMs,
        ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
        ...(options.finalWatermark === undefined ? {} : { finalWatermark: options.finalWatermark }),
        ...(options.finalStepMs === undefined ? {} : { finalStepMs: options.finalStepMs }),
        ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
      }),
    ),
    stage(
      'dedupeReadings',
      dedupeReadings(store, { horizonMs: profile.maxOutOfOrdernessMs + 2 * HOUR }),
      quarantines,
    ),
    // The per-meter rules run fused, one meter lookup per reading (`core/keyed-chain.ts`); each stays a
    // stage of the graph with its own state, counters and declared outputs.
    g.fused<Reading, Reading>('perMeterRules', perMeterRules, (counters) =>
      keyedChain(
        store,
        perMeterRules.map((rule, i) =>
          chainMember(rule.spec, {
            stage: rule.name,
            counters: counters[i]!,
            ...(fault?.stage === rule.name ? { beforeBatch: throwOnBatch(fault) } : {}),
          }),
        ),
      ),
    ),
    stage('quarantineOverLimit', quarantineOverLimit(lineage), quarantines),
    stage('scoreQuality', scoreQuality(profile.quality)),
    stage('classifyPeak', classifyPeak(profile.peaks)),
    stage('stampLineage', stampLineage(lineage)),
  ] as const;
  g.sink('readings', 'stampLineage');
  // Fed by every stage that declares the tag (`emits`); test/pipelines/graph-edges.test.ts checks the
  // declarations against what the stages emit on simulated data.
  g.taggedSink('quarantine', QUARANTINE);
  g.taggedSink('faults', FAULTS);
  g.taggedSink('alerts', ALERTS);

  const hourlyStage = stage(
    'aggregateHourly',
    aggregateHourly(store, registry, {
      allowedLatenessMs: 0,
      minQualityScore: profile.quality.standardFrom,
      faultHoldMs: profile.faults.analyticsHoldMs,
    }),
    {
      after: 'classifyPeak',
      emits: [LATE],
    },
  );
  g.sink('hourly_consumption', 'aggregateHourly');
  const crossMeter = options.crossMeter === false ? undefined : crossMeterStages(g, stage, options);
  if (fault !== undefined && g.stageCounters()[fault.stage] === undefined)
    throw new ConfigurationError(`GS_TEST_FAULT names no stage of the graph: "${fault.stage}"`);

  /**
   * Subscribes the whole graph to `input` and routes every output to `sink`. Subscribe before the input
   * emits: branches share the trunk. The returned observable completes when every branch completed.
   */
  const connect = (input: Flow<RawReading>, sink: MeterQualitySink): Observable<void> =>
    new Observable<void>((subscriber) => {
      const trunk = stages.reduce<Observable<FlowEvent<unknown>>>(
        (flow, stage) =>
          (stage as unknown as (f: Observable<FlowEvent<unknown>>) => Observable<FlowEvent<unknown>>)(flow),
        input as Observable<FlowEvent<unknown>>,
      ) as Observable<FlowEvent<Reading>>;
      const shared = trunk.pipe(share());
      // The hourly stage reads the FAULTS side output (a zero or stuck fault takes its readings out of the
      // hours it covers) and drops every tagged event, which the trunk's route collects.
      const hourly = shared.pipe(
        faultsBesideReadings<Reading>(),
        hourlyStage,
        tap((e) => {
          if (e.kind === 'watermark') sink.hourlyWatermark?.(e.time);
        }),
        share(),
      );
      const route: Route = <T>(flow: Observable<FlowEvent<T>>, main?: (b: readonly T[]) => void) =>
        flow.pipe(
          tap((e) => {
            if (e.kind === 'data') main?.(e.items);
            else if (e.kind === 'tagged') {
              if (e.tag === QUARANTINE.name) sink.quarantine(e.items as QuarantineRecord[]);
              else if (e.tag === FAULTS.name) sink.faults(e.items as FaultEvent[]);
              else if (e.tag === ALERTS.name) sink.alerts(e.items as Alert[]);
              // Readings behind a closed hourly window are stored already; only their hourly pane is missed,
              // and the aggregateHourly stage counts them under its `late` tag.
              else if (e.tag === LATE.name) return;
              else if (e.tag === PEAK_EXCLUSIONS.name) sink.peakExclusions?.(e.items as PeakExclusion[]);
              else throw new Error(`meter-quality graph: no sink for tagged output "${e.tag}"`);
            }
          }),
        );
      return merge(
        ...(crossMeter === undefined ? [] : crossMeter.connect(hourly, sink, route)),
        route(hourly, (b) => sink.hourly(b)),
        route(shared, (b) => sink.readings(b)),
      )
        .pipe(ignoreElements())
        .subscribe(subscriber);
    });

  return { graph: g, connect };
}

/** Routes a flow's main output to `main` and its tagged outputs to the sink's side tables. */
export type Route = <T>(
  flow: Observable<FlowEvent<T>>,
  main?: (b: readonly T[]) => void,
) => Observable<unknown>;

type StageOf = <I, O>(name: string, transform: Transform<I, O>, options?: StageOptions) => Transform<I, O>;

/**
 * The stages across meters, fed by hourly aggregates: neighborhood outliers (keyed by neighborhood) and
 * daily peaks (keyed by day), in this graph or in the cross-meter stage's after a repartition.
 */
export function crossMeterStages(
  g: PipelineGraph,
  stage: StageOf,
  options: Pick<MeterQualityOptions, 'store' | 'registry' | 'profile' | 'exclusions'>,
  after = 'aggregateHourly',
): {
  connect: (
    hourly: Observable<FlowEvent<HourlyConsumption>>,
    sink: MeterQualitySink,
    route: Route,
  ) => Observable<unknown>[];
} {
  const { store, registry, profile } = options;
  const neighborhoodStage = stage(
    'detectNeighborhoodOutlier',
    detectNeighborhoodOutlier(store, registry, profile.faults),
    { after, emits: [ALERTS] },
  );
  const exclusions = options.exclusions;
  const exclusionStage =
    exclusions === undefined
      ? undefined
      : stage(
          'excludePeakHours',
          (source: Observable<FlowEvent<HourlyConsumption>>) =>
            source.pipe(
              awaitSideInputs<HourlyConsumption>(exclusions.weather, exclusions.maintenance),
              excludePeakHours(
                store,
                { registry, ...exclusions },
                profile.exclusions,
                peakDayOf(profile.peaks.timeZoneOffsetMinutes),
              ),
            ),
          { after, emits: [LATE, PEAK_EXCLUSIONS] },
        );
  const peaksStage = stage('rankDailyPeaks', rankDailyPeaks(store, profile.peaks), {
    after: exclusionStage === undefined ? after : 'excludePeakHours',
    emits: [LATE],
  });
  g.sink('daily_peaks', 'rankDailyPeaks');
  g.edge('detectNeighborhoodOutlier', 'faults');
  return {
    connect: (hourly, sink, route) => [
      route(hourly.pipe(untagged(), neighborhoodStage), (b) => sink.faults(b)),
      route(
        exclusionStage === undefined
          ? hourly.pipe(untagged(), peaksStage)
          : hourly.pipe(untagged(), exclusionStage, peaksStage),
        (b) => sink.dailyPeaks(b),
      ),
    ],
  };
}
