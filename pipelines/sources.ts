import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type DecodeResult, decodeReadings } from '../connectors/decode.js';
import type { ReadingsMessageSource, SourceMessage } from '../connectors/jetstream-source.js';
import { LandingSource, landingReceivedAt } from '../connectors/landing.js';
import type { Json } from '../core/index.js';
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

/**
 * JetStream (durable consumer or replay) as a pipeline source. The checkpoint, not the consumer, holds the
 * position: `openMessages` must deliver in stream order from just after it, so a restarted worker sees
 * exactly the sequence an uninterrupted one would (a durable consumer would instead hand out new
 * messages first and redeliver the killed worker's unacknowledged ones only after `ack_wait`).
 * Deliveries are acknowledged in `commit`, after the checkpoint that covers them; a redelivered message
 * the checkpoint already covers is acknowledged without being processed again. A message that cannot be
 * decoded goes whole to the dead-letter stream.
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
      for (const m of fetched.messages) {
        if (m.seq <= lastSeq) {
          delivered.push(m);
          continue;
        }
        lastSeq = m.seq;
        const decoded = decodeReadings(m.data, {
          source: m.source,
          receivedAt: m.receivedAt,
          contentType: m.headers['Content-Type'] ?? null,
          lineRefs: true,
        });
        if (batchFromDecoded(decoded, now, batch)) {
          delivered.push(m);
        } else {
          const reason = decoded.ok ? '' : decoded.failure.reason;
          await source.deadLetter(m, reason);
          options.onDeadLetter?.(m.source, reason);
          batch.deadLettered += 1;
        }
      }
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
  const seq = position.lastSeq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new Error(`checkpoint position ${JSON.stringify(position)} has no valid lastSeq`);
  }
  return seq;
}
