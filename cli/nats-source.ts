import { JetStreamApiCodes, type JetStreamClient, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  CheckpointKv,
  connectNats,
  ensureDeadLetterStream,
  ensureReadingsStream,
  isApiError,
  JetStreamSource,
  type NatsConnectionConfig,
  READINGS_STREAM,
  ReplaySource,
} from '../connectors/jetstream.js';
import { kvCheckpointStore } from '../pipelines/checkpoints.js';
import type { SourceConfig } from '../pipelines/job.js';
import { messageReadingSource, type OpenMessages } from '../pipelines/sources.js';
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
  /** A single partition subject (`readings.<p>`) this worker owns; all partitions when undefined. */
  readonly partition?: number;
  readonly replay?: { readonly from: Date; readonly to?: Date };
  readonly env: NodeJS.ProcessEnv;
}

export async function openNatsSource(
  settings: NatsSourceSettings,
): Promise<{ config: SourceConfig; nc: NatsConnection }> {
  const nc = await connectNats(natsConfigFrom(settings.url, settings.env));
  const js = jetstream(nc);
  await ensureReadingsStream(js);
  await ensureDeadLetterStream(js);
  const filter = settings.partition === undefined ? undefined : [`readings.${settings.partition}`];
  let openMessages: OpenMessages;
  let checkpointKey = settings.workerId;
  const replay = settings.replay;
  if (replay === undefined) {
    const durable = `greenstream_${settings.workerId}`;
    openMessages = async (resumeAfterSeq) => {
      // The checkpoint holds the position: the durable is recreated to deliver, in stream order, from
      // just after it. Reusing it would hand out new messages before the killed worker's unacknowledged
      // ones (redelivered only after ack_wait), and the operators would see another order than before.
      await deleteConsumer(js, durable);
      return JetStreamSource.open(js, {
        durable,
        start: resumeAfterSeq === 0 ? { kind: 'all' } : { kind: 'sequence', seq: resumeAfterSeq + 1 },
        ...(filter === undefined ? {} : { filterSubjects: filter }),
      });
    };
  } else {
    openMessages = (resumeAfterSeq) =>
      ReplaySource.open(js, {
        from: resumeAfterSeq === 0 ? { time: replay.from } : { seq: resumeAfterSeq + 1 },
        ...(replay.to === undefined ? {} : { to: { time: replay.to } }),
        ...(filter === undefined ? {} : { filterSubjects: filter }),
      });
    // A replay starts from clean operator state and never moves the live worker's checkpoint.
    checkpointKey = `${settings.workerId}_replay_${replay.from.getTime()}`;
  }
  const kv = await CheckpointKv.open(js);
  const source = messageReadingSource(openMessages, {
    now: Date.now,
    onDeadLetter: (source, reason) => logger.warn('dead-lettered', { source, reason }),
  });
  return { config: { kind: 'custom', source, checkpoints: kvCheckpointStore(kv, checkpointKey) }, nc };
}

async function deleteConsumer(js: JetStreamClient, durable: string): Promise<void> {
  const jsm = await js.jetstreamManager();
  try {
    await jsm.consumers.delete(READINGS_STREAM, durable);
  } catch (error) {
    if (!isApiError(error, JetStreamApiCodes.ConsumerNotFound)) throw error;
  }
}
