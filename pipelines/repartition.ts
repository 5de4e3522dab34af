/**
 * The repartition between the per-meter and the cross-meter stages: the per-meter worker's sinks that
 * also publish its hourly aggregates and watermark, the cross-meter stage's source reading them back,
 * and the cross-meter graph (upstream watermarks held, then neighborhood outliers and daily peaks).
 */
import { ignoreElements, merge, type Observable, type Observer, share, tap } from 'rxjs';
import type { RepartitionMessage, UpstreamWatermark } from '../connectors/jetstream-repartition.js';
import type { ReadingsMessageSource, SourceMessage } from '../connectors/jetstream-source.js';
import {
  awaitSideInputs,
  type FlowEvent,
  holdForUpstreamWatermarks,
  type Json,
  PipelineGraph,
  type SideInput,
  type StageOptions,
  type StateStore,
  type Transform,
  type UpstreamRecord,
} from '../core/index.js';
import { ALERTS, FAULTS, type MeterRegistry } from '../operators/outputs.js';
import { PEAK_EXCLUSIONS, type PeakExclusion } from '../operators/peak-exclusions.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type { Alert, FaultEvent, HourlyConsumption } from '../schemas/reading.js';
import type { EpochGraph, EpochSinks, Pull, Source } from './contracts.js';
import { reopenAfterLoss } from './message-source.js';
import {
  crossMeterStages,
  type MeterQualityOptions,
  type MeterQualitySink,
  type Route,
} from './meter-quality.js';
import {
  addTotals,
  emptyTotals,
  type OutputBatch,
  OutputBuffers,
  type RunTotals,
} from './meter-quality-outputs.js';
import { type PullOutageOptions, pullOutage } from './pull-outage.js';
import { lastSeqOf } from './source-positions.js';

const HOUR = 3_600_000;

/** The layout of the cross-meter graph's state in its checkpoints. */
export const CROSS_METER_STATE_FORMAT = 'cross-meter/1';

/** What the per-meter worker's sinks publish with: see `RepartitionPublisher`. */
export interface HourlyPublisher {
  publish(rows: readonly HourlyConsumption[], mark: UpstreamWatermark | undefined): Promise<void>;
}

/**
 * The per-meter worker's sinks with the repartition added: each batch is written to the stores, then its
 * hourly rows and the hourly stage's watermark over `partitions` are published (rows first). A replayed
 * epoch publishes the same rows again; the message ids and the cross-meter stage make that harmless.
 */
export function repartitionSinks(
  inner: EpochSinks<OutputBatch>,
  publisher: HourlyPublisher,
  upstream: { readonly worker: string; readonly partitions: readonly number[] },
): EpochSinks<OutputBatch> & { readonly lastWatermark: number | undefined } {
  let lastWatermark: number | undefined;
  return {
    rollback: (committed) => inner.rollback(committed),
    async write(batch) {
      await inner.write(batch);
      const time = batch.hourlyWatermark;
      await publisher.publish(batch.hourly, time === undefined ? undefined : { ...upstream, time });
      if (time !== undefined) lastWatermark = time;
    },
    ...(inner.seal === undefined ? {} : { seal: (checkpoint: number) => inner.seal!(checkpoint) }),
    get lastWatermark() {
      return lastWatermark;
    },
  };
}

/** One pull of the cross-meter stage: repartition records in stream order. */
export interface CrossMeterPull extends Pull {
  readonly records: readonly UpstreamRecord<HourlyConsumption>[];
}

export interface RepartitionSourceOptions extends PullOutageOptions {
  /** Every upstream partition (`--upstream-partitions`). */
  readonly partitions: readonly number[];
  /**
   * A bounded run: the source ends once drained after every upstream partition sent its final watermark
   * (an upstream worker's `--until-idle` end). Before that, a drained source yields empty pulls.
   */
  readonly untilFinal: boolean;
  readonly decode: (m: SourceMessage) => RepartitionMessage;
  readonly batchSize?: number;
  /** For the log line of deliveries lost in transit (the consumer is then recreated). */
  readonly onDeliveriesLost?: (count: number, resumeAfterSeq: number) => void;
  /** Processing time, for how long pulls have been failing (default `Date.now`). */
  readonly now?: () => number;
}

/**
 * The repartition stream as the cross-meter stage's source: a consumer recreated just after the
 * checkpoint's `lastSeq` (as `messageReadingSource`), position `{ lastSeq, final }` where `final` lists the
 * upstream partitions whose bounded run ended.
 */
export function repartitionSource(
  openMessages: (resumeAfterSeq: number) => Promise<ReadingsMessageSource>,
  options: RepartitionSourceOptions,
): Source<CrossMeterPull> {
  let messages: ReadingsMessageSource | undefined;
  let delivered: SourceMessage[] = [];
  let lastSeq = 0;
  const final = new Set<number>();
  const opened = (): ReadingsMessageSource => {
    if (messages === undefined) throw new Error('repartition source used before open()');
    return messages;
  };
  const outage = pullOutage('repartition', options.now ?? Date.now, options);
  const recreate = async (): Promise<{ records: [] }> => {
    const old = opened();
    messages = undefined;
    messages = await reopenAfterLoss(old, openMessages, lastSeq);
    return { records: [] };
  };
  return {
    name: 'repartition',
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      lastSeq = lastSeqOf(position);
      final.clear();
      const stored =
        position !== null && typeof position === 'object' && !Array.isArray(position)
          ? position.final
          : undefined;
      if (Array.isArray(stored)) for (const p of stored) final.add(Number(p));
      messages = await openMessages(lastSeq);
    },
    async next() {
      await outage.backoff();
      const fetched = await opened().fetchBatch(options.batchSize ?? 512, 1000);
      if ((fetched.lostDeliveries ?? 0) > 0) {
        options.onDeliveriesLost?.(fetched.lostDeliveries ?? 0, lastSeq);
        return recreate();
      }
      // A pull that brought messages worked, whatever cut it short.
      if (outage.note(fetched.messages.length > 0 ? null : fetched.interrupted) === 'reopen')
        return recreate();
      if (fetched.messages.length === 0) {
        if (options.untilFinal && options.partitions.every((p) => final.has(p))) return 'end';
        return fetched.stalled || options.untilFinal || fetched.interrupted !== null
          ? { records: [], commitSoon: fetched.stalled }
          : 'idle';
      }
      const records: UpstreamRecord<HourlyConsumption>[] = [];
      for (const m of fetched.messages) {
        delivered.push(m);
        if (m.seq <= lastSeq) continue;
        lastSeq = m.seq;
        const decoded = options.decode(m);
        if (decoded.kind === 'hourly') {
          for (const row of decoded.rows) records.push({ kind: 'element', item: row });
        } else {
          records.push({ kind: 'watermark', partitions: decoded.mark.partitions, time: decoded.mark.time });
          if (decoded.mark.final === true) for (const p of decoded.mark.partitions) final.add(p);
        }
      }
      return { records, commitSoon: fetched.stalled };
    },
    position(): Json {
      return { lastSeq, final: [...final].sort((a, b) => a - b) };
    },
    async commit() {
      const acking = delivered;
      delivered = [];
      if (acking.length > 0) await opened().ack(acking);
    },
    async pending() {
      return (await opened().pending()).lag;
    },
    async close() {
      await messages?.close();
    },
  };
}

export interface CrossMeterOptions {
  readonly profile: RuleProfile;
  readonly registry: SideInput<MeterRegistry>;
  readonly store: StateStore;
  /** Every upstream partition: an hour fires once all of them passed it. */
  readonly partitions: readonly number[];
  /** Weather and maintenance side inputs of the peak exclusions; none: no exclusion stage. */
  readonly exclusions?: MeterQualityOptions['exclusions'];
}

/**
 * The cross-meter graph: repartitioned hourly aggregates held until every upstream partition's watermark
 * passed their hour, then the same neighborhood and peak stages an all-partitions worker runs.
 */
export function crossMeterGraph(options: CrossMeterOptions): {
  graph: PipelineGraph;
  connect: (
    input: Observable<FlowEvent<UpstreamRecord<HourlyConsumption>>>,
    sink: MeterQualitySink,
  ) => Observable<unknown>;
} {
  const g = new PipelineGraph('cross-meter');
  const stage = <I, O>(name: string, transform: Transform<I, O>, stageOptions: StageOptions = {}) =>
    g.stage(name, transform, stageOptions);
  g.source('repartition-in');
  const awaitRegistry = stage(
    'awaitRegistry',
    awaitSideInputs<UpstreamRecord<HourlyConsumption>>(options.registry),
  );
  const hold = stage(
    'holdForUpstreamWatermarks',
    holdForUpstreamWatermarks<HourlyConsumption>(options.store, {
      name: 'holdForUpstreamWatermarks',
      partitions: options.partitions,
      completeAt: (h) => h.hour + HOUR,
      identity: (h) => `${h.meterId}|${h.hour}`,
    }),
  );
  g.taggedSink('faults', FAULTS);
  g.taggedSink('alerts', ALERTS);
  const cross = crossMeterStages(g, stage, options, 'holdForUpstreamWatermarks');
  const connect = (
    input: Observable<FlowEvent<UpstreamRecord<HourlyConsumption>>>,
    sink: MeterQualitySink,
  ): Observable<unknown> => {
    const hourly = input.pipe(awaitRegistry, hold, share());
    const route: Route = (flow, main) =>
      flow.pipe(
        tap((e) => {
          if (e.kind === 'data') main?.(e.items);
          else if (e.kind === 'tagged') {
            if (e.tag === ALERTS.name) sink.alerts(e.items as Alert[]);
            else if (e.tag === FAULTS.name) sink.faults(e.items as FaultEvent[]);
            else if (e.tag === PEAK_EXCLUSIONS.name) sink.peakExclusions?.(e.items as PeakExclusion[]);
            // LATE: an hour of a day already ranked; the hold makes this a replayed duplicate.
          }
        }),
      );
    return merge(...cross.connect(hourly, sink, route)).pipe(ignoreElements());
  };
  return { graph: g, connect };
}

/** The cross-meter graph bound to the epoch contracts, with the meter-quality job's outputs and totals. */
export function crossMeterEpochGraph(
  connect: ReturnType<typeof crossMeterGraph>['connect'],
): EpochGraph<CrossMeterPull, OutputBatch, RunTotals> {
  const buffers = new OutputBuffers();
  return {
    connect: (input) => connect(input as Observable<FlowEvent<UpstreamRecord<HourlyConsumption>>>, buffers),
    accept(pull: CrossMeterPull, input: Observer<FlowEvent<unknown>>): number {
      if (pull.records.length > 0) input.next({ kind: 'data', items: pull.records });
      return pull.records.length;
    },
    get bufferedRows() {
      return buffers.rows;
    },
    get empty() {
      return buffers.empty;
    },
    take: (checkpoint, flush) => buffers.take(checkpoint, flush),
    initialTotals: emptyTotals,
    addTotals,
  };
}
