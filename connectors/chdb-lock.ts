/**
 * The owner file of an embedded chDB folder: which process holds it and where that process answers
 * queries. chDB locks its data directory to one process, so a second reader (`greenstream sql`, a
 * notebook) cannot open the folder while a worker runs; the owner file tells it where to send its
 * query instead.
 *
 * `<dir>/greenstream-owner.json` holds the endpoint URL, the pid and host name, the start time and a
 * random nonce. The worker writes it once it holds the folder and serves queries, and removes it when it
 * stops cleanly. A worker that was killed leaves it behind: a reader treats it as stale when the pid is
 * not alive on this host, or when the endpoint does not answer `/ping` with the same nonce (the pid or
 * the port was reused).
 */

import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GreenStreamError } from '../core/errors.js';

export const OWNER_FILE = 'greenstream-owner.json';
/** Response header of the query endpoint's `/ping` carrying the owner's nonce. */
export const OWNER_NONCE_HEADER = 'x-greenstream-owner';

export interface ChdbOwner {
  /** `http://host:port` of the worker's query endpoint. */
  readonly endpoint: string;
  readonly pid: number;
  readonly hostname: string;
  readonly startedAt: string;
  readonly nonce: string;
}

export interface OwnerLock {
  readonly owner: ChdbOwner;
  readonly path: string;
  /** Removes the file if it is still this owner's; idempotent, never throws. */
  release(): void;
}

export class OwnerLockError extends GreenStreamError<{ readonly path: string }> {
  override readonly name = 'OwnerLockError';
  constructor(message: string, context: { readonly path: string }, options?: { readonly cause?: unknown }) {
    super(message, { retryable: false, context, cause: options?.cause });
  }
}

/** Writes the owner file (atomically: a temporary file renamed over it) and returns its handle. */
export function writeOwnerLock(dir: string, endpoint: string, nonce: string = randomUUID()): OwnerLock {
  const path = join(dir, OWNER_FILE);
  const owner: ChdbOwner = {
    endpoint,
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
    nonce,
  };
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${JSON.stringify(owner, null, 2)}\n`, { mode: 0o644 });
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new OwnerLockError(
      `cannot write the chDB owner file ${path}: ${(error as Error).message}`,
      { path },
      {
        cause: error,
      },
    );
  }
  let released = false;
  return {
    owner,
    path,
    release() {
      if (released) return;
      released = true;
      // Another worker may have taken the folder over since (after this one lost it): leave its file.
      if (readOwnerLock(dir)?.nonce === nonce) rmSync(path, { force: true });
    },
  };
}

/** The owner file's content, or undefined when there is none or it cannot be read as one. */
export function readOwnerLock(dir: string): ChdbOwner | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, OWNER_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<ChdbOwner>;
    if (
      typeof value.endpoint === 'string' &&
      /^https?:\/\//.test(value.endpoint) &&
      Number.isInteger(value.pid) &&
      typeof value.hostname === 'string' &&
      typeof value.startedAt === 'string' &&
      typeof value.nonce === 'string'
    ) {
      return value as ChdbOwner;
    }
  } catch {
    // A torn or foreign file is no owner.
  }
  return undefined;
}

/** Whether the owner's process may be alive: false only when it is on this host and gone. */
export function ownerProcessAlive(owner: ChdbOwner): boolean {
  if (owner.hostname !== hostname()) return true;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export type OwnerStatus =
  | { readonly state: 'none' }
  | { readonly state: 'stale'; readonly owner: ChdbOwner; readonly why: string }
  | { readonly state: 'live'; readonly owner: ChdbOwner };

/**
 * Finds the worker serving the folder: the owner file, its process alive, and its endpoint answering
 * `/ping` with the file's nonce within `timeoutMs`.
 */
export async function findFolderOwner(dir: string, timeoutMs = 2_000): Promise<OwnerStatus> {
  const owner = readOwnerLock(dir);
  if (owner === undefined) return { state: 'none' };
  if (!ownerProcessAlive(owner)) return { state: 'stale', owner, why: `process ${owner.pid} is gone` };
  try {
    const response = await fetch(`${owner.endpoint}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    if (response.headers.get(OWNER_NONCE_HEADER) !== owner.nonce) {
      return { state: 'stale', owner, why: `${owner.endpoint} answers for another owner` };
    }
    return { state: 'live', owner };
  } catch (error) {
    return {
      state: 'stale',
      owner,
      why: `${owner.endpoint} does not answer (${(error as Error).cause ?? (error as Error).message})`,
    };
  }
}
