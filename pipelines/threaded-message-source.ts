/**
 * `messageReadingSource` with its pulls, JetStream message handles and acknowledgements on a thread of
 * its own (`fetch-thread.ts`), for streams of one reading per message, where the NATS client's work per
 * message weighs as much as the graph's. The batches, their positions (stream sequences) and what is
 * quarantined or dead-lettered are those of the in-thread source: the payloads cross as bytes and are
 * decoded here by `takeMessage`, the thread publishes the dead letters this side decides, and a batch's
 * messages are acknowledged only once `commit` says its outputs are written. The thread reads at most
 * `ahead` pulls (each within the batch byte budget) ahead of the graph. A failure of the thread's pulls
 * surfaces from `next()` with its class; a thread that dies stops the source with `FetchThreadError`.
 */
import { Worker } from 'node:worker_threads';
import { decodeOneReadingJson } from '../codecs/one-reading-json.js';
import type { NatsConnectionConfig } from '../connectors/jetstream-connection.js';
import { GreenStreamError } from '../core/errors.js';
import type { Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import type {
  FetchThreadConsumer,
  FetchThreadItem,
  FetchThreadRequest,
  FetchThreadSettings,
  FromFetchThread,
  ToFetchThread,
  WireBatch,
} from './fetch-thread-protocol.js';
import { type MessageSourceOptions, takeMessage } from './message-source.js';
import type { ReadingSource, SourceBatch } from './runner.js';
import { lastSeqOf } from './source-positions.js';
import { deserializeError, type SerializedError } from './thread-protocol.js';

export interface ThreadedMessageSourceOptions extends MessageSourceOptions {
  /** The connection the thread opens (its own: a connection's socket is read on one thread). */
  readonly nats: NatsConnectionConfig;
  readonly consumer: FetchThreadConsumer;
  /** Pulls the thread hands over before the graph takes them, at most; default 2. */
  readonly ahead?: number;
  /** The thread's script; default `fetch-thread.js` beside this module (tests point at the built one). */
  readonly threadUrl?: URL;
}

/**
 * The fetch thread died (or the source was used after `close()`). Retryable: nothing it pulled was
 * acknowledged past the last commit, so a restarted worker resumes from its checkpoint and reads it again;
 * an undecodable message does not kill the thread (it is dead-lettered).
 */
export class FetchThreadError extends GreenStreamError<{ readonly exitCode: number | null }> {
  override readonly name = 'FetchThreadError';
}

/** The headers of a message that has none (as `JetStreamSource` hands them out). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** How long `close()` waits for the thread to let go of its consumer before it is terminated. */
const CLOSE_WAIT_MS = 10_000;

export function threadedMessageSource(options: ThreadedMessageSourceOptions): ReadingSource {
  let worker: Worker | undefined;
  /** The thread is gone (it died, or was asked to close): every request and `next()` fail with it. */
  let dead: Error | undefined;
  /** The thread's pulls failed for good: `next()` throws it, the thread still closes its consumer. */
  let pullFailure: Error | undefined;
  let closing = false;
  /** The replay reached its end: the thread pulls no more, and every later `next()` says so again. */
  let ended = false;
  let lastSeq = 0;
  /** The last item taken: `commit` acknowledges everything up to it. */
  let takenThrough = 0;
  const queue: FetchThreadItem[] = [];
  let arrived: (() => void) | undefined;
  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  const wakeReader = (): void => {
    const w = arrived;
    arrived = undefined;
    w?.();
  };
  const die = (error: Error): void => {
    if (dead !== undefined) return;
    dead = error;
    for (const w of waiting.values()) w.reject(error);
    waiting.clear();
    wakeReader();
  };
  const send = (message: ToFetchThread): void => {
    worker?.postMessage(message);
  };
  const request = <T>(message: DistributiveOmit<FetchThreadRequest, 'id'>): Promise<T> => {
    if (dead !== undefined) return Promise.reject(dead);
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      send({ ...message, id } as FetchThreadRequest);
    });
  };
  const onMessage = (message: FromFetchThread): void => {
    switch (message.type) {
      case 'reply': {
        const w = waiting.get(message.id);
        if (w === undefined) return;
        waiting.delete(message.id);
        if (message.error !== undefined) w.reject(revive(message.error));
        else w.resolve(message.value);
        return;
      }
      case 'deliveriesLost':
        options.onDeliveriesLost?.(message.count, message.resumeAfterSeq);
        return;
      case 'pullsFailing':
        options.onPullsFailing?.({
          source: 'jetstream',
          action: message.action,
          reason: message.reason,
          failingForMs: message.failingForMs,
        });
        return;
      default:
        queue.push(message);
        wakeReader();
    }
  };

  /** The next item, skipping an `idle` or a plain empty batch that something newer already follows. */
  const take = async (): Promise<FetchThreadItem> => {
    for (;;) {
      if (dead !== undefined) throw dead;
      if (pullFailure !== undefined) throw pullFailure;
      const item = queue.shift();
      if (item === undefined) {
        await new Promise<void>((resolve) => (arrived = resolve));
        continue;
      }
      const stale =
        queue.length > 0 &&
        (item.type === 'idle' ||
          (item.type === 'batch' && item.seqs.length === 0 && item.commitSoon !== true));
      if (!stale) return item;
      takenThrough = item.item;
      send({ type: 'taken', item: item.item });
    }
  };

  /** The batch as `messageReadingSource` decodes it, its dead letters published by the thread. */
  const decode = async (wire: WireBatch): Promise<SourceBatch> => {
    const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
    const now = options.now();
    const { bytes, starts, seqs, receivedAt, stream } = wire;
    let withHeaders = 0;
    const failed: [number, string][] = [];
    for (let i = 0; i < seqs.length; i++) {
      const data = bytes.subarray(starts[i], starts[i + 1]);
      const source = `stream:${stream}:${seqs[i]}`;
      let headers = NO_HEADERS;
      if (withHeaders < wire.headers.length && wire.headers[withHeaders]![0] === i)
        headers = wire.headers[withHeaders++]![1];
      else {
        // `takeMessage`'s first step for a message without headers, without building the message.
        const reading = decodeOneReadingJson(data, source, receivedAt[i]!);
        if (reading !== undefined) {
          batch.records.push(reading);
          continue;
        }
      }
      const reason = takeMessage({ data, headers, source, receivedAt: receivedAt[i]! }, batch, now);
      if (reason !== undefined) failed.push([seqs[i]!, reason]);
    }
    if (failed.length > 0) {
      await request<void>({ type: 'deadLetter', item: wire.item, failed });
      for (const [seq, reason] of failed) {
        options.onDeadLetter?.(`stream:${stream}:${seq}`, reason);
        batch.deadLettered += 1;
      }
    }
    return wire.commitSoon === undefined ? batch : { ...batch, commitSoon: wire.commitSoon };
  };

  return {
    name: 'jetstream',
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      lastSeq = lastSeqOf(position);
      const settings: FetchThreadSettings = {
        nats: options.nats,
        consumer: options.consumer,
        ahead: Math.max(1, options.ahead ?? 2),
        ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
        ...(options.expiresMs === undefined ? {} : { expiresMs: options.expiresMs }),
        ...(options.maxBytesPerBatch === undefined ? {} : { maxBytesPerBatch: options.maxBytesPerBatch }),
        ...(options.memoryLimitBytes === undefined ? {} : { memoryLimitBytes: options.memoryLimitBytes }),
        ...(options.reopenAfterMs === undefined ? {} : { reopenAfterMs: options.reopenAfterMs }),
        ...(options.unavailableAfterMs === undefined
          ? {}
          : { unavailableAfterMs: options.unavailableAfterMs }),
      };
      const started = new Worker(options.threadUrl ?? new URL('./fetch-thread.js', import.meta.url), {
        workerData: settings,
        name: 'greenstream fetch',
      });
      worker = started;
      started.on('message', onMessage);
      started.on('error', (error) =>
        die(
          new FetchThreadError(`the fetch thread failed: ${error.message}`, {
            retryable: true,
            context: { exitCode: null },
            cause: error,
          }),
        ),
      );
      started.on('exit', (exitCode) => {
        die(
          closing
            ? new FetchThreadError('the message source is closed', { context: { exitCode } })
            : new FetchThreadError(`the fetch thread exited (code ${exitCode})`, {
                retryable: true,
                context: { exitCode },
              }),
        );
      });
      await request<void>({ type: 'open', lastSeq });
    },
    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      if (ended) return 'end';
      const item = await take();
      if (item.type === 'failed') {
        pullFailure = revive(item.error);
        throw pullFailure;
      }
      let result: SourceBatch | 'idle' | 'end';
      if (item.type === 'batch') {
        result = await decode(item);
        lastSeq = item.lastSeq;
      } else result = item.type;
      if (result === 'end') ended = true;
      takenThrough = item.item;
      send({ type: 'taken', item: item.item });
      return result;
    },
    position(): Json {
      return { lastSeq };
    },
    async commit() {
      if (worker !== undefined && takenThrough > 0)
        await request<void>({ type: 'commit', through: takenThrough });
    },
    async pending() {
      return request<number>({ type: 'pending' });
    },
    async close() {
      const w = worker;
      if (w === undefined || closing) return;
      closing = true;
      if (dead === undefined) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          request<void>({ type: 'close' }).catch(() => undefined),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, CLOSE_WAIT_MS);
          }),
        ]);
        clearTimeout(timer);
      }
      await w.terminate();
      worker = undefined;
    },
  };
}

/** The thread's failure again, of its class where the class decides the exit status. */
function revive(error: SerializedError): Error {
  return deserializeError(error, 'fetch thread');
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
