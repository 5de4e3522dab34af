/** The landing folder as a source: each file processed once, undecodable or refused files dead-lettered whole. */
import { getHeapStatistics } from 'node:v8';
import { decodeReadings } from '../codecs/decode.js';
import {
  deadLetterLandingFile,
  LandingError,
  LandingSource,
  landingReceivedAt,
} from '../connectors/landing.js';
import type { Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import { batchFromDecoded } from './decoded-batch.js';
import type { ReadingSource, SourceBatch } from './runner.js';

export interface FilesSourceOptions {
  /** The landing folder (holding `raw/`). */
  readonly root: string;
  /** Where undecodable files are copied whole, with a `.reason.json` beside them. */
  readonly deadLetterDir: string;
  readonly maxFilesPerBatch?: number;
  /** Bytes of files per batch; default {@link defaultBatchBytes}. */
  readonly maxBytesPerBatch?: number;
  readonly now: () => number;
  /** For the log line of a dead-lettered file. */
  readonly onDeadLetter?: (source: string, reason: string) => void;
}

/**
 * The files source's byte budget per batch when none is given: 1/64 of the heap limit (`--max-old-space-size`,
 * else V8's default), between 1 and 64 MiB. Decoded, a byte of CSV becomes about ten bytes of reading
 * objects, and a batch's readings and their outputs are alive together until the batch is written, so
 * this keeps a batch near a sixth of the heap: 16 MiB of files for a 1 GiB heap.
 */
export function defaultBatchBytes(heapLimit = getHeapStatistics().heap_size_limit): number {
  return Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(heapLimit / 64)));
}

/**
 * The embedded default source: the landing folder, each file processed once. Its position is the
 * processed-file ledger; files handed out are marked processed when the checkpoint that covers them is
 * taken, so a killed worker re-reads exactly the files of its unfinished checkpoint.
 */
export function filesSource(options: FilesSourceOptions): ReadingSource {
  const landing = new LandingSource({
    root: options.root,
    maxFilesPerBatch: options.maxFilesPerBatch ?? 16,
    maxBytesPerBatch: options.maxBytesPerBatch ?? defaultBatchBytes(),
  });
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
        if (file.refused !== undefined) {
          batch.deadLettered += 1;
          await deadLetter(options, file.path, file.bytes, file.refused);
          continue;
        }
        const decoded = decodeReadings(file.bytes, {
          source: file.path,
          // The folder name is the gateway's claim; the worker's clock bounds it (a folder `2200/…`).
          receivedAt: Math.min(landingReceivedAt(file.path) ?? now, now),
          contentType: file.contentType,
          lineRefs: true,
        });
        if (!batchFromDecoded(decoded, now, batch)) {
          batch.deadLettered += 1;
          const reason = decoded.ok ? '' : decoded.failure.reason;
          await deadLetter(options, file.path, file.bytes, reason);
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

/**
 * Dead-letters a landing file. A dead-letter folder that leads outside the landing folder (a planted
 * symbolic link) gets no copy; the file is still counted and logged with both reasons.
 */
async function deadLetter(
  options: FilesSourceOptions,
  path: string,
  bytes: Uint8Array,
  reason: string,
): Promise<void> {
  try {
    await deadLetterLandingFile(options.deadLetterDir, path, bytes, reason);
    options.onDeadLetter?.(path, reason);
  } catch (error) {
    if (!(error instanceof LandingError)) throw error;
    options.onDeadLetter?.(path, `${reason}; no dead-letter copy: ${error.message}`);
  }
}
