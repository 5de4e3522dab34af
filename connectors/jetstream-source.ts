/**
 * Reading the readings stream, driven by the pipeline: fetch a batch, process it, commit the sinks,
 * then acknowledge. Nothing is pushed at the pipeline (RxJS has no backpressure), and a message is
 * acknowledged only after everything derived from it is committed, so a crash redelivers it and the
 * idempotent sinks absorb the second copy.
 *
 * Two sources share one interface:
 * - `JetStreamSource`: a durable pull consumer — the live path. A consumer it creates acknowledges
 *   cumulatively (`AckPolicy.All`): a commit sends one ack, for the highest sequence it covers, where an
 *   explicit-ack consumer took one per message (a million one-reading messages were a million acks for
 *   the client to write and the server to process). One found with explicit acks keeps them;
 * - `ReplaySource`: an ordered (ephemeral, ack-less) consumer from a sequence or a time up to a stop
 *   sequence or time, done when drained — replay and backfill.
 *
 * Sizing `max_ack_pending`: every message fetched and not yet acknowledged counts against it, and
 * when it is reached the server stops delivering (the stall that hit the Flink NATS connector,
 * synadia-io/flink-connector-nats#109). It must exceed the messages fetched between two checkpoints;
 * the default (10,000 messages, each a file or chunk of up to 1 MiB) covers minutes of a busy stream.
 * `fetchBatch` never asks for more than the room left and reports `stalled` when there is none, so the
 * caller checkpoints and acks instead of waiting on a silent server.
 */
import {
  AckPolicy,
  type ConsumeCallback,
  type Consumer,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  type FetchMessages,
  JetStreamApiCodes,
  type JetStreamClient,
  type JsMsg,
  type OrderedConsumerOptions,
  ReplayPolicy,
} from '@nats-io/jetstream';
import { type MsgHdrs, type NatsConnection, nanos, headers as natsHeaders } from '@nats-io/transport-node';
import {
  DeadLetterError,
  FetchError,
  isTransientNatsError,
  messageOf,
  StreamSetupError,
} from './jetstream-errors.js';
import { GsHeaders, headerSafe } from './jetstream-publisher.js';
import {
  DEAD_LETTER_STREAM,
  DEAD_LETTER_SUBJECT_PREFIX,
  isApiError,
  READINGS_STREAM,
} from './jetstream-streams.js';

/** A message handed to the pipeline; its JetStream handle stays inside the source. */
export interface SourceMessage {
  readonly stream: string;
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  /** First value of each header. */
  readonly headers: Readonly<Record<string, string>>;
  /** `stream:<stream>:<seq>`: the lineage of the records decoded from it. */
  readonly source: string;
  /** When the stream stored it, epoch ms. */
  readonly storedAt: number;
  /**
   * When its content was received, epoch ms: the publisher's `Gs-Received-At` (the landing hour),
   * capped at `storedAt`, else `storedAt`. Becomes `RawReading.receivedAt`.
   */
  readonly receivedAt: number;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  readonly redelivered: boolean;
}

export interface FetchedBatch {
  readonly messages: SourceMessage[];
  /** Messages left for the consumer after this batch (as of the last message), -1 when unknown. */
  readonly pending: number;
  /** Replay only: the stop bound is reached, nothing more will come. */
  readonly done: boolean;
  /** `max_ack_pending` leaves no room: commit and ack before fetching again. */
  readonly stalled: boolean;
  /** A transient failure (server restarting, connection lost) cut the fetch short; fetch again. */
  readonly interrupted: string | null;
  /**
   * Deliveries the server made to this consumer that never reached this client (a gap in the consumer's
   * delivery sequence): a pull the client gave up on (missed heartbeats while the process was starved of
   * CPU) after the server had sent its messages. They come back only after `ack_wait`, behind later
   * messages; the caller must reopen from its position rather than read on. Absent: none.
   */
  readonly lostDeliveries?: number;
}

export interface AckResult {
  readonly acked: number[];
  /** The server did not confirm: the message will be redelivered (harmless after commit). */
  readonly failed: { readonly seq: number; readonly error: string }[];
  /** Sequences this source holds no handle for (never fetched here, or already acknowledged). */
  readonly unknown: number[];
}

export interface ConsumerLag {
  /** Not yet delivered. */
  readonly numPending: number;
  /** Delivered, not yet acknowledged. */
  readonly numAckPending: number;
  /** `numPending + numAckPending`: what the consumer is behind by. */
  readonly lag: number;
  readonly numRedelivered: number;
  /**
   * Deliveries the server counts as made that this client never received (see `FetchedBatch`); only
   * known between pulls. Absent: none.
   */
  readonly lostDeliveries?: number;
}

export interface DeadLetterReceipt {
  readonly stream: string;
  readonly subject: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

export interface DeadLetterOptions {
  readonly stream?: string;
  /** Dead letters of subject `s` go to `<prefix>.<s>`. Default `dlq`. */
  readonly subjectPrefix?: string;
}

/** What the pipeline drives; `JetStreamSource` and `ReplaySource` both implement it. */
export interface ReadingsMessageSource {
  /**
   * Up to `max` messages and, when `maxBytes` is given, no more payload bytes than that (a single larger
   * message still comes, alone).
   */
  fetchBatch(max: number, expiresMs?: number, maxBytes?: number): Promise<FetchedBatch>;
  /** Acknowledges messages once their results are committed. */
  ack(messages: Iterable<number | SourceMessage>): Promise<AckResult>;
  /** Moves a message that cannot be decoded, whole, to the dead-letter stream, then acks it. */
  deadLetter(message: SourceMessage, reason: string): Promise<DeadLetterReceipt>;
  pending(): Promise<ConsumerLag>;
  close(): Promise<void>;
}

export type StartPosition =
  | { readonly kind: 'all' }
  | { readonly kind: 'new' }
  | { readonly kind: 'sequence'; readonly seq: number }
  | { readonly kind: 'time'; readonly time: Date };

export interface JetStreamSourceOptions {
  readonly stream?: string;
  /** Durable consumer name: one per pipeline (and per partition when partitioned). */
  readonly durable: string;
  /** e.g. `['readings.3']` for a worker that owns partition 3. Several need server 2.10+. */
  readonly filterSubjects?: readonly string[];
  /** Where a new durable starts; ignored when the durable exists (it keeps its position). */
  readonly start?: StartPosition;
  /** Redelivery after this long without an ack; must exceed the checkpoint interval. Default 60 s. */
  readonly ackWaitMs?: number;
  /** See the module comment. Default 10,000. */
  readonly maxAckPending?: number;
  /** Deliveries before the server gives up on a message; default -1 (never). */
  readonly maxDeliver?: number;
  /** Timeout of an ack confirmation. Default 5 s. */
  readonly ackTimeoutMs?: number;
  /**
   * For a consumer with explicit acks (one this source did not create): `batch` (default), plain acks for
   * all but the last message of a call and a confirmed ack for the last; the server handles a
   * connection's acks in order, so its confirmation covers the whole call in one round trip (~100 K
   * acks/s here). `each`: a confirmed ack per message (~7 K/s). A cumulative consumer takes one
   * confirmed ack a call either way.
   */
  readonly ackMode?: 'batch' | 'each';
  readonly deadLetter?: DeadLetterOptions;
}

const DEFAULT_EXPIRES_MS = 1000;
/** The client refuses shorter pull expirations. */
const MIN_EXPIRES_MS = 1000;
const ACK_CONCURRENCY = 1024;
/** How long setting up a consumer keeps trying through a cluster's leader election. */
const SETUP_RETRY_MS = 15_000;
/** JSConsumerNameExistErr: in a cluster, also a node still running a deleted consumer's old copy. */
const CONSUMER_NAME_IN_USE = 10013;

/** A consumer found with another start position right after it was deleted (see `#setUp`). */
class StaleConsumerError extends Error {
  constructor() {
    super('a copy of the deleted consumer is still running');
  }
}

async function deleteConsumer(js: JetStreamClient, stream: string, durable: string): Promise<void> {
  try {
    // No API check: it is one more request that fails raw while a server is out of reach.
    await (await js.jetstreamManager(false)).consumers.delete(stream, durable);
  } catch (error) {
    if (!isApiError(error, JetStreamApiCodes.ConsumerNotFound))
      // Retryable when the server was out of reach (the class reads that off the cause).
      throw new StreamSetupError(
        `cannot delete consumer ${durable} on ${stream}`,
        { stream, durable },
        { cause: error },
      );
  }
}

export class JetStreamSource implements ReadingsMessageSource {
  readonly #js: JetStreamClient;
  readonly #consumer: Consumer;
  readonly #stream: string;
  readonly #maxAckPending: number;
  readonly #ackTimeoutMs: number;
  readonly #ackMode: 'batch' | 'each';
  /** The consumer acknowledges cumulatively (`AckPolicy.All`): one ack covers every sequence up to it. */
  readonly #cumulative: boolean;
  readonly #deadLetter: DeadLetterOptions;
  /**
   * Fetched, not yet acknowledged: each one's ack subject (its reply subject), by stream sequence. The
   * subject is all an acknowledgement needs; a `JsMsg` held until the commit (a write, ~100,000
   * one-reading messages, later) kept its message, its byte views and the client's parse of it alive
   * into the old generation.
   */
  readonly #handles = new Map<number, string>();
  /**
   * A cumulative consumer's committed messages whose ack waits for a message below them, handed out and
   * not yet committed (see `#ackCumulative`): their handles, by stream sequence.
   */
  readonly #deferred = new Map<number, string>();
  /** The connection the acknowledgements are published on. */
  readonly #nc: NatsConnection;
  readonly #budget = new ByteBudget();
  #knownPending = -1;
  #closed = false;
  /** The consumer's delivery sequence of the last message received; the server's count is compared to it. */
  #lastConsumerSeq: number;
  /** Gaps in the delivery sequence seen since the last `fetchBatch` reported them. */
  #lost = 0;
  #pulling = false;

  private constructor(
    js: JetStreamClient,
    consumer: Consumer,
    stream: string,
    options: JetStreamSourceOptions,
    info: ConsumerInfo,
  ) {
    this.#js = js;
    this.#nc = connectionOf(js);
    this.#consumer = consumer;
    this.#stream = stream;
    const limit = info.config.max_ack_pending ?? options.maxAckPending ?? 10_000;
    // -1 (or 0) on the server means no limit.
    this.#maxAckPending = limit > 0 ? limit : Number.POSITIVE_INFINITY;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 5000;
    this.#ackMode = options.ackMode ?? 'batch';
    this.#cumulative = info.config.ack_policy === AckPolicy.All;
    this.#deadLetter = options.deadLetter ?? {};
    this.#knownPending = info.num_pending;
    this.#lastConsumerSeq = info.delivered.consumer_seq;
  }

  /**
   * The durable deleted and created again to deliver, in stream order, from just after `resumeAfterSeq`
   * (0: from the start), whatever it had delivered: a worker's checkpoint, not its consumer, holds the
   * position. Reusing the consumer would hand out new messages before a killed worker's unacknowledged
   * ones (redelivered only after `ack_wait`), and the operators would see another order than before.
   */
  static async recreate(
    js: JetStreamClient,
    options: Omit<JetStreamSourceOptions, 'start'>,
    resumeAfterSeq: number,
  ): Promise<JetStreamSource> {
    const stream = options.stream ?? READINGS_STREAM;
    await deleteConsumer(js, stream, options.durable);
    return JetStreamSource.#setUp(
      js,
      {
        ...options,
        start: resumeAfterSeq === 0 ? { kind: 'all' } : { kind: 'sequence', seq: resumeAfterSeq + 1 },
      },
      true,
    );
  }

  /** Creates the durable consumer if missing (or updates its limits), and binds to it. */
  static async open(js: JetStreamClient, options: JetStreamSourceOptions): Promise<JetStreamSource> {
    return JetStreamSource.#setUp(js, options, false);
  }

  /**
   * `freshStart`: the durable was just deleted, so one found with another start position is a copy the
   * deletion has not reached yet (a cluster node that was restarting still runs it, and answers a create
   * with "consumer name already in use"): it is deleted again rather than bound to, since it would deliver
   * from its old position.
   */
  static async #setUp(
    js: JetStreamClient,
    options: JetStreamSourceOptions,
    freshStart: boolean,
  ): Promise<JetStreamSource> {
    const stream = options.stream ?? READINGS_STREAM;
    const context = { stream, durable: options.durable };
    const jsm = await js.jetstreamManager(false);
    const limits: Partial<ConsumerConfig> = {
      ack_wait: nanos(options.ackWaitMs ?? 60_000),
      max_ack_pending: options.maxAckPending ?? 10_000,
      max_deliver: options.maxDeliver ?? -1,
      ...filterConfig(options.filterSubjects),
    };
    const start = startConfig(options.start ?? { kind: 'all' });
    let info: ConsumerInfo;
    const started = Date.now();
    // A cluster electing a leader answers "temporarily unavailable" or not at all for a few seconds, and a
    // node catching up on a deletion answers "name already in use"; the steps below are idempotent (they
    // look the consumer up again), so they are simply tried again.
    for (let attempt = 0; ; attempt++) {
      try {
        let existing: ConsumerInfo | null = null;
        try {
          existing = await jsm.consumers.info(stream, options.durable);
        } catch (error) {
          if (!isApiError(error, JetStreamApiCodes.ConsumerNotFound)) throw error;
        }
        // Nothing pulls from a just-created durable before this returns (its worker holds the fence), so
        // one that has delivered is the old copy too.
        const stale =
          existing !== null &&
          freshStart &&
          (!sameStart(existing.config, start) || existing.delivered.consumer_seq > 0);
        if (stale) {
          await deleteConsumer(js, stream, options.durable);
          throw new StaleConsumerError();
        }
        if (existing === null) {
          info = await jsm.consumers.add(stream, {
            durable_name: options.durable,
            ack_policy: AckPolicy.All,
            replay_policy: ReplayPolicy.Instant,
            ...start,
            ...limits,
          });
        } else if (sameLimits(existing.config, limits)) {
          info = existing;
        } else {
          info = await jsm.consumers.update(stream, options.durable, limits);
        }
        break;
      } catch (error) {
        const settling =
          error instanceof StaleConsumerError ||
          isApiError(error, CONSUMER_NAME_IN_USE) ||
          isTransientNatsError(error);
        if (settling && Date.now() - started < SETUP_RETRY_MS) {
          await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 2_000)));
          continue;
        }
        throw new StreamSetupError(
          `cannot set up durable consumer ${options.durable} on ${stream}: ${messageOf(error)}`,
          context,
          { cause: error },
        );
      }
    }
    const consumer = js.consumers.getConsumerFromInfo(info);
    return new JetStreamSource(js, consumer, stream, options, info);
  }

  get stream(): string {
    return this.#stream;
  }

  /** Messages fetched and not yet acknowledged (deferred acks included). */
  get unacknowledged(): number {
    return this.#handles.size + this.#deferred.size;
  }

  /**
   * Up to `max` messages and `maxBytes` payload bytes; waits up to `expiresMs` (at least 1 s) when fewer
   * are available. Returns early once the messages known to be pending have arrived.
   */
  async fetchBatch(max: number, expiresMs = DEFAULT_EXPIRES_MS, maxBytes?: number): Promise<FetchedBatch> {
    if (this.#closed) throw new FetchError('source is closed', { stream: this.#stream });
    if (this.#budget.carried > 0) {
      const messages = this.#budget.take([], max, maxBytes);
      return batch(messages, this.#pendingAfter(), {});
    }
    const room = this.#maxAckPending - this.unacknowledged;
    if (room <= 0) return batch([], this.#knownPending, { stalled: true });
    let want = Math.max(1, Math.min(max, room));
    // A pull waits its full expiry (at least 1 s) unless it is filled, so it asks only for what is known
    // to be pending and returns as soon as that has arrived. Caught up (nothing pending), it asks for one
    // message: it returns the moment the next one is published, which then tells how many came after it,
    // so a live stream's pulls grow with its rate instead of a reading waiting for a batch to fill.
    if (this.#knownPending >= 0) want = Math.min(want, Math.max(1, this.#knownPending));
    want = this.#budget.pullSize(want, maxBytes);
    const pulled: SourceMessage[] = [];
    this.#pulling = true;
    let interrupted: string | null;
    try {
      interrupted = await pull(this.#consumer, want, expiresMs, (m) => {
        const delivery = deliveryOf(m);
        const gap = delivery.consumerSeq - this.#lastConsumerSeq - 1;
        if (gap > 0) this.#lost += gap;
        if (delivery.consumerSeq > this.#lastConsumerSeq) this.#lastConsumerSeq = delivery.consumerSeq;
        this.#handles.set(delivery.seq, replyOf(m));
        this.#knownPending = delivery.pending;
        pulled.push(toSourceMessage(this.#stream, m, delivery));
        return true;
      });
    } finally {
      this.#pulling = false;
    }
    if (pulled.length === 0 && interrupted === null) this.#knownPending = 0;
    const messages = this.#budget.take(pulled, max, maxBytes);
    const lostDeliveries = this.#lost;
    this.#lost = 0;
    return batch(messages, this.#pendingAfter(), { interrupted, lostDeliveries });
  }

  /** Messages the pipeline has yet to see: pending on the server plus those held over from a pull. */
  #pendingAfter(): number {
    return this.#knownPending < 0 ? -1 : this.#knownPending + this.#budget.carried;
  }

  async ack(messages: Iterable<number | SourceMessage>): Promise<AckResult> {
    const acked: number[] = [];
    const failed: { seq: number; error: string }[] = [];
    const unknown: number[] = [];
    const held: [number, string][] = [];
    for (const m of messages) {
      const seq = typeof m === 'number' ? m : m.seq;
      const handle = this.#handles.get(seq);
      if (handle === undefined) {
        unknown.push(seq);
        continue;
      }
      // Dropped whatever happens: an ack the server did not confirm ends in a redelivery.
      this.#handles.delete(seq);
      held.push([seq, handle]);
    }
    // Handed back in stream order as a rule (a commit acknowledges what was handed out, in order): a
    // comparator sort of a write's ~100,000 pairs is then skipped.
    if (!ascending(held)) held.sort((a, b) => a[0] - b[0]);
    if (this.#cumulative) return this.#ackCumulative(held, unknown);
    if (this.#ackMode === 'batch' && held.length > 0) {
      for (let i = 0; i < held.length - 1; i++) this.#respond(held[i][1], ACK);
      try {
        await this.#confirmedAck(held[held.length - 1][1]);
        for (const [seq] of held) acked.push(seq);
      } catch (error) {
        for (const [seq] of held) failed.push({ seq, error: messageOf(error) });
      }
      return { acked, failed, unknown };
    }
    for (let i = 0; i < held.length; i += ACK_CONCURRENCY) {
      await Promise.all(
        held.slice(i, i + ACK_CONCURRENCY).map(async ([seq, handle]) => {
          try {
            await this.#confirmedAck(handle);
            acked.push(seq);
          } catch (error) {
            failed.push({ seq, error: messageOf(error) });
          }
        }),
      );
    }
    acked.sort((a, b) => a - b);
    return { acked, failed, unknown };
  }

  /**
   * One confirmed ack for the highest of `held` (in stream order) that no message still held below it
   * would be acknowledged with: a message handed out and not yet committed, or a dead letter's
   * neighbours, stays unacknowledged until the commit that covers it. Those of `held` above such a
   * message are deferred (they still count against `max_ack_pending`) and go with that later ack.
   */
  async #ackCumulative(held: [number, string][], unknown: number[]): Promise<AckResult> {
    if (this.#deferred.size > 0) {
      for (const entry of this.#deferred) held.push(entry);
      this.#deferred.clear();
      held.sort((a, b) => a[0] - b[0]);
    }
    let below = Number.POSITIVE_INFINITY;
    for (const seq of this.#handles.keys()) if (seq < below) below = seq;
    let last = -1;
    while (last + 1 < held.length && held[last + 1]![0] < below) last++;
    for (let i = last + 1; i < held.length; i++) this.#deferred.set(held[i]![0], held[i]![1]);
    const acked: number[] = [];
    const failed: { seq: number; error: string }[] = [];
    if (last < 0) return { acked, failed, unknown };
    try {
      await this.#confirmedAck(held[last]![1]);
      for (let i = 0; i <= last; i++) acked.push(held[i]![0]);
    } catch (error) {
      for (let i = 0; i <= last; i++) failed.push({ seq: held[i]![0], error: messageOf(error) });
    }
    return { acked, failed, unknown };
  }

  /**
   * Resets the ack timer of every message held, for a commit that takes longer than expected; the
   * server then waits another `ack_wait` before redelivering.
   */
  extendAckDeadline(): number {
    for (const handle of this.#handles.values()) this.#respond(handle, WORKING);
    for (const handle of this.#deferred.values()) this.#respond(handle, WORKING);
    return this.unacknowledged;
  }

  /** What `JsMsg.ack()`, `nak()` and `working()` send: `payload` on the message's ack subject. */
  #respond(ackSubject: string, payload: Uint8Array): void {
    if (ackSubject !== '') this.#nc.publish(ackSubject, payload);
  }

  /**
   * What `JsMsg.ackAck()` does: the ack as a request, resolved by the server's reply once it has
   * processed the ack (and, acks of one connection being handled in order, every ack published before it).
   */
  async #confirmedAck(ackSubject: string): Promise<void> {
    if (ackSubject !== '') await this.#nc.request(ackSubject, ACK, { timeout: this.#ackTimeoutMs });
  }

  async deadLetter(message: SourceMessage, reason: string): Promise<DeadLetterReceipt> {
    const receipt = await publishDeadLetter(this.#js, message, reason, this.#deadLetter);
    // Only after the dead letter is stored. Should this ack be lost, the message comes back, is
    // dead-lettered again, and the dead-letter stream drops the copy (same message id).
    await this.ack([message.seq]);
    return receipt;
  }

  async pending(): Promise<ConsumerLag> {
    const pulling = this.#pulling;
    const info = await this.#consumer.info(false);
    this.#knownPending = info.num_pending;
    const lag = lagOf(info, this.#budget.carried);
    // While a pull is under way its messages may still be on the wire.
    if (pulling || this.#pulling) return lag;
    const lost = info.delivered.consumer_seq - this.#lastConsumerSeq;
    return lost > 0 ? { ...lag, lostDeliveries: lost } : lag;
  }

  /**
   * Stops reading. Messages still held are negatively acknowledged so another worker gets them at
   * once instead of after `ack_wait`; the durable consumer stays. Committed messages whose ack was
   * deferred are not: redelivered, they are covered by the position and acknowledged unprocessed.
   */
  async close(options: { readonly nak?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (options.nak ?? true) for (const handle of this.#handles.values()) this.#respond(handle, NAK);
    this.#handles.clear();
    this.#deferred.clear();
    this.#budget.clear();
  }
}

export type ReplayBound = { readonly seq: number } | { readonly time: Date };

export interface ReplayOptions {
  readonly stream?: string;
  readonly filterSubjects?: string | readonly string[];
  readonly from: ReplayBound;
  /** Inclusive; default the stream's last message at the time the replay opens. */
  readonly to?: ReplayBound;
  readonly deadLetter?: DeadLetterOptions;
}

/**
 * Replays a range of the stream through an ordered consumer: no acks, no durable state, recreated
 * by the client on gaps. Ends (`done`) at the stop bound, or at the stream's end as it was when the
 * replay opened, so a replay terminates while live traffic keeps arriving.
 */
export class ReplaySource implements ReadingsMessageSource {
  readonly #js: JetStreamClient;
  readonly #consumer: Consumer;
  readonly #stream: string;
  readonly #stopSeq: number;
  readonly #stopTime: number;
  readonly #deadLetter: DeadLetterOptions;
  readonly #budget = new ByteBudget();
  #remaining: number;
  #done: boolean;

  private constructor(
    js: JetStreamClient,
    consumer: Consumer,
    stream: string,
    stopSeq: number,
    stopTime: number,
    remaining: number,
    deadLetter: DeadLetterOptions,
  ) {
    this.#js = js;
    this.#consumer = consumer;
    this.#stream = stream;
    this.#stopSeq = stopSeq;
    this.#stopTime = stopTime;
    this.#remaining = remaining;
    this.#done = remaining <= 0;
    this.#deadLetter = deadLetter;
  }

  static async open(js: JetStreamClient, options: ReplayOptions): Promise<ReplaySource> {
    const stream = options.stream ?? READINGS_STREAM;
    try {
      const jsm = await js.jetstreamManager(false);
      const info = await jsm.streams.info(stream);
      const stopSeq = Math.min(
        info.state.last_seq,
        options.to !== undefined && 'seq' in options.to ? options.to.seq : Number.POSITIVE_INFINITY,
      );
      const stopTime =
        options.to !== undefined && 'time' in options.to
          ? options.to.time.getTime()
          : Number.POSITIVE_INFINITY;
      const ordered: Partial<OrderedConsumerOptions> =
        'seq' in options.from
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, options.from.seq) }
          : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: options.from.time.toISOString() };
      if (options.filterSubjects !== undefined) {
        ordered.filter_subjects =
          typeof options.filterSubjects === 'string' || options.filterSubjects.length !== 1
            ? (options.filterSubjects as string | string[])
            : options.filterSubjects[0];
      }
      const consumer = await js.consumers.get(stream, ordered);
      const consumerInfo = await consumer.info(true);
      const emptyRange = info.state.messages === 0 || ('seq' in options.from && options.from.seq > stopSeq);
      const remaining = emptyRange ? 0 : consumerInfo.num_pending;
      return new ReplaySource(js, consumer, stream, stopSeq, stopTime, remaining, options.deadLetter ?? {});
    } catch (error) {
      throw new StreamSetupError(
        `cannot start a replay of ${stream}: ${messageOf(error)}`,
        { stream },
        { cause: error },
      );
    }
  }

  async fetchBatch(max: number, expiresMs = DEFAULT_EXPIRES_MS, maxBytes?: number): Promise<FetchedBatch> {
    if (this.#budget.carried > 0) {
      const messages = this.#budget.take([], max, maxBytes);
      return batch(messages, this.#remaining + this.#budget.carried, { done: this.#finished() });
    }
    if (this.#done) return batch([], 0, { done: true });
    const want = this.#budget.pullSize(Math.max(1, Math.min(max, this.#remaining)), maxBytes);
    const pulled: SourceMessage[] = [];
    const interrupted = await pull(this.#consumer, want, expiresMs, (m) => {
      if (this.#done) return false;
      const delivery = deliveryOf(m);
      if (delivery.seq > this.#stopSeq || delivery.timestampNanos / 1e6 > this.#stopTime) {
        this.#done = true;
        return false;
      }
      pulled.push(toSourceMessage(this.#stream, m, delivery));
      this.#remaining = delivery.pending;
      if (this.#remaining === 0 || delivery.seq >= this.#stopSeq) this.#done = true;
      return true;
    });
    if (pulled.length === 0 && interrupted === null && !this.#done) {
      // Expected messages did not come (deleted by age meanwhile?): ask the server what is left.
      const info = await this.#consumer.info(false);
      this.#remaining = info.num_pending;
      if (this.#remaining === 0) this.#done = true;
    }
    const messages = this.#budget.take(pulled, max, maxBytes);
    return batch(messages, this.#remaining + this.#budget.carried, {
      done: this.#finished(),
      interrupted,
    });
  }

  /** The stop bound is reached and every message pulled has been handed out. */
  #finished(): boolean {
    return this.#done && this.#budget.carried === 0;
  }

  /** Ordered consumers take no acks; acknowledging is a no-op so the pipeline code stays the same. */
  async ack(messages: Iterable<number | SourceMessage>): Promise<AckResult> {
    return { acked: [...messages].map((m) => (typeof m === 'number' ? m : m.seq)), failed: [], unknown: [] };
  }

  deadLetter(message: SourceMessage, reason: string): Promise<DeadLetterReceipt> {
    return publishDeadLetter(this.#js, message, reason, this.#deadLetter);
  }

  async pending(): Promise<ConsumerLag> {
    const numPending = (this.#done ? 0 : this.#remaining) + this.#budget.carried;
    return { numPending, numAckPending: 0, lag: numPending, numRedelivered: 0 };
  }

  async close(): Promise<void> {
    this.#done = true;
    this.#budget.clear();
    await this.#consumer.delete().catch(() => false);
  }
}

/**
 * Publishes a whole message to the dead-letter stream on `dlq.<subject>` with its original headers
 * plus `Gs-Reason`, `Gs-Source-Stream`, `Gs-Source-Seq`, `Gs-Source-Subject`. The message id is
 * `<stream>:<seq>`, so dead-lettering a redelivered copy again stores nothing new.
 */
export async function publishDeadLetter(
  js: JetStreamClient,
  message: Pick<SourceMessage, 'stream' | 'seq' | 'subject' | 'data' | 'headers'>,
  reason: string,
  options: DeadLetterOptions = {},
): Promise<DeadLetterReceipt> {
  const prefix = options.subjectPrefix ?? DEAD_LETTER_SUBJECT_PREFIX;
  const subject = `${prefix}.${message.subject}`;
  const hdrs: MsgHdrs = natsHeaders();
  for (const [key, value] of Object.entries(message.headers)) {
    if (!key.toLowerCase().startsWith('nats-')) hdrs.set(key, value);
  }
  hdrs.set(GsHeaders.Reason, headerSafe(reason));
  hdrs.set(GsHeaders.SourceStream, message.stream);
  hdrs.set(GsHeaders.SourceSeq, String(message.seq));
  hdrs.set(GsHeaders.SourceSubject, message.subject);
  try {
    const ack = await js.publish(subject, message.data, {
      msgID: `${message.stream}:${message.seq}`,
      headers: hdrs,
    });
    return { stream: ack.stream, subject, seq: ack.seq, duplicate: ack.duplicate };
  } catch (error) {
    throw new DeadLetterError(
      `cannot dead-letter ${message.stream}:${message.seq}: ${messageOf(error)}`,
      {
        stream: message.stream,
        seq: message.seq,
        subject,
        deadLetterStream: options.stream ?? DEAD_LETTER_STREAM,
      },
      { cause: error },
    );
  }
}

/** The payload bytes a message counts against a batch's byte budget. */
function messageBytes(m: SourceMessage): number {
  return m.data.byteLength;
}

/** Before the first pull the sizes are unknown: assume a pull of this many messages fills the budget. */
const FIRST_PULL_MESSAGES = 16;

/**
 * Keeps a source's batches within a byte budget. A pull asks for as many messages as the budget holds at
 * the size of the largest message of the previous pull, and what a pull brings beyond the budget (the
 * messages grew) is held over for the next batch rather than discarded: discarding would leave a durable
 * consumer's messages to redeliver after `ack_wait`, and would lose an ordered consumer's for good.
 * Client-side because a pull's own `max_bytes` refuses a message larger than it (a 409 that would stall
 * the consumer on that message), and it cannot be combined with a message count in this client.
 */
class ByteBudget {
  #carried: SourceMessage[] = [];
  #largest = 0;

  get carried(): number {
    return this.#carried.length;
  }

  /** How many messages to pull when `want` are wanted. */
  pullSize(want: number, maxBytes: number | undefined): number {
    if (maxBytes === undefined) return want;
    const fits = this.#largest > 0 ? Math.floor(maxBytes / this.#largest) : FIRST_PULL_MESSAGES;
    return Math.max(1, Math.min(want, fits));
  }

  /**
   * The held-over messages then `pulled`, in order, up to `max` messages and `maxBytes` bytes (the first
   * always, however large); keeps the rest for the next call.
   */
  take(pulled: SourceMessage[], max: number, maxBytes: number | undefined): SourceMessage[] {
    if (pulled.length > 0) {
      let largest = 0;
      for (const m of pulled) largest = Math.max(largest, messageBytes(m));
      this.#largest = largest;
    }
    const queue = this.#carried.length === 0 ? pulled : [...this.#carried, ...pulled];
    let count = 0;
    let bytes = 0;
    while (count < queue.length && count < Math.max(1, max)) {
      const size = messageBytes(queue[count]!);
      if (count > 0 && maxBytes !== undefined && bytes + size > maxBytes) break;
      bytes += size;
      count += 1;
    }
    this.#carried = queue.slice(count);
    return count === queue.length ? queue : queue.slice(0, count);
  }

  clear(): void {
    this.#carried = [];
  }
}

/**
 * One pull of up to `want` messages; `accept` sees each and returns false to discard the rest.
 * Returns null, or the reason a transient failure cut the pull short.
 */
async function pull(
  consumer: Consumer,
  want: number,
  expiresMs: number,
  accept: (m: JsMsg) => boolean,
): Promise<string | null> {
  try {
    let accepting = true;
    // A callback instead of `for await`: the client then hands each message over as it parses it, where
    // its iterator resolved a promise and resumed an async generator for every message (~1 µs each).
    // `callback` is read by the client's pull implementation for fetches too; its types declare it for
    // `consume()` only.
    const options: FetchMessages & ConsumeCallback = {
      max_messages: want,
      expires: Math.max(MIN_EXPIRES_MS, expiresMs),
      callback: (m) => {
        if (accepting) accepting = accept(m);
      },
    };
    const messages = await consumer.fetch(options);
    // With a callback the pull's failure (heartbeats missed, a 409) is what `closed()` resolves with.
    const failure = await messages.closed();
    if (failure instanceof Error) throw failure;
    return null;
  } catch (error) {
    if (isTransientNatsError(error) || isHeartbeatLoss(error) || isClusterMove(error))
      return messageOf(error);
    throw new FetchError(`cannot fetch messages: ${messageOf(error)}`, {}, { cause: error });
  }
}

/**
 * The server answering the pull shuts down, or the consumer's leader moves to another node (a cluster
 * node restarting): the pull ends with status 409 and the next one reaches the new leader.
 */
function isClusterMove(error: unknown): boolean {
  return error instanceof Error && /server shutdown|leadership change/i.test(error.message);
}

function isHeartbeatLoss(error: unknown): boolean {
  return error instanceof Error && /heartbeats missed/i.test(error.message);
}

/** What the pipeline reads of a delivery's ack subject (`JsMsg.info` has these and more). */
export interface Delivery {
  seq: number;
  /** The consumer's delivery sequence: one more for every delivery it makes, redeliveries included. */
  consumerSeq: number;
  deliveryCount: number;
  timestampNanos: number;
  pending: number;
}

/** Overwritten by each `deliveryOf` call: read at once, never kept. */
const delivery: Delivery = { seq: 0, consumerSeq: 0, deliveryCount: 0, timestampNanos: 0, pending: 0 };

/**
 * The delivery's numbers, read straight off its ack subject
 * (`$JS.ACK[.<domain>.<account>].<stream>.<consumer>.<delivered>.<seq>.<consumer seq>.<ns>.<pending>[.<token>]`):
 * `JsMsg.info` splits the subject into an array of strings and builds an object for each message, which
 * cost ~1.5 µs a message on one-reading messages. Falls back to `info` for a subject of any other shape.
 */
export function deliveryOf(m: JsMsg): Delivery {
  // The implementation's getter; not part of the `JsMsg` interface.
  const reply = (m as JsMsg & { readonly reply?: string }).reply ?? '';
  let dots = 0;
  for (let i = reply.indexOf('.'); i !== -1 && dots < DOTS.length; i = reply.indexOf('.', i + 1))
    DOTS[dots++] = i;
  // Where the numbers start (the delivery count's token): 9 tokens is the form without domain and account.
  const first = dots === 8 ? 4 : dots >= 10 ? 6 : -1;
  if (first !== -1 && reply.startsWith('$JS.ACK.')) {
    const end = (token: number): number => (token < dots ? DOTS[token]! : reply.length);
    const deliveryCount = digits(reply, DOTS[first - 1]! + 1, end(first));
    const seq = digits(reply, DOTS[first]! + 1, end(first + 1));
    const consumerSeq = digits(reply, DOTS[first + 1]! + 1, end(first + 2));
    const nanosFrom = DOTS[first + 2]! + 1;
    const nanosTo = end(first + 3);
    const pending = digits(reply, DOTS[first + 3]! + 1, end(first + 4));
    if (deliveryCount >= 0 && seq >= 0 && consumerSeq >= 0 && pending >= 0 && nanosTo > nanosFrom) {
      delivery.seq = seq;
      delivery.consumerSeq = consumerSeq;
      delivery.deliveryCount = deliveryCount;
      // As `info` reads it (19 digits round the same way only through the same parse).
      delivery.timestampNanos = Number.parseInt(reply.slice(nanosFrom, nanosTo), 10);
      delivery.pending = pending;
      return delivery;
    }
  }
  const info = m.info;
  delivery.seq = info.streamSequence;
  delivery.consumerSeq = info.deliverySequence;
  delivery.deliveryCount = info.deliveryCount;
  delivery.timestampNanos = info.timestampNanos;
  delivery.pending = info.pending;
  return delivery;
}

/** Whether the pairs' sequences are in ascending order. */
function ascending(held: readonly (readonly [number, string])[]): boolean {
  for (let i = 1; i < held.length; i++) if (held[i - 1]![0] > held[i]![0]) return false;
  return true;
}

/** The ack subject of a delivery: the reply subject of its message (`JsMsg.ack()` responds to it). */
function replyOf(m: JsMsg): string {
  // The implementation's getter; not part of the `JsMsg` interface (`deliveryOf` has just decoded it).
  return (m as JsMsg & { readonly reply?: string }).reply ?? '';
}

/** The acknowledgement payloads `JsMsg` sends. */
const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');
const WORKING = new TextEncoder().encode('+WPI');

/**
 * The connection of a JetStream client: the client's own field (not part of its interface), where the
 * acknowledgements go, as a `JsMsg` publishes them on its subscription's connection.
 */
function connectionOf(js: JetStreamClient): NatsConnection {
  const nc = (js as JetStreamClient & { readonly nc?: NatsConnection }).nc;
  if (nc === undefined) throw new TypeError('JetStream client without its connection (nc)');
  return nc;
}

/** Positions of an ack subject's first dots (12 tokens at most are read). */
const DOTS = new Int32Array(11);

/** The decimal number in `s[from, to)` as `parseInt` reads it; -1 when empty or not all digits. */
function digits(s: string, from: number, to: number): number {
  if (to <= from) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  // Up to 15 digits the sum is exact; beyond, only the same parse rounds the same way.
  return to - from <= 15 ? n : Number.parseInt(s.slice(from, to), 10);
}

/** The headers of a message that has none: one shared, frozen object instead of one per message. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

function toSourceMessage(stream: string, m: JsMsg, d: Delivery): SourceMessage {
  let headers: Record<string, string> | Readonly<Record<string, string>> = NO_HEADERS;
  if (m.headers !== undefined) {
    const own: Record<string, string> = {};
    for (const [key, values] of m.headers) if (values.length > 0) own[key] = values[0];
    headers = own;
  }
  const seq = d.seq;
  const storedAt = Math.floor(d.timestampNanos / 1e6);
  const received = headers[GsHeaders.ReceivedAt];
  const declared = Number(received);
  return {
    stream,
    seq,
    subject: m.subject,
    data: m.data,
    headers,
    source: `stream:${stream}:${seq}`,
    storedAt,
    // The publisher's header is a claim; the stream's own stored time bounds it, so a header in 2200
    // cannot carry a reading past the future check.
    receivedAt: received !== undefined && Number.isFinite(declared) ? Math.min(declared, storedAt) : storedAt,
    deliveryCount: d.deliveryCount,
    redelivered: d.deliveryCount > 1,
  };
}

function batch(
  messages: SourceMessage[],
  pending: number,
  flags: { done?: boolean; stalled?: boolean; interrupted?: string | null; lostDeliveries?: number },
): FetchedBatch {
  return {
    messages,
    pending,
    done: flags.done ?? false,
    stalled: flags.stalled ?? false,
    interrupted: flags.interrupted ?? null,
    ...(flags.lostDeliveries ? { lostDeliveries: flags.lostDeliveries } : {}),
  };
}

/** `carried`: pulled (so acknowledgement-pending on the server) but not yet handed to the pipeline. */
function lagOf(info: ConsumerInfo, carried: number): ConsumerLag {
  return {
    numPending: info.num_pending + carried,
    numAckPending: Math.max(0, info.num_ack_pending - carried),
    lag: info.num_pending + info.num_ack_pending,
    numRedelivered: info.num_redelivered,
  };
}

function filterConfig(filters: readonly string[] | undefined): Partial<ConsumerConfig> {
  if (filters === undefined || filters.length === 0) return {};
  if (filters.length === 1) return { filter_subject: filters[0] };
  return { filter_subjects: [...filters] };
}

function startConfig(start: StartPosition): Partial<ConsumerConfig> {
  switch (start.kind) {
    case 'all':
      return { deliver_policy: DeliverPolicy.All };
    case 'new':
      return { deliver_policy: DeliverPolicy.New };
    case 'sequence':
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start.seq };
    case 'time':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time.toISOString() };
  }
}

function sameStart(config: ConsumerConfig, wanted: Partial<ConsumerConfig>): boolean {
  return (
    config.deliver_policy === wanted.deliver_policy &&
    (config.opt_start_seq ?? 0) === (wanted.opt_start_seq ?? 0) &&
    (config.opt_start_time ?? '') === (wanted.opt_start_time ?? '')
  );
}

function sameLimits(config: ConsumerConfig, wanted: Partial<ConsumerConfig>): boolean {
  return (
    config.ack_wait === wanted.ack_wait &&
    config.max_ack_pending === wanted.max_ack_pending &&
    config.max_deliver === wanted.max_deliver &&
    (config.filter_subject ?? '') === (wanted.filter_subject ?? '') &&
    (config.filter_subjects ?? []).join(',') === (wanted.filter_subjects ?? []).join(',')
  );
}
