/** The meter-quality job: opens the registry, stores, source, fences and checkpoints, then runs the epoch coordinator. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BehaviorSubject } from 'rxjs';
import {
  type HotStore,
  type HotStoreOptions,
  type HotStoreTarget,
  openHotStore,
} from '../connectors/clickhouse.js';
import { acquireFileLease, lockPathOf } from '../connectors/file-lease.js';
import type { Lease, LeaseHolder } from '../connectors/lease.js';
import { openParquetLake, type ParquetLake } from '../connectors/parquet-lake.js';
import {
  ConfigurationError,
  type PipelineGraph,
  SideInput,
  type SnapshotState,
  StateStore,
} from '../core/index.js';
import type { Lineage, MeterRegistry } from '../operators/outputs.js';
import { parseRegistryCsv } from '../operators/registry.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type { Alert } from '../schemas/reading.js';
import { fileCheckpointStore } from './checkpoints.js';
import { openStoredExclusionInputs, type StoredExclusionInputs } from './exclusion-inputs.js';
import { fencedCheckpoints, fencedSinks, fencedSource } from './fencing.js';
import { filesSource } from './files-source.js';
import { type EngineMemory, engineMemory } from './memory-budget.js';
import {
  METER_QUALITY_RESTORES_STATE_FORMATS,
  METER_QUALITY_STATE_FORMAT,
  meterQualityGraph,
} from './meter-quality.js';
import { type OpsAlertThresholds, opsAlertsObserver } from './ops-alerts.js';
import { type HourlyPublisher, repartitionSinks } from './repartition.js';
import { combineObservers } from './run-observers.js';
import {
  type Checkpoint,
  type CheckpointStore,
  type OutputBatch,
  type ReadingSource,
  type RunObserver,
  type RunTotals,
  runPipeline,
  type StagedCheckpoint,
} from './runner.js';
import { DEFAULT_COLD_ROWS, storeSinks } from './sinks.js';
import { type StageFault, stageFaultFromEnv } from './stage-fault.js';
import { type IdentifiedCheckpoint, identifiedCheckpoints, sinkIdentity } from './store-identity.js';

export const PIPELINE_VERSION = '0.1.0';

/**
 * Write outputs every 100,000 rows (chDB and the server want inserts of 10 K–100 K rows) or every second
 * (what a dashboard reading the hot store waits at most), and checkpoint every 30 s: a snapshot costs
 * about as much for a quiet minute as for a busy one (~70 ms per 1,000 meters held).
 */
export const JOB_DEFAULTS = {
  flushRows: 100_000,
  flushIntervalMs: 1_000,
  checkpointIntervalMs: 30_000,
  coldRows: DEFAULT_COLD_ROWS,
} as const;

export type SourceConfig =
  | {
      readonly kind: 'files';
      readonly root: string;
      /** Bytes of files per batch; default from the heap limit (`defaultBatchBytes`). */
      readonly maxBytesPerBatch?: number;
    }
  | {
      readonly kind: 'custom';
      readonly source: ReadingSource;
      readonly checkpoints: CheckpointStore;
      /** Names the checkpoint in messages (e.g. its KV key). */
      readonly checkpointName?: string;
    };

export interface JobConfig {
  readonly source: SourceConfig;
  readonly registryPath: string;
  /**
   * The registry itself, instead of reading `registryPath`: a bounded import registers meters from its
   * files' metadata as it meets them (a new value applies from the next batch of the graph on).
   */
  readonly registry?: BehaviorSubject<MeterRegistry>;
  readonly hot: HotStoreTarget;
  /** Retry policy, insert sizes … of the hot store. */
  readonly hotOptions?: HotStoreOptions;
  /** The Parquet lake root; no cold output when undefined. */
  readonly coldDir?: string;
  /**
   * Where file-source checkpoints live (the CLI's default: `<chdb dir>/checkpoint.json`, or
   * `./data/checkpoint.json` for a server hot store); its lock file `<path>.lock` fences the run.
   */
  readonly checkpointPath: string;
  /**
   * The lease the caller holds on this worker's id (the NATS source's KV lease, taken before the consumer
   * is touched): the source, sinks and checkpoints are guarded by it. Without one, a files-source run
   * takes the lock file beside its checkpoint.
   */
  readonly lease?: Lease;
  /** Files source: replace a live holder's checkpoint lock instead of waiting for it to end. */
  readonly takeover?: boolean;
  /** Called while this run waits for another worker's lock or takes it over. */
  readonly onLease?: (event: 'wait' | 'takeover', holder: LeaseHolder, epoch: number) => void;
  /** Discard the stored checkpoint (taken with these or other sinks) and start from the beginning. */
  readonly resetCheckpoint?: boolean;
  /** Called when `resetCheckpoint` discards a checkpoint. */
  readonly onCheckpointReset?: (checkpoint: IdentifiedCheckpoint) => void;
  readonly untilIdle: boolean;
  readonly replay: boolean;
  readonly profile: RuleProfile;
  readonly workerId: string;
  /** See `RunOptions`; defaults `JOB_DEFAULTS`. */
  readonly flushRows?: number;
  readonly flushIntervalMs?: number;
  readonly checkpointIntervalMs?: number;
  readonly checkpointEveryFlushes?: number;
  /** Lake rows buffered before a file set is written; see `StoreSinksOptions.coldRows`. */
  readonly coldRows?: number;
  /** What chDB and DuckDB may use; default `engineMemory()` (shares of 1.5 GiB). */
  readonly memory?: EngineMemory;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint) => void;
  /** A checkpoint could not be saved (the run then fails with the error): for the log. */
  readonly onCheckpointFailure?: (error: unknown) => void;
  readonly onFlush?: (batch: OutputBatch) => void;
  /** A landing file dead-lettered (or refused: a link, a name that is not UTF-8, too large), with why. */
  readonly onDeadLetter?: (source: string, reason: string) => void;
  /** Publishes each committed batch's alerts (on NATS: `greenstream.alerts.<severity>.<kind>`). */
  readonly publishAlerts?: (alerts: readonly Alert[]) => Promise<void>;
  /** Quality-degradation and backlog thresholds; the first seed's (80, 1000) by default. */
  readonly opsAlerts?: Partial<OpsAlertThresholds>;
  /** Instrumentation (metrics, readiness); see `JobMetrics`. */
  readonly observer?: JobObserver;
  /**
   * A worker owning some partitions (`--stage per-meter`): no stages across meters here; its hourly
   * aggregates and watermark over `partitions` go to the cross-meter stage through `publisher`.
   */
  readonly repartition?: { readonly publisher: HourlyPublisher; readonly partitions: readonly number[] };
  /** Run the stages across meters here (default: unless `repartition` sends them elsewhere). */
  readonly crossMeter?: boolean;
  /** A read of the peak exclusions' weather or maintenance table failed (the run goes on): for the log. */
  readonly onExclusionInputError?: (table: string, error: unknown) => void;
}

/** A run observer that also sees the job's graph and the alerts raised outside a stored batch. */
export interface JobObserver extends RunObserver {
  /** The graph about to run: its `stageCounters()` give per-stage throughput and the watermark. */
  graph?(graph: PipelineGraph): void;
  /** An alert published but not stored (a transformation failure: the store is what failed). */
  alertRaised?(alert: Alert, publishError: unknown): void;
  /** The stores, once opened and migrated (e.g. to sample their memory alongside the run). */
  stores?(hot: HotStore, lake: ParquetLake | undefined): void;
}

export interface JobResult {
  readonly totals: RunTotals;
  readonly hot: HotStore;
  readonly lake: ParquetLake | undefined;
}

export class RegistryError extends ConfigurationError<{ readonly path: string }> {
  override readonly name = 'RegistryError';
}

/** The test hook's fault, when `GS_TEST_FAULT` is set (tests only). */
function withFault(fault: StageFault | undefined): { fault?: StageFault } {
  return fault === undefined ? {} : { fault };
}

/** Reads and parses the meter registry; any malformed line stops the job with every problem listed. */
export async function loadRegistry(path: string): Promise<MeterRegistry> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new RegistryError(`cannot read the meter registry ${path}: ${(err as Error).message}`, {
      context: { path },
      cause: err,
    });
  }
  const { registry, errors } = parseRegistryCsv(text);
  if (errors.length > 0) {
    const shown = errors.slice(0, 10).map((e) => `line ${e.line}: ${e.reason}`);
    throw new RegistryError(
      `meter registry ${path} has ${errors.length} bad line(s):\n  ${shown.join('\n  ')}`,
      { context: { path } },
    );
  }
  return registry;
}

/**
 * Runs the meter-quality job: opens the stores, migrates, resumes from the last checkpoint and drives the
 * graph until the source is drained (`untilIdle`) or the signal aborts. The caller closes `hot`/`lake`.
 */
export async function runMeterQualityJob(config: JobConfig): Promise<JobResult> {
  const registrySubject = config.registry ?? new BehaviorSubject(await loadRegistry(config.registryPath));
  const ownLease =
    config.lease === undefined && config.source.kind === 'files'
      ? await acquireFileLease(lockPathOf(config.checkpointPath), {
          ...(config.takeover === undefined ? {} : { takeover: config.takeover }),
          ...(config.signal === undefined ? {} : { signal: config.signal }),
          onWait: (holder, epoch) => config.onLease?.('wait', holder, epoch),
          onTakeover: (holder, epoch) => config.onLease?.('takeover', holder, epoch),
        })
      : undefined;
  const lease = config.lease ?? ownLease;
  const memory = config.memory ?? engineMemory();
  const hot = openHotStore(config.hot, { embeddedMemoryBytes: memory.chdbBytes, ...config.hotOptions });
  let lake: ParquetLake | undefined;
  let exclusions: StoredExclusionInputs | undefined;
  try {
    try {
      await hot.migrate();
    } catch (error) {
      // A newer holder that took the lease over while this one started may have opened the store first
      // (an embedded chDB folder opens in one process at a time): being fenced is the reason to report.
      await lease?.check('open the hot store');
      throw error;
    }
    await hot.insert('meters', [...registrySubject.value.values()]);
    const crossMeter = config.crossMeter ?? config.repartition === undefined;
    exclusions = await exclusionInputsFor(config.profile, crossMeter, hot, config.onExclusionInputError);
    lake =
      config.coldDir === undefined
        ? undefined
        : await openParquetLake({ dir: config.coldDir, memoryLimitBytes: memory.duckdbBytes });
    const store = new StateStore();
    const registry = new SideInput<MeterRegistry>('registry', registrySubject);
    let batchTime = Date.now();
    const lineage: Lineage = { pipelineVersion: PIPELINE_VERSION, processedAt: () => batchTime };
    const interval = config.profile.gaps.defaultIntervalMs;
    const { graph, connect } = meterQualityGraph({
      profile: config.profile,
      registry,
      store,
      lineage,
      replay: config.replay,
      // A drained bounded input ends at its last interval, not at the end of time: a meter's "silent for
      // 24 h" timer must not fire merely because the files ended.
      finalWatermark: (max) => max + interval,
      // … and gets there an interval at a time, each step's outputs written before the next fires.
      finalStepMs: interval,
      ...(config.untilIdle ? {} : { idleTimeoutMs: 30_000 }),
      ...withFault(stageFaultFromEnv(process.env)),
      crossMeter,
      ...(exclusions === undefined ? {} : { exclusions: exclusions.inputs }),
    });
    config.observer?.graph?.(graph);
    config.observer?.stores?.(hot, lake);
    const runSinks = await sinkIdentity(config.hot, hot, lake);
    const unfencedSource: ReadingSource =
      config.source.kind === 'files'
        ? filesSource({
            root: config.source.root,
            deadLetterDir: join(config.source.root, 'dead-letter'),
            ...(config.source.maxBytesPerBatch === undefined
              ? {}
              : { maxBytesPerBatch: config.source.maxBytesPerBatch }),
            now: () => batchTime,
            ...(config.onDeadLetter === undefined ? {} : { onDeadLetter: config.onDeadLetter }),
          })
        : config.source.source;
    const source = lease === undefined ? unfencedSource : fencedSource(unfencedSource, lease);
    const checkpoints = identifiedCheckpoints(
      config.source.kind === 'custom'
        ? config.source.checkpoints
        : fileCheckpointStore(config.checkpointPath),
      runSinks,
      {
        name:
          config.source.kind === 'custom'
            ? (config.source.checkpointName ?? source.name)
            : config.checkpointPath,
        ...(config.resetCheckpoint === undefined ? {} : { reset: config.resetCheckpoint }),
        ...(config.onCheckpointReset === undefined ? {} : { onReset: config.onCheckpointReset }),
      },
    );
    const storeOnly = storeSinks({
      hot,
      ...(lake === undefined ? {} : { lake }),
      sourceName: source.name,
      workerId: config.workerId,
      coldRows: config.coldRows ?? JOB_DEFAULTS.coldRows,
      now: () => batchTime,
      ...(config.publishAlerts === undefined ? {} : { publishAlerts: config.publishAlerts }),
    });
    const repartition = config.repartition;
    const upstream = { worker: config.workerId, partitions: repartition?.partitions ?? [] };
    const published =
      repartition === undefined ? undefined : repartitionSinks(storeOnly, repartition.publisher, upstream);
    const unfencedSinks = published ?? storeOnly;
    const totals = await runPipeline({
      source,
      beforePull: () => {
        batchTime = Date.now();
      },
      sinks: lease === undefined ? unfencedSinks : fencedSinks(unfencedSinks, lease),
      checkpoints: reportingFailures(
        lease === undefined ? checkpoints : fencedCheckpoints(checkpoints, lease),
        config.onCheckpointFailure,
      ),
      store,
      connect,
      stateFormat: METER_QUALITY_STATE_FORMAT,
      restoresStateFormats: METER_QUALITY_RESTORES_STATE_FORMATS,
      untilIdle: config.untilIdle,
      flushRows: config.flushRows ?? JOB_DEFAULTS.flushRows,
      flushIntervalMs: config.flushIntervalMs ?? JOB_DEFAULTS.flushIntervalMs,
      checkpointIntervalMs: config.checkpointIntervalMs ?? JOB_DEFAULTS.checkpointIntervalMs,
      ...(config.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: config.checkpointEveryFlushes }),
      idlePollMs: 500,
      ...(repartition === undefined ? {} : { writesWatermark: true }),
      now: Date.now,
      ...(config.signal === undefined ? {} : { signal: config.signal }),
      ...(config.onCheckpoint === undefined ? {} : { onCheckpoint: config.onCheckpoint }),
      ...(config.onFlush === undefined ? {} : { onFlush: config.onFlush }),
      observer: combineObservers(
        opsAlertsObserver({
          ...(config.opsAlerts === undefined ? {} : { thresholds: config.opsAlerts }),
          now: Date.now,
          ...(config.publishAlerts === undefined ? {} : { publish: config.publishAlerts }),
          raisedOutsideBatch: (alert, publishError) => config.observer?.alertRaised?.(alert, publishError),
        }),
        config.observer,
      ),
    });
    if (repartition !== undefined && config.untilIdle && config.signal?.aborted !== true) {
      // The bounded run is over: the cross-meter stage's own bounded run may end once every upstream did.
      await lease?.check('final watermark');
      await repartition.publisher.publish([], {
        ...upstream,
        time: published?.lastWatermark ?? Number.NEGATIVE_INFINITY,
        final: true,
      });
    }
    return { totals, hot, lake };
  } catch (err) {
    await lake?.close();
    await hot.close();
    throw err;
  } finally {
    exclusions?.close();
    await ownLease?.release();
  }
}

/**
 * The peak exclusions' side inputs from the hot store, when the profile enables them and this worker
 * ranks the daily peaks; refreshed every `exclusions.refreshMs`.
 */
export async function exclusionInputsFor(
  profile: RuleProfile,
  ranksPeaks: boolean,
  hot: HotStore,
  onError?: (table: string, error: unknown) => void,
): Promise<StoredExclusionInputs | undefined> {
  if (!profile.exclusions.enabled || !ranksPeaks) return undefined;
  return openStoredExclusionInputs(hot, profile.exclusions.refreshMs, onError);
}

/** The store with every failed save reported before it is rethrown. */
function reportingFailures(
  store: CheckpointStore,
  onFailure: ((error: unknown) => void) | undefined,
): CheckpointStore {
  if (onFailure === undefined) return store;
  return {
    ...(store.chains === true ? { chains: true } : {}),
    ...(store.extendsLoaded === true ? { extendsLoaded: true } : {}),
    load: () => store.load(),
    save: async (checkpoint) => {
      try {
        await store.save(checkpoint);
      } catch (error) {
        onFailure(error);
        throw error;
      }
    },
    ...(store.stage === undefined
      ? {}
      : {
          stage: async (seq: number, state: SnapshotState): Promise<StagedCheckpoint> => {
            const reported = async <R>(work: () => Promise<R>): Promise<R> => {
              try {
                return await work();
              } catch (error) {
                onFailure(error);
                throw error;
              }
            };
            const staged = await reported(() => store.stage!(seq, state));
            return { commit: (checkpoint) => reported(() => staged.commit(checkpoint)) };
          },
        }),
  };
}
