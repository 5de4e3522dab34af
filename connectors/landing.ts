/**
 * The landing folder source: files the simulator (or a meter gateway) drops under
 * `raw/YYYY/MM/DD/HH/<name>.csv|json`, read in event-time (path) order, each processed once, and the
 * dead-letter copies of the files it could not take.
 *
 * "Once" is kept by a ledger of processed files that is part of the pipeline checkpoint: a file is
 * marked processed only after everything derived from it is committed (`markProcessed`), and a
 * restarted worker restores the ledger from the checkpoint and carries on. Files handed out but not
 * yet marked are in flight: not handed out again by this instance, redone after a crash (the sinks
 * are idempotent on record id).
 *
 * Nothing in the folder vanishes: an entry the source cannot take (a symbolic link, a name that is not
 * UTF-8, a file it may not read, one larger than the payload limit, a FIFO) is handed out `refused`
 * with the reason, for the caller to dead-letter. Sizes are known from `stat` before anything is read,
 * and a batch is bounded by bytes as well as by files.
 */

import { constants, type Dirent, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, rename, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import {
  CSV_CONTENT_TYPE,
  DEFAULT_MAX_PAYLOAD_BYTES,
  JSON_CONTENT_TYPE,
  type PayloadContentType,
} from '../codecs/decode.js';
import { GreenStreamError } from '../core/errors.js';

/** A landing file or folder that cannot be read or written; a retry meets the same file. */
export class LandingError extends GreenStreamError<Readonly<Record<string, string | number>>> {
  override readonly name = 'LandingError';
  constructor(message: string, context: Record<string, string | number>, options?: { cause?: unknown }) {
    super(message, { retryable: false, context, cause: options?.cause });
  }
}

export interface LandingFile {
  /** `raw/YYYY/MM/DD/HH/<name>`, relative to the landing folder: the records' `source`. */
  readonly path: string;
  /** Empty when `refused`. */
  readonly bytes: Buffer;
  /** From the file extension. */
  readonly contentType: PayloadContentType;
  /** The end of the file's hour folder, epoch ms UTC: the latest it can have landed (`RawReading.receivedAt`). */
  readonly receivedAt: number;
  /**
   * Why the entry was not read (a symbolic link, a name that is not UTF-8, too large, unreadable): the
   * caller dead-letters it with this reason. A refused folder's path ends with `/`.
   */
  readonly refused?: string;
}

/**
 * The processed-file ledger as plain JSON, for the checkpoint. `processed` groups file names by
 * hour folder (`YYYY/MM/DD/HH`); every file in an hour before `floor` counts as processed, except one
 * whose status changed after `compactedAt` (it landed after the floor moved past its hour).
 */
export interface LandingLedgerState {
  readonly version: 1;
  readonly floor: string | null;
  readonly processed: Readonly<Record<string, readonly string[]>>;
  /** Epoch ms: every file below `floor` that existed then was processed. Absent: the floor was set by hand. */
  readonly compactedAt?: number;
}

export interface LandingSourceOptions {
  /** The landing folder holding `raw/`, or the `raw/` folder itself. */
  readonly root: string;
  /** A ledger restored from a checkpoint. */
  readonly ledger?: LandingLedgerState;
  /** Default 256. */
  readonly maxFilesPerBatch?: number;
  /** A batch stops growing before it would pass this many bytes (it always holds at least one file). Default 64 MiB. */
  readonly maxBytesPerBatch?: number;
  /** A larger file is refused by its `stat` size, unread. Default the decoder's payload limit (8 MiB). */
  readonly maxFileBytes?: number;
  /** Files read in parallel. Default 8. */
  readonly readConcurrency?: number;
  /**
   * Skip files modified less than this long ago, for writers that do not write under a temporary
   * name first. Default 0 (writers are expected to write `.tmp` or dot files, then rename).
   */
  readonly minFileAgeMs?: number;
  /**
   * Hours this far behind the newest processed hour, with nothing left in them, collapse into the
   * ledger's floor at `markProcessed`: the ledger stays small and polls walk only the hours after it.
   * Default 48 h; 0 turns it off.
   */
  readonly settleMs?: number;
  /**
   * How often a poll also walks the hours below the floor for files that landed there after it moved
   * (they are then processed like any other). Default 10 minutes.
   */
  readonly rescanBelowFloorMs?: number;
  /** Clock for `minFileAgeMs`, compaction and rescans; defaults to `Date.now`. */
  readonly now?: () => number;
}

const HOUR_MS = 3_600_000;
const HOUR_LAYOUT = [/^\d{4}$/, /^\d{2}$/, /^\d{2}$/, /^\d{2}$/] as const;
const utf8 = new TextDecoder('utf-8', { fatal: true });

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
  /** The file name; a name that is not UTF-8 is spelled with `%XX` escapes for its bytes. */
  readonly name: string;
  readonly path: string;
  /** A Buffer when the name is not UTF-8 (the only way to open it). */
  readonly absolutePath: string | Buffer;
  /** Why the entry cannot be read as a landing file; see `LandingFile.refused`. */
  readonly refused?: string;
}

/**
 * Every landing file under `root`, in event-time order (hour folder, then file name). Folders that
 * do not fit the `YYYY/MM/DD/HH` layout are not part of it and are skipped; entries that fit it but
 * cannot be taken (symbolic links, names that are not UTF-8, FIFOs) are listed with `refused`.
 */
export async function listLandingFiles(
  root: string,
  options: { readonly fromHour?: string | null } = {},
): Promise<ListedLandingFile[]> {
  const rawFolder = await resolveRawFolder(root);
  return listUnder(rawFolder, { fromHour: options.fromHour ?? null });
}

interface ListOptions {
  /** Only hours at or after this one. */
  readonly fromHour?: string | null;
  /** Only hours before this one. */
  readonly beforeHour?: string | null;
  /** Hour folders not modified after this (epoch ms) are skipped unread. */
  readonly changedAfter?: number;
}

async function listUnder(rawFolder: string, options: ListOptions): Promise<ListedLandingFile[]> {
  const fromHour = options.fromHour ?? null;
  const beforeHour = options.beforeHour ?? null;
  const files: ListedLandingFile[] = [];
  const walk = async (folder: string, parts: string[]): Promise<void> => {
    const depth = parts.length;
    let entries: Dirent<Buffer>[];
    try {
      entries = await readdir(folder, { withFileTypes: true, encoding: 'buffer' });
    } catch (error) {
      if (isNotFound(error)) return;
      throw new LandingError('cannot list a landing folder', { folder }, { cause: error });
    }
    if (depth === HOUR_LAYOUT.length) {
      const hour = parts.join('/');
      const listed: ListedLandingFile[] = [];
      for (const e of entries) {
        const decoded = decodeName(e.name);
        const name = decoded ?? escapeName(e.name);
        if (!isLandingFileName(name)) continue;
        const path = `raw/${hour}/${name}`;
        const absolutePath =
          decoded === null ? Buffer.concat([Buffer.from(folder + sep), e.name]) : join(folder, name);
        let refused: string | undefined;
        if (decoded === null) refused = 'file name is not valid UTF-8';
        else if (e.isSymbolicLink()) refused = 'symbolic link: landing files are not followed';
        else if (!e.isFile()) refused = 'not a regular file';
        listed.push({ hour, name, path, absolutePath, ...(refused === undefined ? {} : { refused }) });
      }
      listed.sort((a, b) => compareCodeUnits(a.name, b.name));
      for (const f of listed) files.push(f);
      return;
    }
    const pattern = HOUR_LAYOUT[depth]!;
    const children: { name: string; link: boolean }[] = [];
    for (const e of entries) {
      const name = decodeName(e.name);
      if (name === null || !pattern.test(name)) continue;
      if (e.isDirectory()) children.push({ name, link: false });
      else if (e.isSymbolicLink()) children.push({ name, link: true });
    }
    children.sort((a, b) => compareCodeUnits(a.name, b.name));
    for (const child of children) {
      const next = [...parts, child.name];
      const prefix = next.join('/');
      // Prune whole years/months/days outside [fromHour, beforeHour).
      if (fromHour !== null && prefix < fromHour.slice(0, prefix.length)) continue;
      if (beforeHour !== null && prefix > beforeHour.slice(0, prefix.length)) continue;
      if (child.link) {
        const path = `raw/${prefix}/`;
        files.push({
          hour: hourPrefixOf(next),
          name: '',
          path,
          absolutePath: join(folder, child.name),
          refused: 'symbolic link to a folder: landing folders are not followed',
        });
        continue;
      }
      if (next.length === HOUR_LAYOUT.length) {
        if (beforeHour !== null && prefix >= beforeHour) continue;
        if (options.changedAfter !== undefined) {
          try {
            if ((await stat(join(folder, child.name))).mtimeMs <= options.changedAfter) continue;
          } catch (error) {
            if (isNotFound(error)) continue;
            throw new LandingError('cannot stat a landing folder', { folder }, { cause: error });
          }
        }
      }
      await walk(join(folder, child.name), next);
    }
  };
  await walk(rawFolder, []);
  return fromHour === null ? files : files.filter((f) => f.hour >= fromHour);
}

export class LandingSource {
  readonly #root: string;
  readonly #maxFiles: number;
  readonly #maxBytes: number;
  readonly #maxFileBytes: number;
  readonly #concurrency: number;
  readonly #minFileAgeMs: number;
  readonly #settleMs: number;
  readonly #rescanMs: number;
  readonly #now: () => number;
  #rawFolder: string | null = null;
  /** hour → names processed in it. */
  #processed = new Map<string, Set<string>>();
  #floor: string | null = null;
  #compactedAt: number | undefined;
  readonly #inFlight = new Set<string>();
  /** Files listed and not yet handed out, in path order. */
  #queue: ListedLandingFile[] = [];
  /** When the last listing of every hour from the floor on began. */
  #listedAt = Number.NEGATIVE_INFINITY;
  /** When the hours below the floor were last walked. */
  #rescannedAt = Number.NEGATIVE_INFINITY;
  /** Refused folders already handed out by this instance (they have no place in the file ledger). */
  readonly #reportedFolders = new Set<string>();

  constructor(options: LandingSourceOptions) {
    this.#root = options.root;
    this.#maxFiles = options.maxFilesPerBatch ?? 256;
    this.#maxBytes = options.maxBytesPerBatch ?? 64 * 1024 * 1024;
    this.#maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.#concurrency = Math.max(1, options.readConcurrency ?? 8);
    this.#minFileAgeMs = options.minFileAgeMs ?? 0;
    this.#settleMs = options.settleMs ?? 48 * HOUR_MS;
    this.#rescanMs = options.rescanBelowFloorMs ?? 10 * 60_000;
    this.#now = options.now ?? Date.now;
    if (options.ledger !== undefined) this.restoreLedger(options.ledger);
  }

  /**
   * The next files to process, in path order; empty when nothing new has landed. The files are in
   * flight until `markProcessed` (after commit) or `release` (on failure, to retry them). Each file's
   * size is known from `stat` before it is read: the batch stops before it would pass its byte budget,
   * and a file over the size limit is handed out refused, unread.
   */
  async nextBatch(): Promise<LandingFile[]> {
    if (this.#queue.length === 0) await this.#relist();
    const batch: LandingFile[] = [];
    let bytes = 0;
    while (this.#queue.length > 0 && batch.length < this.#maxFiles) {
      // Plan a group by stat size, then read it in parallel.
      const group: { file: ListedLandingFile; size: number; refused?: string }[] = [];
      while (
        this.#queue.length > 0 &&
        group.length < this.#concurrency &&
        batch.length + group.length < this.#maxFiles
      ) {
        const file = this.#queue[0]!;
        const sized = await this.#sizeOf(file);
        if (sized === null) {
          this.#queue.shift();
          continue;
        }
        const cost = sized.refused === undefined ? sized.size : 0;
        if (batch.length + group.length > 0 && bytes + cost > this.#maxBytes) break;
        this.#queue.shift();
        bytes += cost;
        group.push({ file, ...sized });
      }
      if (group.length === 0) break;
      const read = await Promise.all(
        group.map((g) => (g.refused === undefined ? this.#read(g.file) : refusedFile(g.file, g.refused))),
      );
      for (const file of read) {
        if (file === null) continue;
        batch.push(file);
        if (file.path.endsWith('/')) this.#reportedFolders.add(file.path);
        else this.#inFlight.add(file.path);
      }
      if (bytes >= this.#maxBytes) break;
    }
    return batch;
  }

  /**
   * Records files as processed: call once everything derived from them is committed. Then collapses
   * settled hours into the floor (see `settleMs`).
   */
  markProcessed(paths: Iterable<string>): void {
    let newest: string | null = null;
    for (const path of paths) {
      if (path.endsWith('/')) continue;
      this.#inFlight.delete(path);
      const { hour, name } = splitLandingPath(path);
      let names = this.#processed.get(hour);
      if (names === undefined) {
        names = new Set();
        this.#processed.set(hour, names);
      }
      names.add(name);
      if (newest === null || hour > newest) newest = hour;
    }
    if (newest !== null && this.#settleMs > 0) this.#compactSettled();
  }

  /** Gives files back (their processing failed) so a later batch hands them out again. */
  release(paths: Iterable<string>): void {
    let released = false;
    for (const path of paths) {
      if (path.endsWith('/')) released = this.#reportedFolders.delete(path) || released;
      else released = this.#inFlight.delete(path) || released;
    }
    // The queue was cut past these files; listing again puts them back in path order.
    if (released) this.#queue = [];
  }

  isProcessed(path: string): boolean {
    const { hour, name } = splitLandingPath(path);
    if (this.#processed.get(hour)?.has(name)) return true;
    return this.#floor !== null && hour < this.#floor;
  }

  /** The ledger as plain JSON, for the checkpoint. */
  ledgerState(): LandingLedgerState {
    const processed: Record<string, string[]> = {};
    for (const hour of [...this.#processed.keys()].sort(compareCodeUnits)) {
      processed[hour] = [...(this.#processed.get(hour) ?? [])].sort(compareCodeUnits);
    }
    return {
      version: 1,
      floor: this.#floor,
      processed,
      ...(this.#compactedAt === undefined ? {} : { compactedAt: this.#compactedAt }),
    };
  }

  /** Replaces the ledger with one from a checkpoint (validated: it may come from storage). */
  restoreLedger(state: unknown): void {
    const ledger = parseLedgerState(state);
    this.#floor = ledger.floor;
    this.#compactedAt = ledger.compactedAt;
    this.#processed = new Map(
      Object.entries(ledger.processed).map(([hour, names]) => [hour, new Set(names)]),
    );
    this.#queue = [];
    this.#rescannedAt = Number.NEGATIVE_INFINITY;
  }

  /**
   * Treats every hour before `hour` (`YYYY/MM/DD/HH`) as processed and forgets the names in it, so
   * the ledger stays small. Files landing late in those hours are then not read unless `compactedAt`
   * is known (automatic compaction sets it; see `rescanBelowFloorMs`): choose `hour` behind the allowed
   * lateness.
   */
  compactBefore(hour: string, compactedAt?: number): void {
    assertHour(hour);
    if (this.#floor !== null && hour <= this.#floor) return;
    this.#floor = hour;
    this.#compactedAt = compactedAt;
    for (const key of [...this.#processed.keys()]) if (key < hour) this.#processed.delete(key);
    this.#queue = this.#queue.filter((f) => f.hour >= hour);
  }

  /**
   * Moves the floor to `settleMs` before the newest processed hour when no file below it is waiting
   * or in flight. Every file below it that existed when the last full listing began is processed, so
   * that listing's start is the compaction time: a file changed after it is found by the rescan.
   */
  #compactSettled(): void {
    let newest: string | null = null;
    for (const hour of this.#processed.keys()) if (newest === null || hour > newest) newest = hour;
    if (newest === null || this.#listedAt === Number.NEGATIVE_INFINITY) return;
    const candidate = hourOfEpoch(hourStartOf(newest) - this.#settleMs);
    if (this.#floor !== null && candidate <= this.#floor) return;
    // Nothing to collapse yet: the ledger holds no hour below the candidate.
    if (![...this.#processed.keys()].some((hour) => hour < candidate)) return;
    for (const path of this.#inFlight) if (splitLandingPath(path).hour < candidate) return;
    for (const f of this.#queue) if (f.hour < candidate) return;
    this.compactBefore(candidate, this.#listedAt);
    // That listing covered every hour: the next walk below the floor is due a rescan interval after it.
    this.#rescannedAt = Math.max(this.#rescannedAt, this.#listedAt);
  }

  async #relist(): Promise<void> {
    this.#rawFolder ??= await resolveRawFolder(this.#root);
    const startedAt = this.#now();
    const listed = await listUnder(this.#rawFolder, { fromHour: this.#floor });
    this.#listedAt = startedAt;
    let below: ListedLandingFile[] = [];
    if (this.#floor !== null && startedAt - this.#rescannedAt >= this.#rescanMs) {
      below = await this.#landedBelowFloor();
      this.#rescannedAt = startedAt;
    }
    const late = new Set(below);
    this.#queue = [...below, ...listed].filter(
      (f) =>
        !this.#inFlight.has(f.path) &&
        !this.#reportedFolders.has(f.path) &&
        (f.path.endsWith('/') || late.has(f) || !this.isProcessed(f.path)),
    );
    if (this.#minFileAgeMs > 0) {
      const cutoff = this.#now() - this.#minFileAgeMs;
      const settled: ListedLandingFile[] = [];
      for (const file of this.#queue) {
        try {
          if (file.refused !== undefined || (await lstat(file.absolutePath)).mtimeMs <= cutoff)
            settled.push(file);
        } catch (error) {
          if (!isNotFound(error))
            throw new LandingError('cannot stat a landing file', { path: file.path }, { cause: error });
        }
      }
      this.#queue = settled;
    }
  }

  /** Files below the floor that changed after it was set and are not in the ledger: late landings. */
  async #landedBelowFloor(): Promise<ListedLandingFile[]> {
    const since = this.#compactedAt;
    if (since === undefined || this.#rawFolder === null) return [];
    const listed = await listUnder(this.#rawFolder, { beforeHour: this.#floor, changedAfter: since });
    const late: ListedLandingFile[] = [];
    for (const f of listed) {
      if (f.path.endsWith('/') || this.#processed.get(f.hour)?.has(f.name)) continue;
      try {
        if ((await lstat(f.absolutePath)).ctimeMs > since) late.push(f);
      } catch (error) {
        if (!isNotFound(error)) late.push({ ...f, refused: `cannot stat: ${errorCode(error)}` });
      }
    }
    return late;
  }

  /** The file's size by `lstat`, a refusal when it cannot be taken, null when it is gone. */
  async #sizeOf(file: ListedLandingFile): Promise<{ size: number; refused?: string } | null> {
    if (file.refused !== undefined) return { size: 0, refused: file.refused };
    let info: Stats;
    try {
      info = await lstat(file.absolutePath);
    } catch (error) {
      if (isNotFound(error)) return null;
      return { size: 0, refused: `cannot stat the file: ${errorCode(error)}` };
    }
    if (info.isSymbolicLink()) return { size: 0, refused: 'symbolic link: landing files are not followed' };
    if (!info.isFile()) return { size: 0, refused: 'not a regular file' };
    if (info.size > this.#maxFileBytes) {
      return {
        size: 0,
        refused: `file of ${info.size} bytes exceeds the limit of ${this.#maxFileBytes} bytes (not read)`,
      };
    }
    return { size: info.size };
  }

  async #read(file: ListedLandingFile): Promise<LandingFile | null> {
    let handle: import('node:fs/promises').FileHandle;
    try {
      // O_NOFOLLOW: a file swapped for a link after listing is not followed; O_NONBLOCK: a FIFO does not hang.
      handle = await open(
        file.absolutePath,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch (error) {
      // Moved away between listing and reading: nothing to process.
      if (isNotFound(error)) return null;
      return refusedFile(file, `cannot open the file: ${errorCode(error)}`);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return refusedFile(file, 'not a regular file');
      if (info.size > this.#maxFileBytes) {
        return refusedFile(
          file,
          `file of ${info.size} bytes exceeds the limit of ${this.#maxFileBytes} bytes (not read)`,
        );
      }
      // Read at most one byte past the limit: a file growing after `stat` cannot take more memory.
      const buffer = Buffer.allocUnsafe(Math.min(info.size, this.#maxFileBytes) + 1);
      let length = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
        if (length === buffer.length) break;
      }
      if (length > this.#maxFileBytes) {
        return refusedFile(file, `file grew past the limit of ${this.#maxFileBytes} bytes while read`);
      }
      return {
        path: file.path,
        bytes: buffer.subarray(0, length),
        contentType: contentTypeOfFileName(file.name),
        receivedAt: hourEndOf(file.hour),
      };
    } catch (error) {
      return refusedFile(file, `cannot read the file: ${errorCode(error)}`);
    } finally {
      await handle.close();
    }
  }
}

function refusedFile(file: ListedLandingFile, reason: string): LandingFile {
  return {
    path: file.path,
    bytes: Buffer.alloc(0),
    contentType: contentTypeOfFileName(file.name),
    receivedAt: hourEndOf(file.hour),
    refused: reason,
  };
}

/**
 * Copies a file the pipeline could not take to `<dir>/<path>` (when there are bytes to copy) with a
 * `.reason.json` beside it naming the path and the reason. Every folder and file is created without
 * following symbolic links, and the target's real path must lie inside `dir`: a `dead-letter/raw`
 * replaced by a link cannot make the worker write outside the landing folder.
 */
export async function deadLetterLandingFile(
  dir: string,
  path: string,
  bytes: Uint8Array,
  reason: string,
): Promise<void> {
  const parts = path.replace(/\/+$/, '').split('/');
  if (parts.some((part) => part === '..' || part === '.' || part === '')) {
    throw new LandingError('refusing a dead-letter path outside the dead-letter folder', { path });
  }
  const name = parts.pop() as string;
  // `dir` and every folder under it are made (or checked) one by one, never through a symbolic link.
  const folder = await mkdirNoFollow(dirname(dir), [basename(dir), ...parts]);
  const [realParent, realFolder] = await Promise.all([realpath(dirname(dir)), realpath(folder)]);
  const rel = relative(realParent, realFolder);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new LandingError('a dead-letter folder leads outside the landing folder', { folder, realFolder });
  }
  const target = join(folder, name);
  if (bytes.byteLength > 0 && !path.endsWith('/')) {
    await writeNoFollow(`${target}.partial`, bytes);
    await rename(`${target}.partial`, target);
  }
  await writeNoFollow(`${target}.reason.json`, `${JSON.stringify({ source: path, reason })}\n`);
}

/** Creates `base/parts…` folder by folder; a part that exists as a symbolic link (or a file) is refused. */
async function mkdirNoFollow(base: string, parts: readonly string[]): Promise<string> {
  let folder = base;
  for (const part of parts) {
    folder = join(folder, part);
    try {
      await mkdir(folder);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
    }
    const info = await lstat(folder);
    if (!info.isDirectory()) {
      throw new LandingError(
        `refusing to write a dead-letter copy through ${info.isSymbolicLink() ? 'a symbolic link' : 'a file'}`,
        { folder },
      );
    }
  }
  return folder;
}

/** Writes a file, refusing to follow a symbolic link planted at its name. */
async function writeNoFollow(path: string, data: Uint8Array | string): Promise<void> {
  const handle = await open(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

/** Validates a ledger read back from a checkpoint. */
export function parseLedgerState(state: unknown): LandingLedgerState {
  const invalid = (why: string) => new LandingError(`invalid landing ledger: ${why}`, {});
  if (typeof state !== 'object' || state === null) throw invalid('not an object');
  const { version, floor, processed, compactedAt } = state as Record<string, unknown>;
  if (version !== 1) throw invalid(`unknown version ${JSON.stringify(version)}`);
  if (floor !== null && typeof floor !== 'string') throw invalid('floor must be null or an hour');
  if (typeof floor === 'string') assertHour(floor);
  if (compactedAt !== undefined && (typeof compactedAt !== 'number' || !Number.isFinite(compactedAt))) {
    throw invalid('compactedAt must be epoch milliseconds');
  }
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
  return {
    version: 1,
    floor: floor ?? null,
    processed: out,
    ...(compactedAt === undefined ? {} : { compactedAt: compactedAt as number }),
  };
}

/**
 * The end of the hour folder of a landing path (`…raw/YYYY/MM/DD/HH/<file>`), epoch ms UTC, or null
 * when the path does not follow the layout. Files in folder `HH` land during that hour, so its end
 * bounds their arrival: a reading stamped inside the hour is never judged to come from the future.
 * The folder is the writer's claim: the caller caps it with its own clock.
 */
export function landingReceivedAt(path: string): number | null {
  const match = /(?:^|\/)raw\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/[^/]+$/.exec(path.replace(/\\/g, '/'));
  if (match === null) return null;
  const end = hourEndOf(match[1]!);
  return Number.isNaN(end) ? null : end;
}

function hourStartOf(hour: string): number {
  const [y, mo, d, h] = hour.split('/').map(Number) as [number, number, number, number];
  return Date.UTC(y, mo - 1, d, h);
}

function hourEndOf(hour: string): number {
  return hourStartOf(hour) + HOUR_MS;
}

function hourOfEpoch(ms: number): string {
  const iso = new Date(Math.max(0, ms)).toISOString();
  return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}`;
}

/** The hour a refused folder sorts under: its prefix padded with the earliest hour. */
function hourPrefixOf(parts: readonly string[]): string {
  return [...parts, '01', '01', '00'].slice(0, 4).join('/');
}

function splitLandingPath(path: string): { hour: string; name: string } {
  const match = /^raw\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/([^/]+)$/.exec(path);
  if (match === null) throw new LandingError('not a landing path (raw/YYYY/MM/DD/HH/<file>)', { path });
  return { hour: match[1]!, name: match[2]! };
}

function assertHour(hour: string): void {
  if (!/^\d{4}\/\d{2}\/\d{2}\/\d{2}$/.test(hour))
    throw new LandingError('not an hour folder (YYYY/MM/DD/HH)', { hour });
}

/** The name as UTF-8 text, or null when its bytes are not UTF-8. */
function decodeName(name: Buffer): string | null {
  try {
    return utf8.decode(name);
  } catch {
    return null;
  }
}

/** A name that is not UTF-8, spelled in ASCII: printable bytes as they are, others (and `%`) as `%XX`. */
function escapeName(name: Buffer): string {
  let out = '';
  for (const b of name) {
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x25 && b !== 0x2f
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Plain code-unit order: the same on every machine, unlike `localeCompare`. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ENOENT';
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}
