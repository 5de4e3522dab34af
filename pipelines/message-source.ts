/** JetStream (a durable consumer or a replay) as the source of a worker that owns every partition. */
import { decodeReadings, JSON_CONTENT_TYPE } from '../codecs/decode.js';
import { decodeOneReadingJson } from '../codecs/one-reading-json.js';
import type { ReadingsMessageSource, SourceMessage } from '../connectors/jetstream-source.js';
import type { Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import { batchFromDecoded } from './decoded-batch.js';
import { type BatchBudgetOptions, batchBudget } from './memory-budget.js';
import { type PullOutageOptions, pullOutage } from './pull-outage.js';
import type { ReadingSource, SourceBatch } from './runner.js';
import { lastSeqOf } from './source-positions.js';

export interface MessageSourceOptions extends BatchBudgetOptions, PullOutageOptions {
  /** Messages per pull, at most (the byte budget may take fewer). */
  readonly batchSize?: number;
  readonly expiresMs?: number;
  readonly now: () => number;
  /** For the log line of a dead-lettered message. */
  readonly onDeadLetter?: (source: string, reason: string) => void;
  /**
   * For the log line of deliveries lost in transit (see `consumerState`): `count` of them, the source
   * reopened after stream sequence `resumeAfterSeq`.
   */
  readonly onDeliveriesLost?: (count: number, resumeAfterSeq: number) => void;
}

/** Where a message source starts: after the last stream sequence a checkpoint covers (0: from the start). */
export type OpenMessages = (resumeAfterSeq: number) => Promise<ReadingsMessageSource>;

/**
 * Decodes one message into `batch`. Returns the reason when it cannot be decoded (it then goes whole
 * to the dead-letter stream, see `deadLetterAll`), undefined when it is to be acknowledged at the next
 * commit. Synchronous: with one reading per message, an `await` per message cost more than the decoding.
 */
export function takeMessage(
  m: Pick<SourceMessage, 'data' | 'headers' | 'source' | 'receivedAt'>,
  batch: { records: RawReading[]; quarantined: QuarantineRecord[]; deadLettered: number },
  now: number,
): string | undefined {
  const contentType = m.headers['Content-Type'];
  if (contentType === undefined || contentType === JSON_CONTENT_TYPE) {
    // One reading a message: its own decoder, without the text decoding, JSON.parse and re-serialization.
    const reading = decodeOneReadingJson(m.data, m.source, m.receivedAt);
    if (reading !== undefined) {
      batch.records.push(reading);
      return undefined;
    }
  }
  const decoded = decodeReadings(m.data, {
    source: m.source,
    receivedAt: m.receivedAt,
    contentType: contentType ?? null,
    lineRefs: true,
  });
  if (batchFromDecoded(decoded, now, batch)) return undefined;
  return decoded.ok ? '' : decoded.failure.reason;
}

/**
 * The consumer recreated right after `lastSeq`, the last message handed out, once deliveries were lost in
 * transit: they would come back after `ack_wait`, behind later messages that move the position past them,
 * and be taken for redeliveries of what was handed out. Messages handed out but not yet acknowledged
 * belonged to the old consumer: their acknowledgements find no handle, which is harmless.
 */
export async function reopenAfterLoss(
  old: ReadingsMessageSource,
  openMessages: OpenMessages,
  lastSeq: number,
): Promise<ReadingsMessageSource> {
  await old.close();
  return openMessages(lastSeq);
}

/** Empty pulls in a row, each expiring after ~1 s, before a consumer reporting pending messages counts as idle. */
export const MAX_EMPTY_WHILE_PENDING = 30;

/**
 * What a consumer holds after an empty pull. An empty pull alone does not say it is drained: a pull that
 * reached a node shutting down expires empty. Unknown (the info request failed) counts as `pending`.
 * `lost`: the server delivered messages this client never received (a pull given up on, see
 * `FetchedBatch.lostDeliveries`); they would come back only after `ack_wait`, so the source reopens.
 */
export async function consumerState(
  source: ReadingsMessageSource,
): Promise<{ readonly state: 'drained' | 'pending' } | { readonly state: 'lost'; readonly count: number }> {
  try {
    const lag = await source.pending();
    if ((lag.lostDeliveries ?? 0) > 0) return { state: 'lost', count: lag.lostDeliveries ?? 0 };
    return { state: lag.numPending === 0 ? 'drained' : 'pending' };
  } catch {
    return { state: 'pending' };
  }
}

/** Moves undecodable messages whole to the dead-letter stream (which acknowledges them), in order. */
export async function deadLetterAll(
  failed: readonly (readonly [SourceMessage, ReadingsMessageSource, string])[],
  batch: { deadLettered: number },
  options: MessageSourceOptions,
): Promise<void> {
  for (const [m, from, reason] of failed) {
    await from.deadLetter(m, reason);
    options.onDeadLetter?.(m.source, reason);
    batch.deadLettered += 1;
  }
}

/** What one pull brought that the position does not cover yet, or why it brought nothing to decode. */
export type PulledMessages =
  /** New messages in stream order (the position moved past them), and redeliveries it already covers. */
  | {
      readonly kind: 'messages';
      readonly fresh: readonly SourceMessage[];
      readonly covered: readonly SourceMessage[];
      /** The source that delivered them (it dead-letters them). */
      readonly from: ReadingsMessageSource;
      readonly stalled: boolean;
    }
  /** `max_ack_pending` is reached: commit before pulling again. */
  | { readonly kind: 'stalled' }
  /** Nothing this time (a pull cut short, a consumer reopened, one still holding messages). */
  | { readonly kind: 'empty' }
  | { readonly kind: 'idle' }
  | { readonly kind: 'end' };

/**
 * The pull side of a message source, shared by `messageReadingSource` and the fetch thread
 * (`fetch-thread.ts`): the consumer opened after a position, pulls within the byte budget, a pull outage
 * ridden out, deliveries lost in transit read again, idleness told from a consumer that still holds
 * messages. `lastSeq` is the stream sequence of the last message pulled: a message at or below it is a
 * redelivery the position covers.
 */
export interface MessagePuller {
  open(lastSeq: number): Promise<void>;
  pull(): Promise<PulledMessages>;
  /** The consumer now open (it changes when deliveries were lost or an outage lasted). */
  current(): ReadingsMessageSource;
  readonly lastSeq: number;
  close(): Promise<void>;
}

export function messagePuller(openMessages: OpenMessages, options: MessageSourceOptions): MessagePuller {
  let messages: ReadingsMessageSource | undefined;
  let lastSeq = 0;
  let emptyWhilePending = 0;
  const budget = batchBudget(options);
  const opened = (): ReadingsMessageSource => {
    if (messages === undefined) throw new Error('message source used before open()');
    return messages;
  };
  const outage = pullOutage('jetstream', options.now, options);
  const EMPTY: PulledMessages = { kind: 'empty' };
  const recreate = async (): Promise<PulledMessages> => {
    const old = opened();
    messages = undefined;
    messages = await reopenAfterLoss(old, openMessages, lastSeq);
    return EMPTY;
  };
  const reopen = (count: number): Promise<PulledMessages> => {
    options.onDeliveriesLost?.(count, lastSeq);
    return recreate();
  };
  return {
    get lastSeq() {
      return lastSeq;
    },
    current: opened,
    async open(after: number) {
      lastSeq = after;
      messages = await openMessages(lastSeq);
    },
    async pull(): Promise<PulledMessages> {
      await outage.backoff();
      const source = opened();
      const fetched = await source.fetchBatch(options.batchSize ?? 256, options.expiresMs ?? 1000, budget());
      if ((fetched.lostDeliveries ?? 0) > 0) return reopen(fetched.lostDeliveries ?? 0);
      // A pull that brought messages worked, whatever cut it short.
      if (outage.note(fetched.messages.length > 0 ? null : fetched.interrupted) === 'reopen')
        return recreate();
      if (fetched.messages.length === 0) {
        if (fetched.done) return { kind: 'end' };
        if (fetched.stalled) return { kind: 'stalled' };
        // A pull cut short, or one that came back empty while the consumer still holds messages (a cluster
        // node restarting), is not idleness: a bounded run would end early.
        if (fetched.interrupted === null) {
          const held = await consumerState(source);
          if (held.state === 'lost') return reopen(held.count);
          if (held.state === 'drained') return { kind: 'idle' };
        }
        // A consumer that keeps reporting messages it never delivers is idle after all, for a bounded run.
        if (fetched.interrupted === null && ++emptyWhilePending > MAX_EMPTY_WHILE_PENDING)
          return { kind: 'idle' };
        return EMPTY;
      }
      emptyWhilePending = 0;
      const fresh: SourceMessage[] = [];
      const covered: SourceMessage[] = [];
      for (const m of fetched.messages) {
        if (m.seq <= lastSeq) {
          covered.push(m);
          continue;
        }
        lastSeq = m.seq;
        fresh.push(m);
      }
      return { kind: 'messages', fresh, covered, from: source, stalled: fetched.stalled };
    },
    async close() {
      await messages?.close();
    },
  };
}

/**
 * JetStream (durable consumer or replay) as a pipeline source. The checkpoint, not the consumer, holds the
 * position: `openMessages` must deliver in stream order from just after it, so a restarted worker sees
 * exactly the sequence an uninterrupted one would (a durable consumer would instead hand out new
 * messages first and redeliver the killed worker's unacknowledged ones only after `ack_wait`).
 * Deliveries are acknowledged in `commit`, once the outputs derived from them are written: the
 * acknowledgements only keep the consumer's `max_ack_pending` window open (`resumesFromPosition`). A
 * redelivered message the position already covers is acknowledged without being processed again. A message that cannot be
 * decoded goes whole to the dead-letter stream.
 *
 * This is the source of a worker that owns every partition (one consumer on `readings.>`); its position
 * is `{ lastSeq }`. A batch holds at most `batchSize` messages and `maxBytesPerBatch` payload bytes (one
 * larger message alone), and one message while the resident set exceeds `memoryLimitBytes`. A worker owning a set of partitions uses `partitionedReadingSource`.
 * `threadedMessageSource` does the pulls and acknowledgements on a thread of its own.
 */
export function messageReadingSource(
  openMessages: OpenMessages,
  options: MessageSourceOptions,
): ReadingSource {
  const puller = messagePuller(openMessages, options);
  // Stream sequences, not the messages: a commit comes a write (~100,000 messages) later, and holding
  // the message objects that long moved every one of them into the old generation.
  let delivered: number[] = [];
  const empty = (): SourceBatch => ({ records: [], quarantined: [], deadLettered: 0 });
  return {
    name: 'jetstream',
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      await puller.open(lastSeqOf(position));
    },
    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      const pulled = await puller.pull();
      if (pulled.kind === 'idle' || pulled.kind === 'end') return pulled.kind;
      if (pulled.kind === 'empty') return empty();
      if (pulled.kind === 'stalled')
        return { records: [], quarantined: [], deadLettered: 0, commitSoon: true };
      for (const m of pulled.covered) delivered.push(m.seq);
      const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
      const now = options.now();
      const failed: [SourceMessage, ReadingsMessageSource, string][] = [];
      for (const m of pulled.fresh) {
        const reason = takeMessage(m, batch, now);
        if (reason === undefined) delivered.push(m.seq);
        else failed.push([m, pulled.from, reason]);
      }
      if (failed.length > 0) await deadLetterAll(failed, batch, options);
      return { ...batch, commitSoon: pulled.stalled };
    },
    position(): Json {
      return { lastSeq: puller.lastSeq };
    },
    async commit() {
      const acking = delivered;
      delivered = [];
      if (acking.length > 0) await puller.current().ack(acking);
    },
    async pending() {
      return (await puller.current().pending()).lag;
    },
    async close() {
      await puller.close();
    },
  };
}
