import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { HotStoreEvent } from '../connectors/clickhouse.js';
import { publishAlert } from '../connectors/jetstream.js';
import { acquireKvLease, leaseKey } from '../connectors/jetstream-lease.js';
import { describeHolder, FencedError, type Lease } from '../connectors/lease.js';
import { type MetricsServer, startMetricsServer } from '../connectors/metrics-server.js';
import { processMetrics } from '../connectors/process-metrics.js';
import { kvCheckpointStore } from '../pipelines/checkpoints.js';
import {
  JOB_DEFAULTS,
  type JobConfig,
  PIPELINE_VERSION,
  runMeterQualityJob,
  type SourceConfig,
} from '../pipelines/job.js';
import { JobMetrics } from '../pipelines/job-metrics.js';
import { batchBytesForMemory, engineMemory, MIN_MAX_MEMORY_MIB } from '../pipelines/memory-budget.js';
import { DEFAULT_UNAVAILABLE_AFTER_MS } from '../pipelines/pull-outage.js';
import { formatPartitionSet, parsePartitionSet } from '../pipelines/sources.js';
import { CheckpointStoreMismatchError } from '../pipelines/store-identity.js';
import { runThreadedJob, threadPlans } from '../pipelines/threaded-job.js';
import { runCrossMeterStage } from './cross-meter.js';
import { exitCodeFor } from './exit-codes.js';
import { tuneHeapForStreaming } from './heap.js';
import { bindLogger, logger } from './log.js';
import { type Command, UsageError } from './main.js';
import { openNatsSource } from './nats-source.js';
import {
  type OptionSpec,
  type OptionValues,
  optionsHelp,
  optionTable,
  parseOptions,
} from './option-table.js';
import { hotStoreOptions, loadProfile, parseHotTarget, redactCredentials } from './options.js';
import { startProgress } from './progress.js';
import { spawnGraphThread, threadsOf } from './run-threads.js';
import { type EmbeddedQueries, embeddedQueries, metricsHostOf, serveOptionSpecs } from './serve-queries.js';
import { workerConsole } from './worker-console.js';

/** Lease period of a NATS worker's id: how long a successor waits for a worker that vanished. */
export const DEFAULT_LEASE_MS = 15_000;

/** Long enough to ride out a ClickHouse restart or a short network outage without a supervisor. */
export const DEFAULT_SINK_RETRY_BUDGET_MS = 5 * 60_000;

/** The flags of `run` (and, after `--from`/`--to`, of `replay`). */
export const runOptionSpecs: readonly OptionSpec[] = [
  {
    name: 'source',
    type: 'string',
    arg: 'spec',
    env: ['NATS_URL', 'GS_SOURCE'],
    default: 'files:./data/landing',
    help: 'files:<landing dir> or nats://host:port (tls://host:port for TLS)',
  },
  {
    name: 'registry',
    type: 'string',
    arg: 'file',
    default: './data/landing/registry.csv',
    help: 'meter registry CSV',
  },
  ...hotStoreOptions({
    hot: 'chdb:<dir> (embedded) or http(s)://host:8123 (server; credentials from $CLICKHOUSE_USER / $CLICKHOUSE_PASSWORD)',
  }),
  { name: 'cold', type: 'string', arg: 'dir', default: './data/lake', help: 'Parquet lake root' },
  { name: 'no-cold', type: 'boolean', help: 'do not write the Parquet lake' },
  {
    name: 'cold-rows',
    type: 'integer',
    default: JOB_DEFAULTS.coldRows,
    help: 'write a lake file set once this many rows are spooled, and at each checkpoint (spooled rows wait on disk, not in memory)',
  },
  {
    name: 'checkpoint',
    type: 'string',
    arg: 'file',
    defaultText: '<chdb dir>/checkpoint.json, or ./data/checkpoint.json with a server hot store',
    help: 'checkpoint file of the files source; the NATS source keeps its checkpoints in the KV bucket greenstream_checkpoints',
  },
  {
    name: 'reset-checkpoint',
    type: 'boolean',
    help: 'discard the checkpoint (e.g. one taken with other stores) and start from the beginning of the input; the stores replace rows rather than double them',
  },
  {
    name: 'takeover',
    type: 'boolean',
    help: 'take this worker id over from a live worker at once (it stops at its next write, ack or checkpoint) instead of waiting for its lease to lapse',
  },
  {
    name: 'lease',
    type: 'duration',
    unit: 'ms',
    arg: 'ms',
    env: 'GS_LEASE_MS',
    default: DEFAULT_LEASE_MS,
    help: 'NATS source: lease period of the worker id, renewed every third of it',
  },
  {
    name: 'profile',
    type: 'string',
    arg: 'json',
    help: 'rule profile overrides (see README, "Rule profile")',
  },
  {
    name: 'worker',
    type: 'string',
    arg: 'id',
    defaultText: 'w0; cross_meter for --stage cross-meter',
    help: "worker id: names its checkpoint, consumers and lake files; workers running side by side need different ids (a second worker with the same id waits for the first one's lease; see --takeover)",
  },
  {
    name: 'partitions',
    type: 'string',
    arg: 'set',
    defaultText: 'all',
    help: 'own these partition subjects readings.<p>, e.g. 0-7 or 0-3,8: one durable consumer each (all: one consumer on readings.>). A worker keeps its set: to change it, start the new set under a new --worker id',
  },
  { name: 'partition', type: 'string', arg: 'p', help: 'shorthand for --partitions <p>' },
  {
    name: 'replicas',
    type: 'integer',
    arg: 'n',
    min: 1,
    max: 5,
    default: 1,
    help: 'NATS source: copies of the streams and checkpoint bucket it creates (3 on a 3-node cluster); existing ones are never changed',
  },
  {
    name: 'no-manage-streams',
    type: 'boolean',
    help: 'NATS source: create no stream or bucket, only check they exist (their owner creates them; see deploy/nats/README.md)',
  },
  {
    name: 'stage',
    type: 'string',
    arg: 'stage',
    choices: ['all', 'per-meter', 'cross-meter'],
    defaultText: 'all without --partitions, per-meter with them',
    help: 'all: every stage in this process; per-meter: per-meter stages, hourly aggregates and watermark published to the repartition stream; cross-meter: neighborhood outliers and daily peaks over the repartition stream, for every upstream partition',
  },
  {
    name: 'upstream-partitions',
    type: 'string',
    arg: 'set',
    defaultText: '0-15',
    help: 'cross-meter: the partitions the per-meter workers own between them; an hour fires once all passed it',
  },
  {
    name: 'threads',
    type: 'integer',
    arg: 'n',
    min: 1,
    max: 64,
    default: 1,
    help: 'NATS source, every partition: graph threads of this process, each over its own share of the partitions; the stores, the lake and the stages across meters stay on the main thread. Changing it needs a new --worker id',
  },
  {
    name: 'until-idle',
    type: 'boolean',
    help: 'stop once the source is drained and the final watermark fired its windows',
  },
  {
    name: 'flush-rows',
    type: 'integer',
    default: JOB_DEFAULTS.flushRows,
    help: 'write outputs to the stores once this many rows are buffered',
  },
  {
    name: 'flush-interval',
    type: 'duration',
    unit: 'ms',
    min: 1,
    default: JOB_DEFAULTS.flushIntervalMs,
    help: '… or this long after the previous write',
  },
  {
    name: 'checkpoint-interval',
    type: 'duration',
    unit: 'ms',
    min: 1,
    default: JOB_DEFAULTS.checkpointIntervalMs,
    help: 'save state and source position this often: a crash redoes at most this much work, which the stores absorb without doubling',
  },
  {
    name: 'checkpoint-flushes',
    type: 'integer',
    defaultText: 'time only',
    help: '… or after this many writes of outputs',
  },
  {
    name: 'pull',
    type: 'integer',
    default: 256,
    help: 'JetStream messages per pull, at most (a caught-up worker asks for one and gets it as it is published)',
  },
  {
    name: 'fetch-thread',
    type: 'boolean',
    help: "NATS source, every partition, one graph thread: pull, hold and acknowledge the messages on a thread of their own, which a stream of one reading per message keeps busy; the graph's thread decodes them",
  },
  {
    name: 'source-outage',
    type: 'duration',
    unit: 'ms',
    arg: 'ms',
    min: 1000,
    default: DEFAULT_UNAVAILABLE_AFTER_MS,
    help: 'NATS source: pulls failing this long end the run with exit 75 (retryable), for a supervisor to restart it; the consumer is recreated once at half of it (at most 20 s)',
  },
  {
    name: 'max-memory',
    type: 'size',
    unit: 'MiB',
    arg: 'MiB',
    min: MIN_MAX_MEMORY_MIB,
    defaultText:
      '64 × the batch budget that follows the heap limit; the engines take their shares of 1.5 GiB',
    help: 'memory budget of the worker (a bare number is MiB; 2GiB also reads): each batch takes at most 1/64 of it in input bytes (1-64 MiB), and the NATS source takes one message per batch while the RSS is above it; a quarter of it bounds embedded chDB (max_memory_usage of each statement) and a quarter DuckDB (memory_limit, the seal spills beyond it), at least 64 and 192 MiB (README, Memory)',
  },
  {
    name: 'sink-retry-budget',
    type: 'duration',
    unit: 'ms',
    min: 0,
    default: DEFAULT_SINK_RETRY_BUDGET_MS,
    help: 'how long a hot store request is retried (jittered exponential backoff, 0.5 s doubling up to 15 s) before the worker stops with status 75; meanwhile /readyz answers 503 and the worker resumes by itself when the store is back',
  },
  {
    name: 'metrics-port',
    type: 'integer',
    arg: 'n',
    min: 0,
    max: 65535,
    defaultText: 'none; on chdb:<dir> an ephemeral loopback port',
    help: 'serve /metrics, /healthz, /readyz on this port; on chdb:<dir> also read-only queries',
  },
  ...serveOptionSpecs,
];

const runNotes = [
  'Environment only:',
  '  $GS_HEAP_GROWING_PERCENT  V8 collects the old generation once the heap grew this much past what the',
  "                       last collection kept (default 50; 0 for V8's own heuristics)",
];

export const runTable = optionTable({
  command: 'run',
  synopsis: [
    'Usage: greenstream run [options]',
    '  Runs the meter-quality pipeline until stopped (or drained, --until-idle).',
  ],
  options: runOptionSpecs,
  notes: runNotes,
});

export const runCommand: Command = {
  name: 'run',
  summary: 'run the meter-quality pipeline (embedded by default, or on NATS + ClickHouse)',
  usage: optionsHelp(runTable),
  run: (argv) => runJobCommand(parseOptions(runTable, argv).values, undefined),
};

/** `run` and `replay` share everything but the source's start and the replay flag. */
export async function runJobCommand(
  values: OptionValues,
  replay: { readonly from: Date; readonly to?: Date } | undefined,
): Promise<number> {
  {
    tuneHeapForStreaming();
    const replayRange = replay;
    const spec = values.source as string;
    const text = (name: string) => values[name] as string | undefined;
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const stage = stageOf(
      text('stage'),
      ownedPartitions({ partitions: text('partitions'), partition: text('partition') }, process.env),
    );
    const worker = workerIdOf(text('worker'), stage);
    if (!/^[A-Za-z0-9_]+$/.test(worker)) throw new UsageError('--worker may hold letters, digits and _ only');
    const number = (name: string) => values[name] as number | undefined;
    const cadence = {
      flushRows: number('flush-rows'),
      flushIntervalMs: number('flush-interval'),
      checkpointIntervalMs: number('checkpoint-interval'),
      checkpointEveryFlushes: number('checkpoint-flushes'),
      coldRows: number('cold-rows'),
    };
    const leaseMs = number('lease') ?? DEFAULT_LEASE_MS;
    const command = replay === undefined ? 'run' : 'replay';
    bindLogger({
      worker,
      ...((text('partitions') ?? text('partition') ?? process.env.GS_PARTITIONS ?? process.env.GS_PARTITION)
        ? {
            partitions:
              text('partitions') ??
              text('partition') ??
              process.env.GS_PARTITIONS ??
              process.env.GS_PARTITION,
          }
        : {}),
    });
    const maxMemoryMiB = number('max-memory');
    const maxMemoryBytes = maxMemoryMiB === undefined ? undefined : maxMemoryMiB * 1024 * 1024;
    const hot = parseHotTarget(text('hot'), process.env, text('database'));
    const metricsPort = number('metrics-port');
    const metricsHost = metricsHostOf(values, process.env);
    if (stage === 'cross-meter') {
      if (replay !== undefined)
        throw new UsageError('replay runs the per-meter stages: drop --stage cross-meter');
      return runCrossMeterStage({
        spec,
        values: {
          registry: text('registry'),
          cold: text('cold'),
          'no-cold': values['no-cold'] === true,
          profile: text('profile'),
          worker,
          'until-idle': values['until-idle'] === true,
          takeover: values.takeover === true,
          'reset-checkpoint': values['reset-checkpoint'] === true,
          'no-manage-streams': values['no-manage-streams'] === true,
          'upstream-partitions': text('upstream-partitions'),
          partitions: text('partitions'),
          partition: text('partition'),
        },
        hot,
        leaseMs,
        cadence,
        metricsPort,
        metricsHost,
        sourceOutageMs: number('source-outage'),
        signal: abort.signal,
        replicas: values.replicas as number,
      });
    }
    // An embedded store answers queries on the endpoint, so it is served even without --metrics-port.
    const jobMetrics = new JobMetrics();
    const queries: EmbeddedQueries | undefined = embeddedQueries(
      hot,
      values,
      process.env,
      jobMetrics.registry,
    );
    const metrics = metricsPort === undefined && queries === undefined ? undefined : jobMetrics;
    const pages = workerConsole(hot, jobMetrics, () => metricsServer?.url);
    let source: SourceConfig;
    let nc: NatsConnection | undefined;
    let lease: Lease | undefined;
    let stopProgress: (() => Promise<void>) | undefined;
    let repartition: JobConfig['repartition'];
    let kv: Awaited<ReturnType<typeof openNatsSource>>['kv'] | undefined;
    const threads = threadsOf(number('threads'), {
      source: spec.startsWith('files:') ? 'files' : 'nats',
      stage,
      replay: replay !== undefined,
      partitions: () => allPartitions(process.env, text('upstream-partitions')).length,
    });
    if (spec.startsWith('files:')) {
      if (replay !== undefined)
        throw new UsageError(
          'replay reads the JetStream stream: give --source nats://host:port or $NATS_URL',
        );
      if (text('partitions') !== undefined || text('partition') !== undefined)
        throw new UsageError('--partitions applies to the NATS source: give --source nats://host:port');
      if (stage !== 'all')
        throw new UsageError(`--stage ${stage} runs on the NATS source: give --source nats://host:port`);
      if (values['fetch-thread'] === true)
        throw new UsageError('--fetch-thread applies to the NATS source: give --source nats://host:port');
      source = {
        kind: 'files',
        root: resolve(spec.slice('files:'.length)),
        ...(maxMemoryBytes === undefined ? {} : { maxBytesPerBatch: batchBytesForMemory(maxMemoryBytes) }),
      };
    } else if (spec.startsWith('nats://') || spec.startsWith('tls://')) {
      const partitions = ownedPartitions(
        { partitions: text('partitions'), partition: text('partition') },
        {},
      );
      const pullMessages = number('pull');
      const sourceOutageMs = number('source-outage');
      const fetchThread = values['fetch-thread'] === true;
      if (fetchThread && (partitions !== undefined || threads > 1))
        throw new UsageError('--fetch-thread applies to a worker owning every partition on one graph thread');
      const opened = await openNatsSource({
        url: spec,
        workerId: worker,
        ...(pullMessages === undefined ? {} : { pullMessages }),
        ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
        ...(sourceOutageMs === undefined ? {} : { sourceOutageMs }),
        ...(fetchThread ? { fetchThread } : {}),
        env: process.env,
        ...(partitions === undefined ? {} : { partitions }),
        ...(replayRange === undefined ? {} : { replay: replayRange }),
        replicas: values.replicas as number,
        manageStreams: !values['no-manage-streams'],
        // A replay rewrites the per-meter tables only: its hours already went to the cross-meter stage.
        repartition: stage === 'per-meter' && replay === undefined,
      });
      source = opened.config;
      if (opened.publisher !== undefined)
        repartition = {
          publisher: opened.publisher,
          partitions: partitions ?? allPartitions(process.env, text('upstream-partitions')),
        };
      nc = opened.nc;
      kv = opened.kv;
      // Claimed before anything touches the consumer: a second worker with this id waits here.
      lease = await acquireKvLease(opened.kv, leaseKey(opened.checkpointKey), {
        ttlMs: leaseMs,
        takeover: values.takeover === true,
        signal: abort.signal,
        onWait: (holder, epoch, ttlMs) =>
          logger.warn('waiting for worker lease', {
            lease: leaseKey(opened.checkpointKey),
            holder: describeHolder(holder),
            epoch,
            leaseMs: ttlMs,
            hint: 'another worker runs with this --worker id; --takeover takes it over at once',
          }),
        onTakeover: (holder, epoch, ttlMs) =>
          logger.warn('taking worker lease over', {
            lease: leaseKey(opened.checkpointKey),
            from: describeHolder(holder),
            epoch,
            waitMs: ttlMs,
          }),
      });
      logger.info('worker lease acquired', { lease: lease.name, epoch: lease.epoch });
      if (replay !== undefined && opened.config.kind === 'custom') {
        stopProgress = startProgress(opened.config.source, {
          label: 'replay',
          tty: process.stderr.isTTY === true,
          write: (text) => process.stderr.write(text),
        });
      }
    } else {
      throw new UsageError(
        `--source must be files:<dir> or nats://host:port, got "${redactCredentials(spec)}"`,
      );
    }
    const checkpointPath = resolve(
      text('checkpoint') ??
        (hot.kind === 'chdb' ? join(hot.path, 'checkpoint.json') : './data/checkpoint.json'),
    );
    if (source.kind === 'files' && text('checkpoint') === undefined && hot.kind === 'chdb') {
      const formerDefault = resolve('./data/checkpoint.json');
      if (formerDefault !== checkpointPath && existsSync(formerDefault))
        logger.warn('checkpoint moved', {
          checkpoint: checkpointPath,
          formerDefault,
          hint: `the files source now keeps its checkpoint beside the chDB store; pass --checkpoint ${formerDefault} to resume from the old one`,
        });
    }
    const config: JobConfig = {
      source,
      registryPath: resolve(values.registry as string),
      hot,
      memory: engineMemory(maxMemoryBytes),
      ...(values['no-cold'] === true ? {} : { coldDir: resolve(values.cold as string) }),
      checkpointPath,
      ...(lease === undefined ? {} : { lease }),
      takeover: values.takeover === true,
      resetCheckpoint: values['reset-checkpoint'] === true,
      onCheckpointReset: (cp) => logger.warn('checkpoint reset', { discardedSeq: cp.seq }),
      onLease: (event, holder, epoch) =>
        logger.warn(event === 'wait' ? 'waiting for checkpoint lock' : 'taking checkpoint lock over', {
          checkpoint: checkpointPath,
          holder: describeHolder(holder),
          epoch,
        }),
      // A replay ends where the stream ended when it started.
      untilIdle: values['until-idle'] === true || replay !== undefined,
      replay: replay !== undefined,
      profile: loadProfile(text('profile')),
      // Replays write their own lake files, so they never overwrite the live worker's.
      workerId: replay === undefined ? worker : `${worker}_replay${replay.from.getTime()}`,
      signal: abort.signal,
      ...(cadence.flushRows === undefined ? {} : { flushRows: cadence.flushRows }),
      ...(cadence.flushIntervalMs === undefined ? {} : { flushIntervalMs: cadence.flushIntervalMs }),
      ...(cadence.checkpointIntervalMs === undefined
        ? {}
        : { checkpointIntervalMs: cadence.checkpointIntervalMs }),
      ...(cadence.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: cadence.checkpointEveryFlushes }),
      ...(cadence.coldRows === undefined ? {} : { coldRows: cadence.coldRows }),
      ...(repartition === undefined ? {} : { repartition }),
      crossMeter: stage === 'all',
      observer: {
        ...metrics?.observer,
        opened: () => {
          metrics?.observer.opened?.();
          if (metricsServer !== undefined) queries?.start(metricsServer.url);
        },
        // Raised outside a stored batch (a failed sink or stage): the log is where an embedded run shows it.
        alertRaised: (alert, publishError) => {
          metrics?.observer.alertRaised?.(alert, publishError);
          logger.error('alert', { ...alert, published: publishError === undefined && nc !== undefined });
        },
      },
      ...(nc === undefined
        ? {}
        : {
            publishAlerts: async (alerts) => {
              for (const alert of alerts) await publishAlert(nc, alert);
            },
          }),
      onDeadLetter: (source, reason) => logger.warn('dead-lettered', { source, reason }),
      onExclusionInputError: (table, error) =>
        logger.warn('peak exclusions: read failed, keeping the last lookup', {
          table,
          error: error instanceof Error ? error.message : String(error),
        }),
      hotOptions: {
        retry: {
          budgetMs: values['sink-retry-budget'] as number,
          jitter: true,
          baseDelayMs: 500,
          maxDelayMs: 15_000,
        },
        onEvent: (event) => {
          logHotStoreEvent(event);
          jobMetrics.hotStoreEvent(event);
        },
      },
      onCheckpointFailure: (error) =>
        logger.error('checkpoint failed', {
          error: error instanceof Error ? error.message : String(error),
          retryable: (error as { retryable?: unknown }).retryable === true,
        }),
      onCheckpoint: (cp) =>
        logger.info('checkpoint', {
          seq: cp.seq,
          recordsIn: cp.totals.recordsIn,
          readings: cp.totals.readings,
          quarantined: cp.totals.quarantined,
          deadLettered: cp.totals.deadLettered,
          faults: cp.totals.faults,
          alerts: cp.totals.alerts,
        }),
    };
    let metricsServer: MetricsServer | undefined;
    try {
      if (metrics !== undefined) {
        const nodeMetrics = processMetrics({ worker });
        metricsServer = await startMetricsServer({
          port: metricsPort ?? 0,
          host: metricsHost,
          render: async () => `${metrics.render()}${await nodeMetrics.render()}`,
          ready: () => metrics.isReady(),
          ...(queries === undefined ? {} : { queries: queries.endpoint.handle }),
          pages: pages.pages,
        });
        logger.info('serving metrics', {
          bound: `${metricsServer.address.includes(':') ? `[${metricsServer.address}]` : metricsServer.address}:${metricsServer.port}`,
          url: `${metricsServer.url}/metrics`,
        });
      }
      const result =
        threads > 1 && kv !== undefined && lease !== undefined
          ? await runThreads(config, { threads, kv, lease, url: spec, values })
          : await runMeterQualityJob(config);
      await result.lake?.close();
      await result.hot.close();
      logger.info('stopped', { ...result.totals });
      process.stdout.write(`${JSON.stringify(result.totals)}\n`);
    } catch (err) {
      // Neither is retryable: restarting the worker as it is would fail the same way.
      if (err instanceof FencedError || err instanceof CheckpointStoreMismatchError) {
        logger.error(err.name, err.context);
        process.stderr.write(`greenstream ${command}: ${err.message}\n`);
        return exitCodeFor(err);
      }
      throw err;
    } finally {
      await lease?.release();
      await stopProgress?.();
      await pages.close();
      await queries?.close();
      await metricsServer?.close();
      await nc?.drain();
    }
    return 0;
  }
}

/**
 * The job on `threads` graph threads (`pipelines/threaded-job.ts`): the same stores, lease and cadences
 * as the single-thread job in `config`, each thread's checkpoint under `<worker>-t<i>` in the bucket.
 */
async function runThreads(
  config: JobConfig,
  settings: {
    readonly threads: number;
    readonly kv: Awaited<ReturnType<typeof openNatsSource>>['kv'];
    readonly lease: Lease;
    readonly url: string;
    readonly values: OptionValues;
  },
) {
  const { kv, values } = settings;
  const number = (name: string) => values[name] as number | undefined;
  const plans = threadPlans(
    config.workerId,
    allPartitions(process.env, values['upstream-partitions'] as string | undefined),
    settings.threads,
  );
  const maxMemoryMiB = number('max-memory');
  logger.info('graph threads', {
    threads: plans.map((p) => ({ id: p.id, partitions: formatPartitionSet(p.partitions) })),
  });
  const optional = <K extends string, V>(key: K, value: V | undefined) =>
    (value === undefined ? {} : { [key]: value }) as Partial<Record<K, V>>;
  return runThreadedJob({
    threads: plans,
    spawn: (plan) =>
      spawnGraphThread({
        plan,
        url: settings.url,
        registryPath: config.registryPath,
        profile: config.profile,
        untilIdle: config.untilIdle,
        pipelineVersion: PIPELINE_VERSION,
        flushRows: config.flushRows ?? JOB_DEFAULTS.flushRows,
        flushIntervalMs: config.flushIntervalMs ?? JOB_DEFAULTS.flushIntervalMs,
        checkpointIntervalMs: config.checkpointIntervalMs ?? JOB_DEFAULTS.checkpointIntervalMs,
        ...optional('pullMessages', number('pull')),
        ...optional('sourceOutageMs', number('source-outage')),
        // The budget is the process's: its RSS check sees every thread's memory (batches: 1/64 each).
        ...optional('maxMemoryBytes', maxMemoryMiB === undefined ? undefined : maxMemoryMiB * 1024 * 1024),
        ...optional('checkpointEveryFlushes', config.checkpointEveryFlushes),
      }),
    checkpointsOf: (key) => kvCheckpointStore(kv, key),
    checkpointName: (key) => `${key} in the KV bucket ${kv.bucket}`,
    registryPath: config.registryPath,
    hot: config.hot,
    ...optional('hotOptions', config.hotOptions),
    ...optional('coldDir', config.coldDir),
    ...optional('coldRows', config.coldRows),
    ...optional('memory', config.memory),
    lease: settings.lease,
    profile: config.profile,
    workerId: config.workerId,
    untilIdle: config.untilIdle,
    ...optional('resetCheckpoint', config.resetCheckpoint),
    onCheckpointReset: (cp, key) => logger.warn('checkpoint reset', { key, discardedSeq: cp.seq }),
    ...optional('flushIntervalMs', config.flushIntervalMs),
    ...optional('checkpointIntervalMs', config.checkpointIntervalMs),
    ...optional('checkpointEveryFlushes', config.checkpointEveryFlushes),
    ...optional('signal', config.signal),
    onCheckpoint: (cp, key) =>
      key === config.workerId
        ? logger.info('cross-meter checkpoint', {
            seq: cp.seq,
            faults: cp.totals.faults,
            alerts: cp.totals.alerts,
          })
        : logger.info('checkpoint', {
            thread: key,
            seq: cp.seq,
            recordsIn: cp.totals.recordsIn,
            readings: cp.totals.readings,
            quarantined: cp.totals.quarantined,
            deadLettered: cp.totals.deadLettered,
            faults: cp.totals.faults,
            alerts: cp.totals.alerts,
          }),
    ...optional('publishAlerts', config.publishAlerts),
    ...optional('observer', config.observer),
    ...optional('onExclusionInputError', config.onExclusionInputError),
  });
}

/** One line for each thing the hot store does on its own: a retry, a migration, a client warning. */
export function logHotStoreEvent(event: HotStoreEvent): void {
  if (event.type === 'retry')
    logger.warn('clickhouse retry', {
      operation: event.operation,
      ...(event.table === undefined ? {} : { table: event.table }),
      attempt: event.attempt,
      delayMs: event.delayMs,
      reason: event.reason,
    });
  else if (event.type === 'recovered')
    logger.warn('clickhouse recovered', {
      operation: event.operation,
      ...(event.table === undefined ? {} : { table: event.table }),
      attempts: event.attempts,
      downMs: event.downMs,
    });
  else if (event.type === 'migration_applied')
    logger.info('migration applied', { version: event.version, name: event.name });
  else logger.warn('clickhouse client warning', { message: event.message });
}

/**
 * The partitions a worker owns: `--partitions`, its shorthand `--partition`, then `$GS_PARTITIONS` and
 * `$GS_PARTITION`; undefined (every partition) when none is given.
 */
export function ownedPartitions(
  flags: { readonly partitions?: string | undefined; readonly partition?: string | undefined },
  env: NodeJS.ProcessEnv,
): number[] | undefined {
  if (flags.partitions !== undefined && flags.partition !== undefined)
    throw new UsageError('give --partitions or --partition, not both');
  const given = (text: string | undefined): text is string => text !== undefined && text.trim() !== '';
  let source: { name: string; text: string; single: boolean };
  if (flags.partitions !== undefined)
    source = { name: '--partitions', text: flags.partitions, single: false };
  else if (flags.partition !== undefined)
    source = { name: '--partition', text: flags.partition, single: true };
  else if (given(env.GS_PARTITIONS))
    source = { name: '$GS_PARTITIONS', text: env.GS_PARTITIONS, single: false };
  else if (given(env.GS_PARTITION)) source = { name: '$GS_PARTITION', text: env.GS_PARTITION, single: true };
  else return undefined;
  if (source.single && !/^\s*\d+\s*$/.test(source.text))
    throw new UsageError(`${source.name} must be one partition number, got "${source.text}"`);
  try {
    return parsePartitionSet(source.text);
  } catch (error) {
    throw new UsageError(`${source.name}: ${(error as Error).message}`);
  }
}

/**
 * `--worker`, else the stage's own default id (no table default: the cross-meter stage's id must differ
 * from a per-meter worker's, since the id names the checkpoint, consumers and lease).
 */
export function workerIdOf(flag: string | undefined, stage: 'all' | 'per-meter' | 'cross-meter'): string {
  return flag ?? (stage === 'cross-meter' ? 'cross_meter' : 'w0');
}

/** The stage a process runs: `--stage`, else `all` for an all-partitions worker and `per-meter` for a set. */
export function stageOf(
  text: string | undefined,
  partitions: readonly number[] | undefined,
): 'all' | 'per-meter' | 'cross-meter' {
  if (text === undefined || text.trim() === '') return partitions === undefined ? 'all' : 'per-meter';
  if (text === 'all' || text === 'per-meter' || text === 'cross-meter') return text;
  throw new UsageError(`--stage must be all, per-meter or cross-meter, got "${text}"`);
}

/** `--upstream-partitions`, else `$GS_UPSTREAM_PARTITIONS`, else 0-15 (the publisher's 16 partitions). */
export function allPartitions(env: NodeJS.ProcessEnv, flag?: string): number[] {
  const [name, text] =
    flag !== undefined
      ? ['--upstream-partitions', flag]
      : ['$GS_UPSTREAM_PARTITIONS', env.GS_UPSTREAM_PARTITIONS];
  if (text === undefined || text.trim() === '') return parsePartitionSet('0-15');
  try {
    return parsePartitionSet(text);
  } catch (error) {
    throw new UsageError(`${name}: ${(error as Error).message}`);
  }
}

/** `--max-memory <size>`, else `$GS_MAX_MEMORY`, in bytes, as the option table reads it; undefined when neither is given. */
export function maxMemoryFlag(flag: string | undefined, env: NodeJS.ProcessEnv): number | undefined {
  const mib = parseOptions(runTable, flag === undefined ? [] : [`--max-memory=${flag}`], {
    GS_MAX_MEMORY: env.GS_MAX_MEMORY,
  }).values['max-memory'] as number | undefined;
  return mib === undefined ? undefined : mib * 1024 * 1024;
}
