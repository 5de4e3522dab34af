/**
 * The landing folder source: files the simulator (or a meter gateway) drops under
 * `raw/YYYY/MM/DD/HH/<name>.csv|json`, read in event-time (path) order, each processed once.
 *
 * "Once" is kept by a ledger of processed files that is part of the pipeline checkpoint: a file is
 * marked processed only after everything derived from it is committed (`markProcessed`), and a
 * restarted worker restores the ledger from the checkpoint and carries on. Files handed out but not
 * yet marked are in flight: not handed out again by this instance, redone after a crash (the sinks
 * are idempotent on record id).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CSV_CONTENT_TYPE, JSON_CONTENT_TYPE, type PayloadContentType } from './decode.js';

export class LandingError extends Error {
  override readonly name = 'LandingError';
  readonly context: Readonly<Record<string, string | number>>;
  constructor(message: string, context: Record<string, string | number>, options?: { cause?: unknown }) {
    super(message, options);
    this.context = context;
  }
}

export interface LandingFile {
  /** `raw/YYYY/MM/DD/HH/<name>`, relative to the landing folder: the records' `source`. */
  readonly path: string;
  readonly bytes: Buffer;
  /** From the file extension. */
  readonly contentType: PayloadContentType;
  /** The end of the file's hour folder, epoch ms UTC: the latest it can have landed (`RawReading.receivedAt`). */
  readonly receivedAt: number;
}

/**
 * The processed-file ledger as plain JSON, for the checkpoint. `processed` groups file names by
 * hour folder (`YYYY/MM/DD/HH`); every file in an hour before `floor` counts as processed.
 */
export interface LandingLedgerState {
  readonly version: 1;
  readonly floor: string | null;
  readonly processed: Readonly<Record<string, readonly string[]>>;
}

export interface LandingSourceOptions {
  /** The landing folder holding `raw/`, or the `raw/` folder itself. */
  readonly root: string;
  /** A ledger restored from a checkpoint. */
  readonly ledger?: LandingLedgerState;
  /** Default 256. */
  readonly maxFilesPerBatch?: number;
  /** A batch stops growing past this many bytes (it always holds at least one file). Default 64 MiB. */
  readonly maxBytesPerBatch?: number;
  /** Files read in parallel. Default 8. */
  readonly readConcurrency?: number;
  /**
   * Skip files modified less than this long ago, for writers that do not write under a temporary
   * name first. Default 0 (writers are expected to write `.tmp` or dot files, then rename).
   */
  readonly minFileAgeMs?: number;
  /** Clock for `minFileAgeMs`; defaults to `Date.now`. */
  readonly now?: () => number;
}

const HOUR_LAYOUT = [/^\d{4}$/, /^\d{2}$/, /^\d{2}$/, /^\d{2}$/] as const;

/** True for files the landing layout carries: `.csv`/`.json`, not hidden, not being written. */
export function isLandingFileName(name: string): boolean {
  if (name.startsWith('.')) return false;
  const lower = name.toLowerCase();
  if (lower.endsWith('.tmp') || lower.endsWith('.part') || lower.endsWith('.partial') || name.endsWith('~')) {
    return false;
  }
  return lower.endsWith('.csv') || lower.endsWith('.json');
}

export function contentTypeOfFileName(name: string): PayloadContentType {
  return name.toLowerCase().endsWith('.json') ? JSON_CONTENT_TYPE : CSV_CONTENT_TYPE;
}

/** The folder holding the `YYYY` folders: `<root>/raw` when it exists, else `root` itself. */
export async function resolveRawFolder(root: string): Promise<string> {
  const candidate = join(root, 'raw');
  try {
    if ((await stat(candidate)).isDirectory()) return candidate;
  } catch (error) {
    if (!isNotFound(error))
      throw new LandingError('cannot read the landing folder', { root }, { cause: error });
  }
  return root;
}

export interface ListedLandingFile {
  /** `YYYY/MM/DD/HH` */
  readonly hour: string;
  readonly name: string;
  readonly path: string;
  readonly absolutePath: string;
}

/**
 * Every landing file under `root`, in event-time order (hour folder, then file name). Folders that
 * do not fit the `YYYY/MM/DD/HH` layout are not part of it and are skipped.
 */
export async function listLandingFiles(
  root: string,
  options: { readonly fromHour?: string | null } = {},
): Promise<ListedLandingFile[]> {
  const rawFolder = await resolveRawFolder(root);
  return listUnder(rawFolder, options.fromHour ?? null);
}

async function listUnder(rawFolder: string, fromHour: string | null): Promise<ListedLandingFile[]> {
  const files: ListedLandingFile[] = [];
  const walk = async (folder: string, parts: string[]): Promise<void> => {
    const depth = parts.length;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch (error) {
      if (isNotFound(error)) return;
      throw new LandingError('cannot list a landing folder', { folder }, { cause: error });
    }
    if (depth === HOUR_LAYOUT.length) {
      const hour = parts.join('/');
      const names = entries.filter((e) => e.isFile() && isLandingFileName(e.name)).map((e) => e.name);
      names.sort(compareCodeUnits);
      for (const name of names) {
        files.push({ hour, name, path: `raw/${hour}/${name}`, absolutePath: join(folder, name) });
      }
      return;
    }
    const pattern = HOUR_LAYOUT[depth];
    const children = entries.filter((e) => e.isDirectory() && pattern.test(e.name)).map((e) => e.name);
    children.sort(compareCodeUnits);
    for (const child of children) {
      const next = [...parts, child];
      // Prune whole years/months/days that lie before the floor.
      if (fromHour !== null && next.join('/') < fromHour.slice(0, next.join('/').length)) continue;
      await walk(join(folder, child), next);
    }
  };
  await walk(rawFolder, []);
  return fromHour === null ? files : files.filter((f) => f.hour >= fromHour);
}

export class LandingSource {
  readonly #root: string;
  readonly #maxFiles: number;
  readonly #maxBytes: number;
  readonly #concurrency: number;
  readonly #minFileAgeMs: number;
  readonly #now: () => number;
  #rawFolder: string | null = null;
  /** hour → names processed in it. */
  #processed = new Map<string, Set<string>>();
  #floor: string | null = null;
  readonly #inFlight = new Set<string>();
  /** Files listed and not yet handed out, in path order. */
  #queue: ListedLandingFile[] = [];

  constructor(options: LandingSourceOptions) {
    this.#root = options.root;
    this.#maxFiles = options.maxFilesPerBatch ?? 256;
    this.#maxBytes = options.maxBytesPerBatch ?? 64 * 1024 * 1024;
    this.#concurrency = Math.max(1, options.readConcurrency ?? 8);
    this.#minFileAgeMs = options.minFileAgeMs ?? 0;
    this.#now = options.now ?? Date.now;
    if (options.ledger !== undefined) this.restoreLedger(options.ledger);
  }

  /**
   * The next files to process, in path order; empty when nothing new has landed. The files are in
   * flight until `markProcessed` (after commit) or `release` (on failure, to retry them).
   */
  async nextBatch(): Promise<LandingFile[]> {
    if (this.#queue.length === 0) await this.#relist();
    const batch: LandingFile[] = [];
    let bytes = 0;
    while (
      this.#queue.length > 0 &&
      batch.length < this.#maxFiles &&
      (batch.length === 0 || bytes < this.#maxBytes)
    ) {
      const take = Math.min(this.#concurrency, this.#maxFiles - batch.length, this.#queue.length);
      const group = this.#queue.splice(0, take);
      const read = await Promise.all(group.map((f) => this.#read(f)));
      for (const file of read) {
        if (file === null) continue;
        batch.push(file);
        this.#inFlight.add(file.path);
        bytes += file.bytes.byteLength;
      }
    }
    return batch;
  }

  /** Records files as processed: call once everything derived from them is committed. */
  markProcessed(paths: Iterable<string>): void {
    for (const path of paths) {
      this.#inFlight.delete(path);
      const { hour, name } = splitLandingPath(path);
      let names = this.#processed.get(hour);
      if (names === undefined) {
        names = new Set();
        this.#processed.set(hour, names);
      }
      names.add(name);
    }
  }

  /** Gives files back (their processing failed) so a later batch hands them out again. */
  release(paths: Iterable<string>): void {
    let released = false;
    for (const path of paths) released = this.#inFlight.delete(path) || released;
    // The queue was cut past these files; listing again puts them back in path order.
    if (released) this.#queue = [];
  }

  isProcessed(path: string): boolean {
    const { hour, name } = splitLandingPath(path);
    if (this.#floor !== null && hour < this.#floor) return true;
    return this.#processed.get(hour)?.has(name) ?? false;
  }

  /** The ledger as plain JSON, for the checkpoint. */
  ledgerState(): LandingLedgerState {
    const processed: Record<string, string[]> = {};
    for (const hour of [...this.#processed.keys()].sort(compareCodeUnits)) {
      processed[hour] = [...(this.#processed.get(hour) ?? [])].sort(compareCodeUnits);
    }
    return { version: 1, floor: this.#floor, processed };
  }

  /** Replaces the ledger with one from a checkpoint (validated: it may come from storage). */
  restoreLedger(state: unknown): void {
    const ledger = parseLedgerState(state);
    this.#floor = ledger.floor;
    this.#processed = new Map(
      Object.entries(ledger.processed).map(([hour, names]) => [hour, new Set(names)]),
    );
    this.#queue = [];
  }

  /**
   * Treats every hour before `hour` (`YYYY/MM/DD/HH`) as processed and forgets the names in it, so
   * the ledger stays small. Files landing late in those hours are then not read: choose `hour`
   * behind the allowed lateness.
   */
  compactBefore(hour: string): void {
    assertHour(hour);
    if (this.#floor !== null && hour <= this.#floor) return;
    this.#floor = hour;
    for (const key of [...this.#processed.keys()]) if (key < hour) this.#processed.delete(key);
    this.#queue = this.#queue.filter((f) => f.hour >= hour);
  }

  async #relist(): Promise<void> {
    this.#rawFolder ??= await resolveRawFolder(this.#root);
    const listed = await listUnder(this.#rawFolder, this.#floor);
    this.#queue = listed.filter((f) => !this.#inFlight.has(f.path) && !this.isProcessed(f.path));
    if (this.#minFileAgeMs > 0) {
      const cutoff = this.#now() - this.#minFileAgeMs;
      const settled: ListedLandingFile[] = [];
      for (const file of this.#queue) {
        try {
          if ((await stat(file.absolutePath)).mtimeMs <= cutoff) settled.push(file);
        } catch (error) {
          if (!isNotFound(error))
            throw new LandingError('cannot stat a landing file', { path: file.path }, { cause: error });
        }
      }
      this.#queue = settled;
    }
  }

  async #read(file: ListedLandingFile): Promise<LandingFile | null> {
    try {
      const bytes = await readFile(file.absolutePath);
      return {
        path: file.path,
        bytes,
        contentType: contentTypeOfFileName(file.name),
        receivedAt: hourEndOf(file.hour),
      };
    } catch (error) {
      // Moved away between listing and reading: nothing to process.
      if (isNotFound(error)) return null;
      throw new LandingError('cannot read a landing file', { path: file.path }, { cause: error });
    }
  }
}

/** Validates a ledger read back from a checkpoint. */
export function parseLedgerState(state: unknown): LandingLedgerState {
  const invalid = (why: string) => new LandingError(`invalid landing ledger: ${why}`, {});
  if (typeof state !== 'object' || state === null) throw invalid('not an object');
  const { version, floor, processed } = state as Record<string, unknown>;
  if (version !== 1) throw invalid(`unknown version ${JSON.stringify(version)}`);
  if (floor !== null && typeof floor !== 'string') throw invalid('floor must be null or an hour');
  if (typeof floor === 'string') assertHour(floor);
  if (typeof processed !== 'object' || processed === null || Array.isArray(processed)) {
    throw invalid('processed must be an object');
  }
  const out: Record<string, string[]> = {};
  for (const [hour, names] of Object.entries(processed)) {
    assertHour(hour);
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
      throw invalid(`processed[${hour}] must be a list of file names`);
    }
    out[hour] = names;
  }
  return { version: 1, floor: floor ?? null, processed: out };
}

/**
 * The end of the hour folder of a landing path (`…raw/YYYY/MM/DD/HH/<file>`), epoch ms UTC, or null
 * when the path does not follow the layout. Files in folder `HH` land during that hour, so its end
 * bounds their arrival: a reading stamped inside the hour is never judged to come from the future.
 */
export function landingReceivedAt(path: string): number | null {
  const match = /(?:^|\/)raw\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/[^/]+$/.exec(path.replace(/\\/g, '/'));
  if (match === null) return null;
  const end = hourEndOf(match[1]);
  return Number.isNaN(end) ? null : end;
}

function hourEndOf(hour: string): number {
  const [y, mo, d, h] = hour.split('/').map(Number);
  return Date.UTC(y, mo - 1, d, h) + 60 * 60 * 1000;
}

function splitLandingPath(path: string): { hour: string; name: string } {
  const match = /^raw\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/([^/]+)$/.exec(path);
  if (match === null) throw new LandingError('not a landing path (raw/YYYY/MM/DD/HH/<file>)', { path });
  return { hour: match[1], name: match[2] };
}

function assertHour(hour: string): void {
  if (!/^\d{4}\/\d{2}\/\d{2}\/\d{2}$/.test(hour))
    throw new LandingError('not an hour folder (YYYY/MM/DD/HH)', { hour });
}

/** Plain code-unit order: the same on every machine, unlike `localeCompare`. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ENOENT';
}
