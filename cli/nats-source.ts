import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  CheckpointKv,
  connectNats,
  ensureDeadLetterStream,
  ensureReadingsStream,
  JetStreamSource,
  type NatsConnectionConfig,
  type ReadingsMessageSource,
  ReplaySource,
} from '../connectors/jetstream.js';
import { kvCheckpointStore } from '../pipelines/checkpoints.js';
import type { SourceConfig } from '../pipelines/job.js';
import { messageReadingSource } from '../pipelines/sources.js';
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
  let messages: ReadingsMessageSource;
  let checkpointKey = settings.workerId;
  if (settings.replay === undefined) {
    messages = await JetStreamSource.open(js, {
      durable: `greenstream_${settings.workerId}`,
      ...(filter === undefined ? {} : { filterSubjects: filter }),
    });
  } else {
    messages = await ReplaySource.open(js, {
      from: { time: settings.replay.from },
      ...(settings.replay.to === undefined ? {} : { to: { time: settings.replay.to } }),
      ...(filter === undefined ? {} : { filterSubjects: filter }),
    });
    // A replay starts from clean operator state and never moves the live worker's checkpoint.
    checkpointKey = `${settings.workerId}_replay_${settings.replay.from.getTime()}`;
  }
  const kv = await CheckpointKv.open(js);
  const source = messageReadingSource(messages, {
    now: Date.now,
    onDeadLetter: (source, reason) => logger.warn('dead-lettered', { source, reason }),
  });
  return { config: { kind: 'custom', source, checkpoints: kvCheckpointStore(kv, checkpointKey) }, nc };
}
