/**
 * Runs the meter-quality graph on the epoch coordinator: binds the job's pulls, output buffers, batches
 * and totals (`meter-quality-outputs.ts`) to the generic contracts (`contracts.ts`), and turns the
 * operational-alert hook into the batch the sinks write. The names other modules import for a run are
 * exported from here.
 */
import type { Observable } from 'rxjs';
import type { FlowEvent, StateStore } from '../core/index.js';
import type { Alert, RawReading } from '../schemas/reading.js';
import type {
  Checkpoint as EpochCheckpoint,
  CheckpointStore as EpochCheckpointStore,
  EpochObserver,
  EpochSinks,
  Source,
} from './contracts.js';
import { EpochCoordinator } from './epoch-coordinator.js';
import type { MeterQualitySink } from './meter-quality.js';
import {
  meterQualityEpochGraph,
  type OutputBatch,
  type RunTotals,
  type SourceBatch,
} from './meter-quality-outputs.js';

export { CheckpointFormatError } from './contracts.js';
export type { OutputBatch, RunTotals, SourceBatch } from './meter-quality-outputs.js';

/** A source of raw readings (landing files, JetStream messages). */
export type ReadingSource = Source<SourceBatch>;
/** The hot store and the lake, written epoch by epoch. */
export type PipelineSinks = EpochSinks<OutputBatch>;
export type Checkpoint = EpochCheckpoint<RunTotals>;
export type CheckpointStore = EpochCheckpointStore<RunTotals>;

/**
 * Hooks into a run for metrics, readiness and operational alerts (see `EpochObserver`); `alertsFor`
 * adds processing-time alerts to the batch about to be written.
 */
export interface RunObserver extends Omit<EpochObserver<SourceBatch, OutputBatch, RunTotals>, 'beforeWrite'> {
  /** Processing-time alerts to store and publish with this batch. */
  alertsFor?(batch: OutputBatch, pending: number | undefined): readonly Alert[];
}

export interface RunOptions {
  readonly source: ReadingSource;
  readonly sinks: PipelineSinks;
  readonly checkpoints: CheckpointStore;
  readonly store: StateStore;
  /** Subscribes the graph to `input` and routes its outputs to `sink`; see `meterQualityGraph`. */
  readonly connect: (input: Observable<FlowEvent<RawReading>>, sink: MeterQualitySink) => Observable<unknown>;
  readonly untilIdle: boolean;
  readonly flushRows: number;
  readonly flushIntervalMs: number;
  readonly checkpointIntervalMs: number;
  readonly checkpointEveryFlushes?: number;
  readonly snapshotSliceMs?: number;
  readonly stateFormat?: string;
  readonly idlePollMs: number;
  readonly beforePull?: () => void;
  readonly now: () => number;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint) => void;
  readonly onFlush?: (batch: OutputBatch) => void;
  readonly observer?: RunObserver;
}

/**
 * Drives the meter-quality graph until the source ends or the signal aborts (see `EpochCoordinator` for
 * the cadences of writes and checkpoints, and `EpochCoordinatorOptions` for each option).
 */
export function runPipeline(options: RunOptions): Promise<RunTotals> {
  const { connect, observer, ...rest } = options;
  return new EpochCoordinator<SourceBatch, OutputBatch, RunTotals>({
    ...rest,
    graph: meterQualityEpochGraph(connect),
    ...(observer === undefined ? {} : { observer: withAlerts(observer) }),
  }).run();
}

/** The observer with its processing-time alerts added to each batch before it is written. */
function withAlerts(observer: RunObserver): EpochObserver<SourceBatch, OutputBatch, RunTotals> {
  const { alertsFor, ...hooks } = observer;
  if (alertsFor === undefined) return hooks;
  return {
    ...hooks,
    beforeWrite: (batch, pending) => {
      const extra = alertsFor.call(observer, batch, pending);
      return extra.length === 0 ? batch : { ...batch, alerts: [...batch.alerts, ...extra] };
    },
  };
}
