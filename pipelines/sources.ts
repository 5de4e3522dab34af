import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type DecodeResult, decodeReadings } from '../connectors/decode.js';
import type { ReadingsMessageSource, SourceMessage } from '../connectors/jetstream-source.js';
import { LandingSource, landingReceivedAt } from '../connectors/landing.js';
import { ConfigurationError, type Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import type { ReadingSource, SourceBatch } from './runner.js';

/** Turns one decoded payload into a source batch: record failures become quarantine rows. */
export function batchFromDecoded(
  decoded: DecodeResult,
  quarantinedAt: number,
  into: { records: RawReading[]; quarantined: QuarantineRecord[] },
): boolean {
  if (!decoded.ok) return false;
  for (const r of decoded.readings) into.records.push(r);
  for (const f of decoded.failures) {
    into.quarantined.push({
      meterId: f.meterId,
      ts: null,
      raw: f.raw,
      reasons: [f.reason],
      source: `${f.source}#${f.line}`,
      quarantinedAt,
    });
  }
  return true;
}

export interface FilesSourceOptions {
  /** The landing folder (holding `raw/`). */
  readonly root: string;
  /** Where undecodable files are copied whole, with a `.reason.json` beside them. */
  readonly deadLetterDir: string;
  readonly maxFilesPerBatch?: number;
  readonly now: () => number;
}

/**
 * The embedded default source: the landing folder, each file processed once. Its position is the
 * processed-file ledger; files handed out are marked processed when the checkpoint that covers them is
 * taken, so a killed worker re-reads exactly the files of its unfinished checkpoint.
 */
export function filesSource(options: FilesSourceOptions): ReadingSource {
  const landing = new LandingSource({ root: options.root, maxFilesPerBatch: options.maxFilesPerBatch ?? 16 });
  let delivered: string[] = [];
  return {
    name: `files:${options.root}`,
    async open(position: Json | undefined) {
      if (position !== undefined && position !== null) landing.restoreLedger(position);
    },
    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      const files = await landing.nextBatch();
      if (files.length === 0) return 'idle';
      const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
      const now = options.now();
      for (const file of files) {
        delivered.push(file.path);
        const decoded = decodeReadings(file.bytes, {
          source: file.path,
          receivedAt: landingReceivedAt(file.path) ?? now,
          contentType: file.contentType,
          lineRefs: true,
        });
        if (!batchFromDecoded(decoded, now, batch)) {
          batch.deadLettered += 1;
          const reason = decoded.ok ? '' : decoded.failure.reason;
          await deadLetterFile(options.deadLetterDir, file.path, file.bytes, reason);
        }
      }
      return batch;
    },
    position(): Json {
      landing.markProcessed(delivered);
      delivered = [];
      return landing.ledgerState() as unknown as Json;
    },
    async commit() {},
    async close() {},
  };
}

async function deadLetterFile(dir: string, path: string, bytes: Uint8Array, reason: string): Promise<void> {
  const target = join(dir, path);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(`${target}.partial`, bytes);
  await rename(`${target}.partial`, target);
  await writeFile(`${target}.reason.json`, `${JSON.stringify({ source: path, reason })}\n`);
}

export interface MessageSourceOptions {
  /** Messages per pull. */
  readonly batchSize?: number;
  readonly expiresMs?: number;
  readonly now: () => number;
  /** For the log line of a dead-lettered message. */
  readonly onDeadLetter?: (source: string, reason: string) => void;
}

/** Where a message source starts: after the last stream sequence a checkpoint covers (0: from the start). */
export type OpenMessages = (resumeAfterSeq: number) => Promise<ReadingsMessageSource>;

/** A checkpoint position this source cannot resume from; the worker stops rather than guess. */
export class SourcePositionError extends ConfigurationError<Readonly<Record<string, string>>> {
  override readonly name = 'SourcePositionError';
  constructor(message: string, context: Readonly<Record<string, string>>) {
    super(message, { context });
  }
}

/**
 * Decodes one message into `batch`. Returns the reason when it cannot be decoded (it then goes whole
 * to the dead-letter stream, see `deadLetterAll`), undefined when it is to be acknowledged at the next
 * commit. Synchronous: with one reading per message, an `await` per message cost more than the decoding.
 */
function takeMessage(
  m: SourceMessage,
  batch: { records: RawReading[]; quarantined: QuarantineRecord[]; deadLettered: number },
  now: number,
): string | undefined {
  const decoded = decodeReadings(m.data, {
    source: m.source,
    receivedAt: m.receivedAt,
    contentType: m.headers['Content-Type'] ?? null,
    lineRefs: true,
  });
  if (batchFromDecoded(decoded, now, batch)) return undefined;
  return decoded.ok ? '' : decoded.failure.reason;
}

/** Moves undecodable messages whole to the dead-letter stream (which acknowledges them), in order. */
async function deadLetterAll(
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
 * is `{ lastSeq }`. A worker owning a set of partitions uses `partitionedReadingSource`.
 */
export function messageReadingSource(
  openMessages: OpenMessages,
  options: MessageSourceOptions,
): ReadingSource {
  let messages: ReadingsMessageSource | undefined;
  let delivered: SourceMessage[] = [];
  let lastSeq = 0;
  const opened = (): ReadingsMessageSource => {
    if (messages === undefined) throw new Error('message source used before open()');
    return messages;
  };
  return {
    name: 'jetstream',
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      lastSeq = lastSeqOf(position);
      messages = await openMessages(lastSeq);
    },
    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      const source = opened();
      const fetched = await source.fetchBatch(options.batchSize ?? 256, options.expiresMs ?? 1000);
      if (fetched.messages.length === 0) {
        if (fetched.done) return 'end';
        return fetched.stalled ? { records: [], quarantined: [], deadLettered: 0, commitSoon: true } : 'idle';
      }
      const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
      const now = options.now();
      const failed: [SourceMessage, ReadingsMessageSource, string][] = [];
      for (const m of fetched.messages) {
        if (m.seq <= lastSeq) {
          delivered.push(m);
          continue;
        }
        lastSeq = m.seq;
        const reason = takeMessage(m, batch, now);
        if (reason === undefined) delivered.push(m);
        else failed.push([m, source, reason]);
      }
      if (failed.length > 0) await deadLetterAll(failed, batch, options);
      return { ...batch, commitSoon: fetched.stalled };
    },
    position(): Json {
      return { lastSeq };
    },
    async commit() {
      const acking = delivered;
      delivered = [];
      if (acking.length > 0) await opened().ack(acking);
    },
    async pending() {
      return (await opened().pending()).lag;
    },
    async close() {
      await messages?.close();
    },
  };
}

function lastSeqOf(position: Json | undefined): number {
  if (position === undefined || position === null || typeof position !== 'object' || Array.isArray(position))
    return 0;
  if (position.partitions !== undefined && position.lastSeq === undefined) {
    const stored = partitionsOfPosition(position.partitions);
    throw new SourcePositionError(
      `the checkpoint holds the positions of partitions ${formatPartitionSet(stored)}, but this worker ` +
        'owns every partition: its operator state lacks the meters of the other partitions. Run it with ' +
        `--partitions ${formatPartitionSet(stored)}, or start an all-partitions worker under a new --worker id`,
      { stored: formatPartitionSet(stored), owned: 'all' },
    );
  }
  const seq = position.lastSeq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new Error(`checkpoint position ${JSON.stringify(position)} has no valid lastSeq`);
  }
  return seq;
}

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
  readonly messages: ReadingsMessageSource;
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
  let lanes: PartitionLane[] = [];
  let resumeAfter: Record<string, number> = {};

  const refill = async (lane: PartitionLane): Promise<void> => {
    const fetched = await lane.messages.fetchBatch(perPartition, expiresMs);
    lane.stalled = fetched.stalled;
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
        };
      });
      resumeAfter = Object.fromEntries(partitions.map((p) => [String(p), resume.get(p) ?? 0]));
      options.onOpened?.(resumeAfter);
    },

    async next(): Promise<SourceBatch | 'idle' | 'end'> {
      if (lanes.length === 0) throw new Error('partitioned source used before open()');
      for (const lane of lanes) lane.stalled = false;
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
            const { numPending } = await lane.messages.pending();
            lane.pendingHint = numPending;
            if (numPending === 0) emptyUpTo.set(lane, streamLast);
            else await refill(lane);
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
      while (picked.length < batchSize) {
        let oldest: PartitionLane | undefined;
        for (const lane of lanes) {
          if (lane.buffer.length > 0 && (oldest === undefined || lane.buffer[0]!.seq < oldest.buffer[0]!.seq))
            oldest = lane;
        }
        if (oldest === undefined || oldest.buffer[0]!.seq > bound) break;
        picked.push([oldest, oldest.buffer.shift()!]);
        if (oldest.buffer.length === 0 && !oldest.done) bound = Math.min(bound, oldest.lastFetched);
      }
      const stalled = lanes.some((l) => l.stalled);
      if (picked.length === 0) {
        if (lanes.every((l) => l.done && l.buffer.length === 0)) return 'end';
        return stalled ? { records: [], quarantined: [], deadLettered: 0, commitSoon: true } : 'idle';
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

/** The resume sequence of each owned partition, from a checkpoint position of the same partition set. */
function partitionPositions(position: Json | undefined, partitions: readonly number[]): Map<number, number> {
  const owned = formatPartitionSet(partitions);
  if (position === undefined || position === null) return new Map(partitions.map((p) => [p, 0]));
  if (typeof position !== 'object' || Array.isArray(position)) {
    throw new SourcePositionError(`checkpoint position ${JSON.stringify(position)} is not an object`, {
      owned,
    });
  }
  if (position.partitions === undefined) {
    throw new SourcePositionError(
      `the checkpoint holds one position for the whole stream ({ lastSeq }), written by a worker that owned ` +
        `every partition (or one, before partition sets); this worker owns partitions ${owned}, and that ` +
        'operator state may hold meters it does not own. Start it under a new --worker id',
      { stored: 'all', owned },
    );
  }
  const stored = partitionsOfPosition(position.partitions);
  if (formatPartitionSet(stored) !== owned) {
    throw new SourcePositionError(
      `the checkpoint covers partitions ${formatPartitionSet(stored)}, but this worker was started with ` +
        `${owned}: operator state belongs to the meters of one partition set, so a worker cannot take on or ` +
        `give up partitions. Run it with --partitions ${formatPartitionSet(stored)}, or start the new set ` +
        'under a new --worker id',
      { stored: formatPartitionSet(stored), owned },
    );
  }
  const seqs = position.partitions as Record<string, number>;
  return new Map(partitions.map((p) => [p, seqs[String(p)]!]));
}

/** The partitions named by a `{ partitions }` position; throws when a sequence is not a valid one. */
function partitionsOfPosition(value: Json | undefined): number[] {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) {
    throw new SourcePositionError(`checkpoint partitions ${JSON.stringify(value)} is not an object`, {});
  }
  const out: number[] = [];
  for (const [key, seq] of Object.entries(value)) {
    const partition = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(partition))
      throw new SourcePositionError(`checkpoint names partition "${key}", not a partition number`, {});
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
      throw new SourcePositionError(`checkpoint position of partition ${key} is ${JSON.stringify(seq)}`, {});
    out.push(partition);
  }
  return normalizePartitionSet(out);
}

/** More would mean as many consumers on one worker; a typo like `0-1600` is caught here. */
export const MAX_OWNED_PARTITIONS = 1024;

/**
 * The partitions `--partitions` names: numbers and inclusive ranges separated by commas, `0-3,8`.
 * Sorted, each once. Throws `RangeError` on anything else.
 */
export function parsePartitionSet(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const item = part.trim();
    const range = /^(\d+)\s*-\s*(\d+)$/.exec(item);
    if (range !== null) {
      const from = Number(range[1]);
      const to = Number(range[2]);
      if (from > to) throw new RangeError(`partition range "${item}" runs backwards`);
      if (to - from >= MAX_OWNED_PARTITIONS)
        throw new RangeError(`partition range "${item}" names more than ${MAX_OWNED_PARTITIONS} partitions`);
      for (let p = from; p <= to; p++) out.push(p);
    } else if (/^\d+$/.test(item)) {
      out.push(Number(item));
    } else {
      throw new RangeError(
        `"${text}" is not a partition set: give partition numbers and ranges separated by commas, like 0-3,8`,
      );
    }
  }
  return normalizePartitionSet(out);
}

function normalizePartitionSet(partitions: readonly number[]): number[] {
  const set = [...new Set(partitions)].sort((a, b) => a - b);
  if (set.length === 0) throw new RangeError('a partition set must name at least one partition');
  if (set.length > MAX_OWNED_PARTITIONS)
    throw new RangeError(`a worker owns at most ${MAX_OWNED_PARTITIONS} partitions, got ${set.length}`);
  for (const p of set) {
    if (!Number.isSafeInteger(p) || p < 0) throw new RangeError(`partition ${p} is not a partition number`);
  }
  return set;
}

/** The shortest spelling of a partition set, `0-3,8`: for logs, errors and the source name. */
export function formatPartitionSet(partitions: readonly number[]): string {
  const set = [...new Set(partitions)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < set.length; ) {
    let j = i;
    while (j + 1 < set.length && set[j + 1] === set[j]! + 1) j++;
    parts.push(j === i ? String(set[i]) : `${set[i]}-${set[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
