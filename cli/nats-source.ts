/**
 * The NATS side of a worker: the connection, the readings source (all partitions, a partition set or a
 * replay) with its checkpoint key in the KV bucket, and the cross-meter stage's repartition source.
 */
import { type JetStreamClient, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  CheckpointKv,
  connectNats,
  ensureDeadLetterStream,
  ensureReadingsStream,
  JetStreamSource,
  type LimitDifference,
  type NatsConnectionConfig,
  READINGS_STREAM,
  READINGS_SUBJECT_PREFIX,
  ReplaySource,
  streamLastSeq,
} from '../connectors/jetstream.js';
import {
  decodeRepartitionMessage,
  ensureRepartitionStream,
  REPARTITION_STREAM,
  RepartitionPublisher,
} from '../connectors/jetstream-repartition.js';
import { kvCheckpointStore } from '../pipelines/checkpoints.js';
import type { Source } from '../pipelines/contracts.js';
import type { SourceConfig } from '../pipelines/job.js';
import { batchBytesForMemory } from '../pipelines/memory-budget.js';
import {
  DEFAULT_REOPEN_AFTER_MS,
  DEFAULT_UNAVAILABLE_AFTER_MS,
  type PullOutageOptions,
} from '../pipelines/pull-outage.js';
import { type CrossMeterPull, repartitionSource } from '../pipelines/repartition.js';
import type { CheckpointStore, ReadingSource } from '../pipelines/runner.js';
import {
  formatPartitionSet,
  messageReadingSource,
  type OpenMessages,
  partitionedReadingSource,
} from '../pipelines/sources.js';
import { threadedMessageSource } from '../pipelines/threaded-message-source.js';
import { logger } from './log.js';

/** Connection settings from the URL and the environment; secrets only ever come from the environment. */
export function natsConfigFrom(url: string, env: NodeJS.ProcessEnv): NatsConnectionConfig {
  return {
    servers: url.split(','),
    name: 'greenstream',
    ...(env.NATS_USER === undefined ? {} : { user: env.NATS_USER }),
    ...(env.NATS_PASSWORD === undefined ? {} : { password: env.NATS_PASSWORD }),
    ...(env.NATS_TOKEN === undefined ? {} : { token: env.NATS_TOKEN }),
    ...(env.NATS_CREDS === undefined ? {} : { credentialsFile: env.NATS_CREDS }),
    ...(env.NATS_TLS === '1' || url.startsWith('tls://') ? { tls: true } : {}),
  };
}

export interface NatsSourceSettings {
  readonly url: string;
  readonly workerId: string;
  /**
   * The partitions (subjects `readings.<p>`) this worker owns, one durable consumer each; every
   * partition, through one consumer on `readings.>`, when undefined.
   */
  readonly partitions?: readonly number[];
  readonly replay?: { readonly from: Date; readonly to?: Date };
  /** Messages per pull (default 256): smaller pulls cut latency when caught up, larger ones raise throughput. */
  readonly pullMessages?: number;
  /**
   * `--max-memory`, bytes: sizes each batch's byte budget (1/64 of it, 1–64 MiB) and, while the resident
   * set is above it, shrinks batches to one message. Default: the budget follows the heap limit.
   */
  readonly maxMemoryBytes?: number;
  /**
   * `--source-outage`, ms: pulls failing this long end the run with a retryable error (exit 75); the
   * consumer is recreated once, at half of it (at most 20 s). Default 90 s.
   */
  readonly sourceOutageMs?: number;
  readonly env: NodeJS.ProcessEnv;
  /** `--replicas`: copies of the streams and the checkpoint bucket this worker creates (default 1). */
  readonly replicas?: number;
  /** `--no-manage-streams`: create nothing, only check that the streams and the bucket exist. */
  readonly manageStreams?: boolean;
  /**
   * `--fetch-thread`: pulls, message handles and acknowledgements on a thread of their own
   * (`threadedMessageSource`), for a worker that owns every partition; ignored with `partitions`.
   */
  readonly fetchThread?: boolean;
}

/** How the worker creates its streams: `--replicas`, `--no-manage-streams`, a warning for kept limits. */
export function streamManagement(settings: Pick<NatsSourceSettings, 'replicas' | 'manageStreams'>) {
  return {
    replicas: settings.replicas ?? 1,
    manage: settings.manageStreams !== false,
    onLimitsDiffer: (stream: string, differences: readonly LimitDifference[]) =>
      logger.warn('stream limits differ from the recommended ones; kept as they are', {
        stream,
        differences: differences.map((d) => `${d.limit}: ${d.actual} (recommended ${d.recommended})`),
      }),
  };
}

/** The bounds of a pull outage (see `pullOutage`) and its log lines. */
export function pullOutageSettings(sourceOutageMs: number | undefined): PullOutageOptions {
  const unavailableAfterMs = sourceOutageMs ?? DEFAULT_UNAVAILABLE_AFTER_MS;
  return {
    unavailableAfterMs,
    reopenAfterMs: Math.min(DEFAULT_REOPEN_AFTER_MS, Math.floor(unavailableAfterMs / 2)),
    onPullsFailing: ({ source, action, reason, failingForMs }) =>
      action === 'failing'
        ? logger.warn('pulls failing; retrying', { source, reason })
        : logger.warn('pulls still failing; consumer recreated', { source, reason, failingForMs }),
  };
}

function logDeliveriesLost(count: number, resumeAfterSeq: number): void {
  logger.warn('deliveries lost in transit; consumer recreated to read them again in order', {
    count,
    resumeAfterSeq,
  });
}

/** The durable consumer of one owned partition: a worker's cursors are never shared with another. */
export function partitionDurable(workerId: string, partition: number): string {
  return `greenstream_${workerId}_p${partition}`;
}

export async function openNatsSource(
  settings: NatsSourceSettings & {
    /** `--stage per-meter`: the hourly aggregates go to the repartition stream through this publisher. */
    readonly repartition?: boolean;
  },
): Promise<{
  config: SourceConfig;
  nc: NatsConnection;
  publisher?: RepartitionPublisher;
  /** The checkpoint bucket and this run's key in it (the worker's lease lives beside it). */
  kv: CheckpointKv;
  checkpointKey: string;
}> {
  const nc = await connectNats(natsConfigFrom(settings.url, settings.env));
  void logConnectionStatus(nc);
  const js = jetstream(nc);
  const management = streamManagement(settings);
  await ensureReadingsStream(js, management);
  await ensureDeadLetterStream(js, management);
  if (settings.repartition === true) await ensureRepartitionStream(js, management);
  const replay = settings.replay;
  // A replay starts from clean operator state and never moves the live worker's checkpoint.
  const checkpointKey =
    replay === undefined ? settings.workerId : `${settings.workerId}_replay_${replay.from.getTime()}`;
  const sourceOptions = {
    ...(settings.pullMessages === undefined ? {} : { batchSize: settings.pullMessages }),
    ...(settings.maxMemoryBytes === undefined
      ? {}
      : {
          maxBytesPerBatch: batchBytesForMemory(settings.maxMemoryBytes),
          memoryLimitBytes: settings.maxMemoryBytes,
        }),
    now: Date.now,
    onDeadLetter: (source: string, reason: string) => logger.warn('dead-lettered', { source, reason }),
    onDeliveriesLost: logDeliveriesLost,
    ...pullOutageSettings(settings.sourceOutageMs),
  };
  let source: ReadingSource;
  if (settings.partitions === undefined && settings.fetchThread === true) {
    source = threadedMessageSource({
      ...sourceOptions,
      nats: natsConfigFrom(settings.url, settings.env),
      consumer:
        replay === undefined
          ? { kind: 'durable', durable: `greenstream_${settings.workerId}` }
          : {
              kind: 'replay',
              fromMs: replay.from.getTime(),
              ...(replay.to === undefined ? {} : { toMs: replay.to.getTime() }),
            },
    });
  } else if (settings.partitions === undefined) {
    source = messageReadingSource(
      replay === undefined
        ? recreatedDurable(js, `greenstream_${settings.workerId}`, undefined)
        : replayFrom(js, replay, undefined),
      sourceOptions,
    );
  } else {
    const jsm = await js.jetstreamManager();
    const partitions = settings.partitions;
    source = partitionedReadingSource(
      (p, resumeAfterSeq) =>
        (replay === undefined
          ? recreatedDurable(js, partitionDurable(settings.workerId, p), partitionSubject(p))
          : replayFrom(js, replay, partitionSubject(p)))(resumeAfterSeq),
      {
        ...sourceOptions,
        partitions,
        streamLastSeq: () => streamLastSeq(jsm, READINGS_STREAM),
        onOpened: (resumeAfter) =>
          logger.info('partitions opened', { partitions: formatPartitionSet(partitions), resumeAfter }),
      },
    );
  }
  const kv = await CheckpointKv.open(js, management);
  return {
    config: {
      kind: 'custom',
      source,
      checkpoints: kvCheckpointStore(kv, checkpointKey),
      checkpointName: `${checkpointKey} in the KV bucket ${kv.bucket}`,
    },
    nc,
    kv,
    checkpointKey,
    ...(settings.repartition === true ? { publisher: new RepartitionPublisher(js) } : {}),
  };
}

/**
 * The cross-meter stage's source: the repartition stream from just after its checkpoint's position,
 * through the durable consumer `greenstream_<worker>`, and its checkpoint key in the bucket.
 */
export async function openRepartitionSource(
  settings: Pick<
    NatsSourceSettings,
    'url' | 'workerId' | 'env' | 'replicas' | 'manageStreams' | 'sourceOutageMs'
  > & {
    readonly partitions: readonly number[];
    readonly untilIdle: boolean;
  },
): Promise<{
  source: Source<CrossMeterPull>;
  checkpoints: CheckpointStore;
  checkpointName: string;
  nc: NatsConnection;
  kv: CheckpointKv;
  checkpointKey: string;
}> {
  const nc = await connectNats(natsConfigFrom(settings.url, settings.env));
  const js = jetstream(nc);
  const management = streamManagement(settings);
  await ensureRepartitionStream(js, management);
  const durable = `greenstream_${settings.workerId}`;
  const source = repartitionSource(
    (resumeAfterSeq) => JetStreamSource.recreate(js, { stream: REPARTITION_STREAM, durable }, resumeAfterSeq),
    {
      partitions: settings.partitions,
      untilFinal: settings.untilIdle,
      decode: (m) => decodeRepartitionMessage(m.subject, m.data),
      onDeliveriesLost: logDeliveriesLost,
      ...pullOutageSettings(settings.sourceOutageMs),
    },
  );
  const kv = await CheckpointKv.open(js, management);
  const checkpointKey = settings.workerId;
  return {
    source,
    checkpoints: kvCheckpointStore(kv, checkpointKey),
    checkpointName: `${checkpointKey} in the KV bucket ${kv.bucket}`,
    nc,
    kv,
    checkpointKey,
  };
}

/** A line for every disconnect, reconnect attempt and reconnect of the worker's NATS connection. */
async function logConnectionStatus(nc: NatsConnection): Promise<void> {
  try {
    for await (const status of nc.status()) {
      const fields = { server: 'server' in status ? String(status.server) : undefined };
      if (status.type === 'disconnect') logger.warn('nats disconnected', fields);
      else if (status.type === 'reconnecting') logger.info('nats reconnecting', fields);
      else if (status.type === 'reconnect') logger.warn('nats reconnected', fields);
      else if (status.type === 'error')
        logger.error('nats connection error', { error: String(status.error) });
    }
  } catch {
    // The iterator ends with the connection; nothing is left to report.
  }
}

function partitionSubject(partition: number): string {
  return `${READINGS_SUBJECT_PREFIX}.${partition}`;
}

/** See `JetStreamSource.recreate`: the checkpoint, not the consumer, holds the position. */
function recreatedDurable(js: JetStreamClient, durable: string, subject: string | undefined): OpenMessages {
  return (resumeAfterSeq) =>
    JetStreamSource.recreate(
      js,
      { durable, ...(subject === undefined ? {} : { filterSubjects: [subject] }) },
      resumeAfterSeq,
    );
}

function replayFrom(
  js: JetStreamClient,
  replay: { readonly from: Date; readonly to?: Date },
  subject: string | undefined,
): OpenMessages {
  return (resumeAfterSeq) =>
    ReplaySource.open(js, {
      from: resumeAfterSeq === 0 ? { time: replay.from } : { seq: resumeAfterSeq + 1 },
      ...(replay.to === undefined ? {} : { to: { time: replay.to } }),
      ...(subject === undefined ? {} : { filterSubjects: [subject] }),
    });
}
