/**
 * The cross-meter job (`greenstream run --stage cross-meter`): reads the repartitioned hourly aggregates
 * of every upstream partition, fires each hour once all of them passed it, and writes neighborhood
 * outliers (faults, alerts) and daily peaks, with checkpoints and fencing of its own.
 */
import { BehaviorSubject } from 'rxjs';
import { type HotStore, type HotStoreTarget, openHotStore } from '../connectors/clickhouse.js';
import type { Lease } from '../connectors/lease.js';
import { openParquetLake, type ParquetLake } from '../connectors/parquet-lake.js';
import { type PipelineGraph, SideInput, StateStore } from '../core/index.js';
import type { MeterRegistry } from '../operators/outputs.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type { Alert } from '../schemas/reading.js';
import type { EpochObserver, Source } from './contracts.js';
import { EpochCoordinator } from './epoch-coordinator.js';
import type { StoredExclusionInputs } from './exclusion-inputs.js';
import { fencedCheckpoints, fencedSinks, fencedSource } from './fencing.js';
import { exclusionInputsFor, JOB_DEFAULTS, type JobResult, loadRegistry } from './job.js';
import { engineMemory } from './memory-budget.js';
import type { OutputBatch, RunTotals } from './meter-quality-outputs.js';
import {
  CROSS_METER_STATE_FORMAT,
  type CrossMeterPull,
  crossMeterEpochGraph,
  crossMeterGraph,
} from './repartition.js';
import type { Checkpoint, CheckpointStore } from './runner.js';
import { DEFAULT_COLD_ROWS, storeSinks } from './sinks.js';
import { identifiedCheckpoints, sinkIdentity } from './store-identity.js';

export interface CrossMeterJobConfig {
  readonly source: Source<CrossMeterPull>;
  readonly checkpoints: CheckpointStore;
  readonly checkpointName: string;
  readonly registryPath: string;
  readonly hot: HotStoreTarget;
  readonly coldDir?: string;
  readonly lease?: Lease;
  readonly profile: RuleProfile;
  /** Every upstream partition. */
  readonly partitions: readonly number[];
  readonly workerId: string;
  /** Stop once every upstream partition's bounded run ended and the stream is drained. */
  readonly untilIdle: boolean;
  readonly resetCheckpoint?: boolean;
  readonly flushIntervalMs?: number;
  readonly checkpointIntervalMs?: number;
  readonly checkpointEveryFlushes?: number;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint) => void;
  readonly publishAlerts?: (alerts: readonly Alert[]) => Promise<void>;
  readonly observer?: EpochObserver<CrossMeterPull, OutputBatch, RunTotals> & {
    graph?(graph: PipelineGraph): void;
  };
  /** A read of the peak exclusions' weather or maintenance table failed (the run goes on). */
  readonly onExclusionInputError?: (table: string, error: unknown) => void;
}

export async function runCrossMeterJob(
  config: CrossMeterJobConfig,
): Promise<JobResult & { totals: RunTotals }> {
  const registrySubject = new BehaviorSubject<MeterRegistry>(await loadRegistry(config.registryPath));
  // The engines' default shares (`engineMemory`): this stage holds hourly rows, not readings.
  const memory = engineMemory();
  const hot: HotStore = openHotStore(config.hot, { embeddedMemoryBytes: memory.chdbBytes });
  let lake: ParquetLake | undefined;
  let exclusions: StoredExclusionInputs | undefined;
  try {
    await hot.migrate();
    exclusions = await exclusionInputsFor(config.profile, true, hot, config.onExclusionInputError);
    lake =
      config.coldDir === undefined
        ? undefined
        : await openParquetLake({ dir: config.coldDir, memoryLimitBytes: memory.duckdbBytes });
    const store = new StateStore();
    const registry = new SideInput<MeterRegistry>('registry', registrySubject);
    const { graph, connect } = crossMeterGraph({
      profile: config.profile,
      registry,
      store,
      partitions: config.partitions,
      ...(exclusions === undefined ? {} : { exclusions: exclusions.inputs }),
    });
    config.observer?.graph?.(graph);
    const runSinks = await sinkIdentity(config.hot, hot, lake);
    const checkpoints = identifiedCheckpoints(config.checkpoints, runSinks, {
      name: config.checkpointName,
      ...(config.resetCheckpoint === undefined ? {} : { reset: config.resetCheckpoint }),
    });
    const sinks = storeSinks({
      hot,
      ...(lake === undefined ? {} : { lake }),
      sourceName: config.source.name,
      workerId: config.workerId,
      coldRows: DEFAULT_COLD_ROWS,
      now: Date.now,
      ...(config.publishAlerts === undefined ? {} : { publishAlerts: config.publishAlerts }),
    });
    const lease = config.lease;
    const totals = await new EpochCoordinator<CrossMeterPull, OutputBatch, RunTotals>({
      source: lease === undefined ? config.source : fencedSource(config.source, lease),
      sinks: lease === undefined ? sinks : fencedSinks(sinks, lease),
      checkpoints: lease === undefined ? checkpoints : fencedCheckpoints(checkpoints, lease),
      store,
      graph: crossMeterEpochGraph(connect),
      stateFormat: CROSS_METER_STATE_FORMAT,
      untilIdle: config.untilIdle,
      flushRows: JOB_DEFAULTS.flushRows,
      flushIntervalMs: config.flushIntervalMs ?? JOB_DEFAULTS.flushIntervalMs,
      checkpointIntervalMs: config.checkpointIntervalMs ?? JOB_DEFAULTS.checkpointIntervalMs,
      ...(config.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: config.checkpointEveryFlushes }),
      idlePollMs: 500,
      now: Date.now,
      ...(config.signal === undefined ? {} : { signal: config.signal }),
      ...(config.onCheckpoint === undefined ? {} : { onCheckpoint: config.onCheckpoint }),
      ...(config.observer === undefined ? {} : { observer: config.observer }),
    }).run();
    return { totals, hot, lake };
  } catch (err) {
    await lake?.close();
    await hot.close();
    throw err;
  } finally {
    exclusions?.close();
  }
}
