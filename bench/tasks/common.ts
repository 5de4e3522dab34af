/** Pieces several benchmark tasks share: connecting, the streams, the hot store target. */
import { type JetStreamClient, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { HotStoreTarget } from '../../connectors/clickhouse.js';
import { connectNats, ensureReadingsStream } from '../../connectors/jetstream.js';
import type { HotSpec } from '../protocol.js';

export interface StreamSpec {
  readonly natsUrl: string;
  /** JetStream stream name. */
  readonly stream: string;
  /** Subjects are `<prefix>.<partition>`. */
  readonly subjectPrefix: string;
}

export interface SimSpec {
  readonly meters: number;
  readonly days: number;
  readonly start: string;
  readonly seed: number;
}

export async function connect(url: string): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
  const nc = await connectNats({ servers: url, name: 'greenstream-bench' });
  return { nc, js: jetstream(nc, { timeout: 30_000 }) };
}

/** The stream as production creates it (file storage), under the benchmark's own name and subjects. */
export async function ensureBenchStream(js: JetStreamClient, spec: StreamSpec): Promise<void> {
  await ensureReadingsStream(js, { name: spec.stream, subjects: [`${spec.subjectPrefix}.>`] });
}

export function hotTarget(spec: HotSpec, chdbPath: string, database: string): HotStoreTarget {
  return spec.kind === 'chdb'
    ? { kind: 'chdb', path: chdbPath, database }
    : { kind: 'server', url: spec.url, database };
}
