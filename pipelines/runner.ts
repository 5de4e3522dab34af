/**
 * Runs the meter-quality graph on the epoch coordinator: binds the job's pulls, output buffers, batches
 * and totals (`meter-quality-outputs.ts`) to the generic contracts (`contracts.ts`), and turns the
 * operational-alert hook into the batch the sinks write. The names other modules import for a run are
 * exported from here.
 */
import type { Observable } from 'rxjs';
import type { FlowEvent } from '../core/index.js';
import type { Alert, RawReading } from '../schemas/reading.js';
import type {
  Checkpoint as EpochCheckpoint,
  CheckpointStore as EpochCheckpointStore,
  EpochObserver,
  EpochSinks,
  StagedCheckpoint as EpochStagedCheckpoint,
  Source,
} from './contracts.js';
import { EpochCoordinator, type EpochCoordinatorOptions } from './epoch-coordinator.js';
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
export type StagedCheckpoint = EpochStagedCheckpoint<RunTotals>;

/**
 * Hooks into a run for metrics, readiness and operational alerts (see `EpochObserver`); `alertsFor`
 * adds processing-time alerts to the batch about to be written.
 */
export interface RunObserver extends Omit<EpochObserver<SourceBatch, OutputBatch, RunTotals>, 'beforeWrite'> {
  /** Processing-time alerts to store and publish with this batch. */
  alertsFor?(batch: OutputBatch, pending: number | undefined): readonly Alert[];
}

/**
 * The coordinator's options for the meter-quality job: its graph given as `connect` (see
 * `meterQualityGraph`) and its observer able to add processing-time alerts.
 */
export interface RunOptions
  extends Omit<EpochCoordinatorOptions<SourceBatch, OutputBatch, RunTotals>, 'graph' | 'observer'> {
  /** Subscribes the graph to `input` and routes its outputs to `sink`. */
  readonly connect: (input: Observable<FlowEvent<RawReading>>, sink: MeterQualitySink) => Observable<unknown>;
  readonly observer?: RunObserver;
  /** The hourly watermark alone makes a batch worth writing (a repartitioning worker publishes it). */
  readonly writesWatermark?: boolean;
}

/**
 * Drives the meter-quality graph until the source ends or the signal aborts (see `EpochCoordinator` for
 * the cadences of writes and checkpoints, and `EpochCoordinatorOptions` for each option).
 */
export function runPipeline(options: RunOptions): Promise<RunTotals> {
  const { connect, observer, writesWatermark, ...rest } = options;
  return new EpochCoordinator<SourceBatch, OutputBatch, RunTotals>({
    ...rest,
    graph: meterQualityEpochGraph(connect, writesWatermark === true),
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
