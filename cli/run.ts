import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { publishAlert } from '../connectors/jetstream.js';
import { acquireKvLease, leaseKey } from '../connectors/jetstream-lease.js';
import { describeHolder, FencedError, type Lease } from '../connectors/lease.js';
import { type MetricsServer, startMetricsServer } from '../connectors/metrics-server.js';
import { type JobConfig, runMeterQualityJob, type SourceConfig } from '../pipelines/job.js';
import { JobMetrics } from '../pipelines/job-metrics.js';
import { batchBytesForMemory, parseMaxMemory } from '../pipelines/memory-budget.js';
import { parsePartitionSet } from '../pipelines/sources.js';
import { CheckpointStoreMismatchError } from '../pipelines/store-identity.js';
import { runCrossMeterStage } from './cross-meter.js';
import { exitCodeFor } from './exit-codes.js';
import { tuneHeapForStreaming } from './heap.js';
import { logger } from './log.js';
import { type Command, UsageError } from './main.js';
import { openNatsSource } from './nats-source.js';
import { loadProfile, parseHotTarget, redactCredentials } from './options.js';
import { startProgress } from './progress.js';
import {
  type EmbeddedQueries,
  embeddedQueries,
  metricsHostOf,
  serveFlags,
  serveUsage,
} from './serve-queries.js';

export const runUsage = [
  'Usage: greenstream run [options]',
  '  --source <spec>      files:<landing dir> (default files:./data/landing) or nats://host:port ($NATS_URL)',
  '  --registry <file>    meter registry CSV (default ./data/landing/registry.csv)',
  '  --hot <spec>         chdb:<dir> (default chdb:./data/chdb) or http(s)://host:8123 ($CLICKHOUSE_URL;',
  '                       $CLICKHOUSE_USER / $CLICKHOUSE_PASSWORD)',
  '  --database <name>    ClickHouse database (default greenstream; $CLICKHOUSE_DATABASE)',
  '  --cold <dir>         Parquet lake root (default ./data/lake); --no-cold to skip the lake',
  '  --cold-rows <n>      write a lake file set once this many rows are buffered, and at each checkpoint',
  '                       (default 200000): larger files cost memory (~0.5 KB a buffered reading)',
  '  --checkpoint <file>  checkpoint file for the files source (default <chdb dir>/checkpoint.json, or',
  '                       ./data/checkpoint.json with a server hot store); the NATS source keeps its',
  '                       checkpoints in the KV bucket greenstream_checkpoints',
  '  --reset-checkpoint   discard the checkpoint (e.g. one taken with other stores) and start from the',
  '                       beginning of the input; the stores replace rows rather than double them',
  '  --takeover           take this worker id over from a live worker at once (it stops at its next',
  '                       write, ack or checkpoint) instead of waiting for its lease to lapse',
  '  --lease <ms>         NATS source: lease period of the worker id, renewed every third of it',
  '                       (default 15000; $GS_LEASE_MS)',
  '  --profile <json>     rule profile overrides (see README, "Rule profile")',
  '  --worker <id>        worker id (default w0; $GS_WORKER): names its checkpoint, consumers and lake',
  '                       files; workers running side by side need different ids (a second worker with',
  "                       the same id waits for the first one's lease; see --takeover)",
  '  --partitions <set>   own these partition subjects readings.<p>, e.g. 0-7 or 0-3,8 ($GS_PARTITIONS):',
  '                       one durable consumer each; default all (one consumer on readings.>). A worker',
  '                       keeps its set: to change it, start the new set under a new --worker id',
  '  --partition <p>      shorthand for --partitions <p> ($GS_PARTITION)',
  '  --replicas <n>       NATS source: copies (1-5) of the streams and checkpoint bucket it creates',
  '                       (default 1; 3 on a 3-node cluster; $GS_REPLICAS). Existing ones are never changed',
  '  --no-manage-streams  NATS source: create no stream or bucket, only check they exist (their owner',
  '                       creates them; see deploy/nats/README.md)',
  '  --stage <stage>      all (default without --partitions): every stage in this process; per-meter',
  '                       (default with --partitions): per-meter stages, hourly aggregates and watermark',
  '                       published to the repartition stream; cross-meter: neighborhood outliers and',
  '                       daily peaks over the repartition stream, for every upstream partition ($GS_STAGE)',
  '  --upstream-partitions <set>  cross-meter: the partitions the per-meter workers own between them',
  '                       (default 0-15; $GS_UPSTREAM_PARTITIONS); an hour fires once all passed it',
  '  --until-idle         stop once the source is drained and the final watermark fired its windows',
  '  --flush-rows <n>     write outputs to the stores once this many rows are buffered (default 100000)',
  '  --flush-interval <ms> … or this long after the previous write (default 1000)',
  '  --checkpoint-interval <ms> save state and source position this often (default 30000): a crash',
  '                       redoes at most this much work, which the stores absorb without doubling',
  '  --checkpoint-flushes <n> … or after this many writes of outputs (default: time only)',
  '  --pull <n>           JetStream messages per pull (default 256; smaller cuts latency when caught up)',
  '  --max-memory <MiB>   memory budget of the worker ($GS_MAX_MEMORY; at least 64): each batch takes at',
  '                       most 1/64 of it in input bytes (1-64 MiB; default 1/64 of the heap limit), and',
  '                       the NATS source takes one message per batch while the RSS is above it',
  '  --metrics-port <n>   serve /metrics, /healthz, /readyz on this port ($GS_METRICS_PORT); on chdb:<dir>',
  '                       also read-only queries (default there: an ephemeral loopback port)',
  ...serveUsage,
  '  $GS_HEAP_GROWING_PERCENT  V8 collects the old generation once the heap grew this much past what the',
  "                       last collection kept (default 50; 0 for V8's own heuristics)",
].join('\n');

/** Lease period of a NATS worker's id: how long a successor waits for a worker that vanished. */
export const DEFAULT_LEASE_MS = 15_000;

export const runCommand: Command = {
  name: 'run',
  summary: 'run the meter-quality pipeline (embedded by default, or on NATS + ClickHouse)',
  usage: runUsage,
  run: (argv) => runJobCommand(argv, undefined),
};

/** `run` and `replay` share everything but the source's start and the replay flag. */
export async function runJobCommand(
  argv: string[],
  replay: { readonly from: Date; readonly to?: Date } | undefined,
): Promise<number> {
  {
    tuneHeapForStreaming();
    const { values } = parseArgs({
      args: argv,
      options: {
        source: { type: 'string' },
        registry: { type: 'string', default: './data/landing/registry.csv' },
        hot: { type: 'string' },
        database: { type: 'string' },
        cold: { type: 'string', default: './data/lake' },
        'no-cold': { type: 'boolean', default: false },
        checkpoint: { type: 'string' },
        'reset-checkpoint': { type: 'boolean', default: false },
        takeover: { type: 'boolean', default: false },
        lease: { type: 'string' },
        profile: { type: 'string' },
        worker: { type: 'string' },
        'until-idle': { type: 'boolean', default: false },
        'flush-rows': { type: 'string' },
        'flush-interval': { type: 'string' },
        'checkpoint-interval': { type: 'string' },
        'checkpoint-flushes': { type: 'string' },
        'cold-rows': { type: 'string' },
        pull: { type: 'string' },
        'max-memory': { type: 'string' },
        'metrics-port': { type: 'string' },
        partitions: { type: 'string' },
        partition: { type: 'string' },
        replicas: { type: 'string' },
        'no-manage-streams': { type: 'boolean', default: false },
        stage: { type: 'string' },
        'upstream-partitions': { type: 'string' },
        ...serveFlags,
      },
    });
    const replayRange = replay;
    const spec = values.source ?? process.env.NATS_URL ?? 'files:./data/landing';
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const stage = stageOf(values.stage ?? process.env.GS_STAGE, ownedPartitions(values, process.env));
    values.worker ??= process.env.GS_WORKER ?? (stage === 'cross-meter' ? 'cross_meter' : 'w0');
    if (!/^[A-Za-z0-9_]+$/.test(values.worker!))
      throw new UsageError('--worker may hold letters, digits and _ only');
    const cadence = {
      flushRows: positiveIntegerFlag(values, 'flush-rows'),
      flushIntervalMs: positiveIntegerFlag(values, 'flush-interval'),
      checkpointIntervalMs: positiveIntegerFlag(values, 'checkpoint-interval'),
      checkpointEveryFlushes: positiveIntegerFlag(values, 'checkpoint-flushes'),
      coldRows: positiveIntegerFlag(values, 'cold-rows'),
    };
    const leaseMs =
      positiveIntegerFlag({ lease: values.lease ?? process.env.GS_LEASE_MS }, 'lease') ?? DEFAULT_LEASE_MS;
    const command = replay === undefined ? 'run' : 'replay';
    const maxMemoryBytes = maxMemoryFlag(values['max-memory'], process.env);
    const hot = parseHotTarget(values.hot, process.env, values.database ?? process.env.CLICKHOUSE_DATABASE);
    const metricsPortText = values['metrics-port'] ?? process.env.GS_METRICS_PORT;
    const metricsPort = metricsPortText === undefined ? undefined : Number(metricsPortText);
    if (
      metricsPort !== undefined &&
      !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort < 65536)
    )
      throw new UsageError(`--metrics-port must be a port number, got "${metricsPortText}"`);
    const metricsHost = metricsHostOf(values, process.env);
    if (stage === 'cross-meter') {
      if (replay !== undefined)
        throw new UsageError('replay runs the per-meter stages: drop --stage cross-meter');
      return runCrossMeterStage({
        spec,
        values,
        hot,
        leaseMs,
        cadence,
        metricsPort,
        metricsHost,
        signal: abort.signal,
        replicas: replicasFlag(values.replicas, process.env),
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
    let source: SourceConfig;
    let nc: NatsConnection | undefined;
    let lease: Lease | undefined;
    let stopProgress: (() => Promise<void>) | undefined;
    let repartition: JobConfig['repartition'];
    if (spec.startsWith('files:')) {
      if (replay !== undefined)
        throw new UsageError(
          'replay reads the JetStream stream: give --source nats://host:port or $NATS_URL',
        );
      if (values.partitions !== undefined || values.partition !== undefined)
        throw new UsageError('--partitions applies to the NATS source: give --source nats://host:port');
      if (stage !== 'all')
        throw new UsageError(`--stage ${stage} runs on the NATS source: give --source nats://host:port`);
      source = {
        kind: 'files',
        root: resolve(spec.slice('files:'.length)),
        ...(maxMemoryBytes === undefined ? {} : { maxBytesPerBatch: batchBytesForMemory(maxMemoryBytes) }),
      };
    } else if (spec.startsWith('nats://') || spec.startsWith('tls://')) {
      const partitions = ownedPartitions(values, process.env);
      const pullMessages = positiveIntegerFlag(values, 'pull');
      const opened = await openNatsSource({
        url: spec,
        workerId: values.worker!,
        ...(pullMessages === undefined ? {} : { pullMessages }),
        ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
        env: process.env,
        ...(partitions === undefined ? {} : { partitions }),
        ...(replayRange === undefined ? {} : { replay: replayRange }),
        replicas: replicasFlag(values.replicas, process.env),
        manageStreams: !values['no-manage-streams'],
        // A replay rewrites the per-meter tables only: its hours already went to the cross-meter stage.
        repartition: stage === 'per-meter' && replay === undefined,
      });
      source = opened.config;
      if (opened.publisher !== undefined)
        repartition = { publisher: opened.publisher, partitions: partitions ?? allPartitions(process.env) };
      nc = opened.nc;
      // Claimed before anything touches the consumer: a second worker with this id waits here.
      lease = await acquireKvLease(opened.kv, leaseKey(opened.checkpointKey), {
        ttlMs: leaseMs,
        takeover: values.takeover!,
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
      values.checkpoint ??
        (hot.kind === 'chdb' ? join(hot.path, 'checkpoint.json') : './data/checkpoint.json'),
    );
    if (source.kind === 'files' && values.checkpoint === undefined && hot.kind === 'chdb') {
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
      registryPath: resolve(values.registry!),
      hot,
      ...(values['no-cold'] ? {} : { coldDir: resolve(values.cold!) }),
      checkpointPath,
      ...(lease === undefined ? {} : { lease }),
      takeover: values.takeover!,
      resetCheckpoint: values['reset-checkpoint']!,
      onCheckpointReset: (cp) => logger.warn('checkpoint reset', { discardedSeq: cp.seq }),
      onLease: (event, holder, epoch) =>
        logger.warn(event === 'wait' ? 'waiting for checkpoint lock' : 'taking checkpoint lock over', {
          checkpoint: checkpointPath,
          holder: describeHolder(holder),
          epoch,
        }),
      // A replay ends where the stream ended when it started.
      untilIdle: values['until-idle']! || replay !== undefined,
      replay: replay !== undefined,
      profile: loadProfile(values.profile),
      // Replays write their own lake files, so they never overwrite the live worker's.
      workerId: replay === undefined ? values.worker! : `${values.worker!}_replay${replay.from.getTime()}`,
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
        metricsServer = await startMetricsServer({
          port: metricsPort ?? 0,
          host: metricsHost,
          render: () => metrics.render(),
          ready: () => metrics.isReady(),
          ...(queries === undefined ? {} : { queries: queries.endpoint.handle }),
        });
        logger.info('serving metrics', {
          bound: `${metricsServer.address.includes(':') ? `[${metricsServer.address}]` : metricsServer.address}:${metricsServer.port}`,
          url: `${metricsServer.url}/metrics`,
        });
      }
      const result = await runMeterQualityJob(config);
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
      await queries?.close();
      await metricsServer?.close();
      await nc?.drain();
    }
    return 0;
  }
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

/** `--replicas <n>`, else `$GS_REPLICAS`, else 1: JetStream accepts 1 to 5 copies. */
export function replicasFlag(flag: string | undefined, env: NodeJS.ProcessEnv): number {
  const [name, text] = flag !== undefined ? ['--replicas', flag] : ['$GS_REPLICAS', env.GS_REPLICAS];
  if (text === undefined || text.trim() === '') return 1;
  const n = Number(text);
  if (!(Number.isInteger(n) && n >= 1 && n <= 5))
    throw new UsageError(`${name} must be a number of replicas from 1 to 5, got "${text}"`);
  return n;
}

/** `--max-memory <MiB>`, else `$GS_MAX_MEMORY`, in bytes; undefined when neither is given. */
export function maxMemoryFlag(flag: string | undefined, env: NodeJS.ProcessEnv): number | undefined {
  const [name, text] = flag !== undefined ? ['--max-memory', flag] : ['$GS_MAX_MEMORY', env.GS_MAX_MEMORY];
  try {
    return parseMaxMemory(text);
  } catch (error) {
    throw new UsageError(`${name} ${(error as Error).message}`);
  }
}

/** A flag holding a positive integer, or undefined when not given; anything else is a usage error. */
function positiveIntegerFlag(
  values: Readonly<Record<string, string | boolean | undefined>>,
  name: string,
): number | undefined {
  const text = values[name];
  if (text === undefined || typeof text !== 'string') return undefined;
  const n = Number(text);
  if (!(Number.isInteger(n) && n > 0))
    throw new UsageError(`--${name} must be a positive integer, got "${text}"`);
  return n;
}
