/**
 * The messages between a threaded message source (`threaded-message-source.ts`, on the graph's thread)
 * and its fetch thread (`fetch-thread.ts`): how the thread opens its consumer, the batches it hands over
 * (payload bytes end to end, transferred, not copied), and the requests the source makes of it.
 */

import type { NatsConnectionConfig } from '../connectors/jetstream-connection.js';
import type { DeadLetterOptions } from '../connectors/jetstream-source.js';
import type { SerializedError } from './thread-protocol.js';

/** Which consumer the thread reads: plain values, since a function cannot cross to another thread. */
export type FetchThreadConsumer =
  /** A durable consumer recreated after the position (`JetStreamSource.recreate`). */
  | {
      readonly kind: 'durable';
      readonly stream?: string;
      readonly durable: string;
      readonly filterSubjects?: readonly string[];
      readonly maxAckPending?: number;
      readonly ackWaitMs?: number;
      readonly deadLetter?: DeadLetterOptions;
    }
  /** A replay (`ReplaySource`) from a time (epoch ms), or after the position, up to a time. */
  | {
      readonly kind: 'replay';
      readonly stream?: string;
      readonly fromMs: number;
      readonly toMs?: number;
      readonly filterSubjects?: readonly string[];
      readonly deadLetter?: DeadLetterOptions;
    };

/** What the thread starts with (`workerData`). */
export interface FetchThreadSettings {
  readonly nats: NatsConnectionConfig;
  readonly consumer: FetchThreadConsumer;
  readonly batchSize?: number;
  readonly expiresMs?: number;
  readonly maxBytesPerBatch?: number;
  readonly memoryLimitBytes?: number;
  readonly reopenAfterMs?: number;
  readonly unavailableAfterMs?: number;
  /** Pulls handed over and not yet taken, at most: how far the thread reads ahead of the graph. */
  readonly ahead: number;
}

/**
 * One pull handed over. Message `i`'s payload is `bytes[starts[i], starts[i + 1])`; `headers` lists the
 * messages that have any (most one-reading messages have none). The redeliveries the position already
 * covers stay in the thread, to be acknowledged with the batch.
 */
export interface WireBatch {
  readonly type: 'batch';
  /** Numbers every item the thread hands over (batches, idle, end), from 1. */
  readonly item: number;
  readonly stream: string;
  readonly bytes: Uint8Array;
  readonly starts: Int32Array;
  readonly seqs: Float64Array;
  readonly receivedAt: Float64Array;
  readonly headers: readonly (readonly [number, Readonly<Record<string, string>>])[];
  /** The position after this batch. */
  readonly lastSeq: number;
  /** `SourceBatch.commitSoon`; absent when the in-thread source leaves it out. */
  readonly commitSoon?: boolean;
}

/** What the thread hands over, in order. */
export type FetchThreadItem =
  | WireBatch
  | { readonly type: 'idle'; readonly item: number }
  | { readonly type: 'end'; readonly item: number }
  /** The pulls failed for good; nothing comes after it. */
  | { readonly type: 'failed'; readonly item: number; readonly error: SerializedError };

/** What the source asks of the thread; each is answered once by a `reply` with its `id`. */
export type FetchThreadRequest =
  | { readonly type: 'open'; readonly id: number; readonly lastSeq: number }
  /** Dead-letter these messages of item `item` (stream sequence and reason), in order. */
  | {
      readonly type: 'deadLetter';
      readonly id: number;
      readonly item: number;
      readonly failed: readonly (readonly [number, string])[];
    }
  /** Acknowledge every message of the items up to `through`: their outputs are committed. */
  | { readonly type: 'commit'; readonly id: number; readonly through: number }
  | { readonly type: 'pending'; readonly id: number }
  | { readonly type: 'close'; readonly id: number };

/**
 * What the source sends: requests, and `taken` once it is done with an item (its dead letters published):
 * the thread may then read one more ahead.
 */
export type ToFetchThread = FetchThreadRequest | { readonly type: 'taken'; readonly item: number };

/** What the thread sends: items, answers, and the events the source's options log. */
export type FromFetchThread =
  | FetchThreadItem
  | {
      readonly type: 'reply';
      readonly id: number;
      readonly value?: unknown;
      readonly error?: SerializedError;
    }
  | { readonly type: 'deliveriesLost'; readonly count: number; readonly resumeAfterSeq: number }
  | {
      readonly type: 'pullsFailing';
      readonly action: 'failing' | 'reopening';
      readonly reason: string;
      readonly failingForMs: number;
    };
