/**
 * The bounded source of `greenstream import`: a fixed list of files in any of the four formats (readings
 * CSV or JSON, NEM12, Green Button), each decoded whole and handed to the graph as one batch, whatever
 * folder it sits in. Files that cannot be decoded are copied to the dead-letter folder with their reason;
 * record failures become quarantine rows naming the file and record. The data streams a file describes
 * are reported before its readings enter the graph, so the caller can register unknown meters in time.
 *
 * Position: the files done, so an interrupted import resumes with the next file.
 */

import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { decodeReadings } from '../codecs/decode.js';
import type { FileMeter } from '../codecs/types.js';
import { ConfigurationError } from '../core/errors.js';
import type { Json } from '../core/index.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';
import type { ReadingSource, SourceBatch } from './runner.js';

/** File names an import takes: the four formats' usual extensions, not hidden, not being written. */
const IMPORTED_EXTENSIONS = ['.csv', '.json', '.xml'];

export interface ImportFile {
  /** As named to the user and in every record's `source`: the argument joined with the path under it. */
  readonly path: string;
  /** Where the dead-letter copy goes, relative to the dead-letter folder. */
  readonly deadLetterPath: string;
}

/** The files named to `import` cannot be listed (a path that does not exist …): fix the arguments. */
export class ImportInputError extends ConfigurationError {
  override readonly name = 'ImportInputError';
}

/**
 * The files named by `inputs` (files, or folders searched recursively for `.csv`, `.json`, `.xml` files
 * not hidden), sorted, each once (named as first met); none under `exclude` (the dead-letter folder).
 */
export async function listImportFiles(
  inputs: readonly string[],
  options: { readonly exclude?: string } = {},
): Promise<ImportFile[]> {
  const found = new Map<string, ImportFile>();
  const excluded = options.exclude === undefined ? undefined : `${resolve(options.exclude)}${sep}`;
  for (const input of inputs) {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(input);
    } catch (err) {
      throw new ImportInputError(`cannot read ${input}: ${(err as Error).message}`, { cause: err });
    }
    if (info.isFile()) {
      if (!found.has(resolve(input)))
        found.set(resolve(input), { path: input, deadLetterPath: basename(input) });
      continue;
    }
    const root = basename(resolve(input));
    for (const file of await walk(input)) {
      if (!isImportFileName(basename(file))) continue;
      if (excluded !== undefined && resolve(file).startsWith(excluded)) continue;
      if (found.has(resolve(file))) continue;
      found.set(resolve(file), { path: file, deadLetterPath: join(root, relative(input, file)) });
    }
  }
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export function isImportFileName(name: string): boolean {
  if (name.startsWith('.')) return false;
  const lower = name.toLowerCase();
  return IMPORTED_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** What one file gave. */
export interface ImportFileReport {
  readonly path: string;
  /** `text/csv`, `application/json`, `text/x-nem12`, `application/atom+xml`; absent when dead-lettered. */
  readonly contentType?: string;
  readonly readings: number;
  readonly quarantined: number;
  /** The reason the whole file was dead-lettered, else absent. */
  readonly deadLetter?: string;
  readonly meterIds: readonly string[];
}

export interface ImportSourceOptions {
  readonly files: readonly ImportFile[];
  /** Where undecodable files are copied whole, with a `.reason.json` beside them. */
  readonly deadLetterDir: string;
  /** The server time the readings count as received (the import's start): judges future timestamps. */
  readonly receivedAt: number;
  readonly now: () => number;
  /** Called with a file's data streams before its readings are returned. */
  readonly onMeters?: (meters: readonly FileMeter[], file: ImportFile) => void;
  readonly onFile?: (report: ImportFileReport) => void;
}

interface ImportPosition {
  readonly done: string[];
}

export function importSource(options: ImportSourceOptions): ReadingSource {
  const done = new Set<string>();
  let delivered: string[] = [];
  let next = 0;
  const remaining = () => options.files.filter((f) => !done.has(f.path) && !delivered.includes(f.path));
  return {
    name: 'import',
    async open(position: Json | undefined) {
      const restored = position as unknown as ImportPosition | undefined;
      if (restored !== undefined && restored !== null && Array.isArray(restored.done)) {
        for (const path of restored.done) done.add(path);
      }
      next = 0;
    },
    async next(): Promise<SourceBatch | 'end'> {
      while (next < options.files.length && done.has(options.files[next]!.path)) next++;
      const file = options.files[next];
      if (file === undefined) return 'end';
      next++;
      delivered.push(file.path);
      const batch = { records: [] as RawReading[], quarantined: [] as QuarantineRecord[], deadLettered: 0 };
      const now = options.now();
      let bytes: Uint8Array;
      try {
        bytes = await readFile(file.path);
      } catch (err) {
        // Listed a moment ago: unreadable now (permissions, removed) is a dead letter, not a crash.
        const reason = `cannot read the file: ${(err as Error).message}`;
        batch.deadLettered = 1;
        options.onFile?.({ path: file.path, readings: 0, quarantined: 0, deadLetter: reason, meterIds: [] });
        return batch;
      }
      const decoded = decodeReadings(bytes, {
        source: file.path,
        receivedAt: options.receivedAt,
        lineRefs: true,
      });
      if (!decoded.ok) {
        batch.deadLettered = 1;
        await deadLetterFile(options.deadLetterDir, file, bytes, decoded.failure.reason);
        options.onFile?.({
          path: file.path,
          readings: 0,
          quarantined: 0,
          deadLetter: decoded.failure.reason,
          meterIds: [],
        });
        return batch;
      }
      if (decoded.meters !== undefined && decoded.meters.length > 0) options.onMeters?.(decoded.meters, file);
      for (const r of decoded.readings) batch.records.push(r);
      for (const f of decoded.failures) {
        batch.quarantined.push({
          meterId: f.meterId,
          ts: null,
          raw: f.raw,
          reasons: [f.reason],
          // The decoders' record failures already name the file and the record (`<file>#<line>`).
          source: f.source,
          quarantinedAt: now,
        });
      }
      const meterIds = new Set<string>();
      for (const r of decoded.readings) meterIds.add(r.meterId);
      options.onFile?.({
        path: file.path,
        contentType: decoded.contentType,
        readings: decoded.readings.length,
        quarantined: decoded.failures.length,
        meterIds: [...meterIds],
      });
      return batch;
    },
    position(): Json {
      for (const path of delivered) done.add(path);
      delivered = [];
      return { done: [...done] } satisfies ImportPosition as unknown as Json;
    },
    async pending() {
      return remaining().length;
    },
    async commit() {},
    async close() {},
  };
}

async function deadLetterFile(
  dir: string,
  file: ImportFile,
  bytes: Uint8Array,
  reason: string,
): Promise<void> {
  // A path named from outside the current folder (`../shared/…`) must not climb out of the dead-letter folder.
  const target = join(dir, file.deadLetterPath.replace(/^(\.\.[/\\])+/, ''));
  await mkdir(dirname(target), { recursive: true });
  await writeFile(`${target}.partial`, bytes);
  await rename(`${target}.partial`, target);
  await writeFile(`${target}.reason.json`, `${JSON.stringify({ source: file.path, reason })}\n`);
}
