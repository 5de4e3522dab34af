/** The landing folder as a source: each file processed once, undecodable files dead-lettered whole. */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { decodeReadings } from '../connectors/decode.js';
import { LandingSource, landingReceivedAt } from '../connectors/landing.js';
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
