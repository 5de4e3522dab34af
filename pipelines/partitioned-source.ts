/** A worker owning a set of partitions: one consumer per partition, merged into stream order. */
import type { ReadingsMessageSource, SourceMessage } from '../connectors/jetstream-source.js';
import type { Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import { batchBudget } from './memory-budget.js';
import {
  consumerState,
  deadLetterAll,
  MAX_EMPTY_WHILE_PENDING,
  type MessageSourceOptions,
  reopenAfterLoss,
  takeMessage,
} from './message-source.js';
import { formatPartitionSet, normalizePartitionSet } from './partition-set.js';
import { type PullOutage, pullOutage } from './pull-outage.js';
import type { ReadingSource, SourceBatch } from './runner.js';
import { partitionPositions } from './source-positions.js';

/** Opens the messages of one partition (subject `readings.<p>`) in stream order after `resumeAfterSeq`. */
export type OpenPartitionMessages = (
  partition: number,
  resumeAfterSeq: number,
) => Promise<ReadingsMessageSource>;

export interface PartitionedSourceOptions extends MessageSourceOptions {
  /** The partitions this worker owns, each its own consumer. */
  readonly partitions: readonly number[];
  /**
   * The stream's last sequence now. A partition that has nothing pending when asked after this was read
   * holds no message at or below it, so the other partitions' messages up to it may go first.
   */
  readonly streamLastSeq: () => Promise<number>;
  /** Called once the consumers are open, with the sequence each partition resumes after. */
  readonly onOpened?: (resumeAfter: Readonly<Record<string, number>>) => void;
}

/** One owned partition: its consumer and what has been fetched from it but not yet handed out. */
interface PartitionLane {
  readonly partition: number;
  /** Replaced when deliveries were lost in transit (the consumer starts again after `lastSeq`). */
  messages: ReadingsMessageSource;
  /** Fetched, not yet handed to the pipeline, in stream order. */
  buffer: SourceMessage[];
  /** The last sequence handed to the pipeline: this partition's position. */
  lastSeq: number;
  /** The last sequence fetched (≥ lastSeq): the partition's next message comes after it. */
  lastFetched: number;
  /** Handed out (or redelivered after it was), acknowledged at the next commit. */
  delivered: SourceMessage[];
  /** Messages left after the last fetch, -1 when unknown. */
  pendingHint: number;
  /** A replay reached its end: nothing more will come. */
  done: boolean;
  /** `max_ack_pending` left no room at the last fetch. */
  stalled: boolean;
  /** This call's pull was cut short by a transient failure, or the consumer was just recreated. */
  interrupted: boolean;
  /** Empty pulls in a row while the consumer reported pending messages. */
  emptyWhilePending: number;
  /** Pulls failing in a row: the consumer is recreated, then the run given up on (see `pullOutage`). */
  readonly outage: PullOutage;
}

/**
 * A worker that owns a set of partitions: one consumer per partition (server 2.9 takes one filter
 * subject per consumer), merged by stream sequence, so the pipeline sees exactly the order a single
 * consumer on the owned subjects would give. That order is the fair one (oldest message first, whatever
 * its partition), and it is what keeps results independent of how the partitions are spread:
 * - no partition runs ahead of another in event time, so the watermark (max event time minus the
 *   allowed out-of-orderness) makes nothing late that an all-partitions worker would have taken; a
 *   round-robin pull of whole batches per partition would let one partition's day close before
 *   another's morning arrived;
 * - a worker restarted from its checkpoint sees the same sequence as one never interrupted, as
 *   `messageReadingSource` does.
 * A message from one partition goes out only once every other partition is known to hold nothing
 * older: a message fetched from it, or, for a partition with nothing fetched, no message pending when
 * asked after reading the stream's last sequence.
 *
 * The position is `{ partitions: { "<p>": lastSeq } }`; each consumer resumes after its own sequence and
 * is acknowledged for its own messages. Operator state covers the meters of exactly these partitions,
 * so a checkpoint of another partition set (or of an all-partitions worker, `{ lastSeq }`) is refused.
 */
export function partitionedReadingSource(
  openPartition: OpenPartitionMessages,
  options: PartitionedSourceOptions,
): ReadingSource {
  const partitions = normalizePartitionSet(options.partitions);
  const owned = formatPartitionSet(partitions);
  const batchSize = options.batchSize ?? 256;
  // Every partition holds up to a pull in memory; together they hold about one batch.
  const perPartition = Math.max(16, Math.ceil(batchSize / partitions.length));
  const expiresMs = options.expiresMs ?? 1000;
  const budget = batchBudget(options);
  let lanes: PartitionLane[] = [];
  let resumeAfter: Record<string, number> = {};

  // See `messageReadingSource`: deliveries lost in transit restart the lane's consumer right after the
  // last message handed out; what it had buffered beyond comes again, in order.
  const reopen = (lane: PartitionLane, count: number): Promise<void> => {
    options.onDeliveriesLost?.(count, lane.lastSeq);
    return recreate(lane);
  };
  const recreate = async (lane: PartitionLane): Promise<void> => {
    lane.messages = await reopenAfterLoss(
      lane.messages,
      (after) => openPartition(lane.partition, after),
      lane.lastSeq,
    );
    lane.buffer = [];
    lane.lastFetched = lane.lastSeq;
    lane.pendingHint = -1;
    lane.interrupted = true;
  };

  const refill = async (lane: PartitionLane): Promise<void> => {
    // Each lane's pull holds its share of the byte budget, so together they hold about one batch.
    const laneBytes = Math.ceil(budget() / partitions.length);
    await lane.outage.backoff();
    const fetched = await lane.messages.fetchBatch(perPartition, expiresMs, laneBytes);
    if ((fetched.lostDeliveries ?? 0) > 0) return reopen(lane, fetched.lostDeliveries ?? 0);
    // A pull that brought messages worked, whatever cut it short.
    if (lane.outage.note(fetched.messages.length > 0 ? null : fetched.interrupted) === 'reopen')
      return recreate(lane);
    lane.stalled = fetched.stalled;
    lane.interrupted = fetched.interrupted !== null;
    lane.pendingHint = fetched.pending;
    if (fetched.done) lane.done = true;
    for (const m of fetched.messages) {
      if (m.seq <= lane.lastFetched) {
        // A redelivery (ack_wait ran out before the commit). Handed out already: acknowledge it with the
        // rest; still buffered: the buffered copy is acknowledged once handed out.
        if (m.seq <= lane.lastSeq) lane.delivered.push(m);
        continue;
      }
      lane.buffer.push(m);
      lane.lastFetched = m.seq;
    }
  };

  return {
    name: `jetstream:partitions ${owned}`,
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      const resume = partitionPositions(position, partitions);
      const opening = await Promise.allSettled(partitions.map((p) => openPartition(p, resume.get(p) ?? 0)));
      const failed = opening.find((o) => o.status === 'rejected');
      if (failed !== undefined) {
        await Promise.all(opening.map((o) => (o.status === 'fulfilled' ? o.value.close() : undefined)));
        throw failed.reason;
      }
      lanes = partitions.map((partition, i) => {
        const seq = resume.get(partition) ?? 0;
        return {
          partition,
          messages: (opening[i] as PromiseFulfilledResult<ReadingsMessageSource>).value,
          buffer: [],
          lastSeq: seq,
          lastFetched: seq,
          delivered: [],
          pendingHint: -1,
          done: false,
          stalled: false,
          interrupted: false,
          emptyWhilePending: 0,
          outage: pullOutage(`partition ${partition}`, options.now, options),
        };
      });
      resumeAfter = Object.fromEntries(partitions.map((p) => [String(p), resume.get(p) ?? 0]));
      options.onOpened?.(resumeAfter);
    },

    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      if (lanes.length === 0) throw new Error('partitioned source used before open()');
      // Both say what this call's pulls and checks found. An interruption kept from an earlier call made a
      // drained lane (whose consumer is asked, not pulled) look cut short forever: an `--until-idle`
      // worker of the cluster test read its whole partition set and never ended.
      for (const lane of lanes) {
        lane.stalled = false;
        lane.interrupted = false;
      }
      const unfilled = () => lanes.filter((l) => l.buffer.length === 0 && !l.done);
      await Promise.all(
        unfilled()
          .filter((l) => l.pendingHint > 0)
          .map(refill),
      );
      // Partitions still empty: ask what they hold, after reading how far the stream goes.
      const emptyUpTo = new Map<PartitionLane, number>();
      const unsure = unfilled();
      if (unsure.length > 0) {
        const streamLast = await options.streamLastSeq();
        await Promise.all(
          unsure.map(async (lane) => {
            const held = await consumerState(lane.messages);
            if (held.state === 'lost') return reopen(lane, held.count);
            const pending = held.state === 'pending';
            lane.pendingHint = pending ? 1 : 0;
            if (!pending) emptyUpTo.set(lane, streamLast);
            else {
              await refill(lane);
              // The consumer holds messages the pull did not bring (a cluster node restarting): not idle,
              // unless it keeps saying so without delivering.
              if (lane.buffer.length === 0 && ++lane.emptyWhilePending <= MAX_EMPTY_WHILE_PENDING)
                lane.interrupted = true;
              if (lane.buffer.length > 0) lane.emptyWhilePending = 0;
            }
          }),
        );
      }
      // Nothing above `bound` may go out yet: a partition with nothing buffered may still deliver it.
      let bound = Number.POSITIVE_INFINITY;
      for (const lane of lanes) {
        if (lane.buffer.length === 0 && !lane.done)
          bound = Math.min(bound, emptyUpTo.get(lane) ?? lane.lastFetched);
      }
      const picked: [PartitionLane, SourceMessage][] = [];
      const maxBytes = budget();
      let bytes = 0;
      while (picked.length < batchSize) {
        let oldest: PartitionLane | undefined;
        for (const lane of lanes) {
          if (lane.buffer.length > 0 && (oldest === undefined || lane.buffer[0]!.seq < oldest.buffer[0]!.seq))
            oldest = lane;
        }
        if (oldest === undefined || oldest.buffer[0]!.seq > bound) break;
        const size = oldest.buffer[0]!.data.byteLength;
        // One message larger than the budget still goes, alone.
        if (picked.length > 0 && bytes + size > maxBytes) break;
        bytes += size;
        picked.push([oldest, oldest.buffer.shift()!]);
        if (oldest.buffer.length === 0 && !oldest.done) bound = Math.min(bound, oldest.lastFetched);
      }
      const stalled = lanes.some((l) => l.stalled);
      if (picked.length === 0) {
        if (lanes.every((l) => l.done && l.buffer.length === 0)) return 'end';
        // A pull cut short (a cluster node restarting) says nothing about what is left: not idle, which
        // would end a bounded run early.
        if (stalled || lanes.some((l) => l.interrupted))
          return { records: [], quarantined: [], deadLettered: 0, ...(stalled ? { commitSoon: true } : {}) };
        return 'idle';
      }
      const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
      const now = options.now();
      const failed: [SourceMessage, ReadingsMessageSource, string][] = [];
      for (const [lane, m] of picked) {
        lane.lastSeq = m.seq;
        const reason = takeMessage(m, batch, now);
        if (reason === undefined) lane.delivered.push(m);
        else failed.push([m, lane.messages, reason]);
      }
      if (failed.length > 0) await deadLetterAll(failed, batch, options);
      return { ...batch, commitSoon: stalled };
    },

    position(): Json {
      if (lanes.length === 0) return { partitions: resumeAfter };
      return { partitions: Object.fromEntries(lanes.map((l) => [String(l.partition), l.lastSeq])) };
    },

    async commit() {
      await Promise.all(
        lanes.map(async (lane) => {
          const acking = lane.delivered;
          lane.delivered = [];
          if (acking.length > 0) await lane.messages.ack(acking);
        }),
      );
    },

    async pending() {
      const lags = await Promise.all(lanes.map((l) => l.messages.pending()));
      return lags.reduce((sum, l) => sum + l.lag, 0);
    },

    async close() {
      const closing = lanes;
      lanes = [];
      await Promise.all(closing.map((l) => l.messages.close()));
    },
  };
}
