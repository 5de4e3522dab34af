/**
 * A worker's lease on a local checkpoint (the files source): a lock file beside it naming the holder
 * (pid, host, nonce) and an epoch. It is stale once its holder's process is dead; a newer worker waits
 * for that (or for the holder to release it), or with `takeover` replaces it at once. The holder re-reads
 * the file before every guarded action and stops once the file names another holder.
 */

import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { sleep } from '../core/sleep.js';
import {
  describeHolder,
  FencedError,
  holderIsDead,
  type Lease,
  type LeaseHolder,
  thisHolder,
} from './lease.js';

export interface FileLeaseOptions {
  /** Replace a live holder's lock instead of waiting for its process to end. */
  readonly takeover?: boolean;
  /** After a takeover, how long to wait at most for the old holder to stop (default 30 s). */
  readonly takeoverWaitMs?: number;
  readonly onWait?: (holder: LeaseHolder, epoch: number) => void;
  readonly onTakeover?: (holder: LeaseHolder, epoch: number) => void;
  readonly signal?: AbortSignal;
}

interface LockRecord {
  readonly epoch: number;
  readonly holder: LeaseHolder;
}

/** The lock file of a checkpoint file. */
export function lockPathOf(checkpointPath: string): string {
  return `${checkpointPath}.lock`;
}

export async function acquireFileLease(path: string, options: FileLeaseOptions = {}): Promise<Lease> {
  const self = thisHolder();
  let waitedFor: string | undefined;
  await mkdir(dirname(path), { recursive: true });
  for (;;) {
    if (options.signal?.aborted) throw new Error(`stopped while waiting for the lock ${path}`);
    const current = await readLock(path);
    const record: LockRecord = { epoch: (typeof current === 'object' ? current.epoch : 0) + 1, holder: self };
    const tmp = `${path}.${self.nonce}`;
    await writeFile(tmp, JSON.stringify(record));
    try {
      if (current === 'missing') {
        // Atomic: fails when another worker created the lock in the meantime.
        const created = await link(tmp, path).then(
          () => true,
          (error: NodeJS.ErrnoException) => {
            if (error.code === 'EEXIST') return false;
            throw error;
          },
        );
        if (created) return new FileLease(path, record);
        continue;
      }
      const stale = current === undefined || holderIsDead(current.holder, self);
      if (current === undefined || stale || options.takeover === true) {
        await rename(tmp, path);
        const lease = new FileLease(path, record);
        if (!stale) {
          options.onTakeover?.(current.holder, record.epoch);
          // The old holder stops at its next pull, write or save; wait for its process to end.
          const deadline = performance.now() + (options.takeoverWaitMs ?? 30_000);
          while (!holderIsDead(current.holder, self) && performance.now() < deadline) await sleep(100);
        }
        // Two successors may both have seen a stale lock: the last rename wins, the other stops here.
        await lease.check('take over');
        return lease;
      }
      if (waitedFor !== current.holder.nonce) {
        waitedFor = current.holder.nonce;
        options.onWait?.(current.holder, current.epoch);
      }
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    await sleep(250, options.signal);
  }
}

/** The lock's record, `missing` without a lock, undefined when unreadable (a torn write: stale). */
async function readLock(path: string): Promise<LockRecord | 'missing' | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
  try {
    const record = JSON.parse(text) as LockRecord;
    return typeof record.holder?.nonce === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

class FileLease implements Lease {
  readonly name: string;
  readonly epoch: number;
  readonly #holder: LeaseHolder;
  #fenced: FencedError | undefined;
  #released = false;

  constructor(path: string, record: LockRecord) {
    this.name = path;
    this.epoch = record.epoch;
    this.#holder = record.holder;
  }

  get fenced(): boolean {
    return this.#fenced !== undefined;
  }

  async check(action: string): Promise<void> {
    if (this.#fenced === undefined) {
      const current = await readLock(this.name);
      if (typeof current !== 'object' || current.holder.nonce !== this.#holder.nonce) {
        const by =
          typeof current === 'object'
            ? `is now held by ${describeHolder(current.holder)} (epoch ${current.epoch}; this worker had epoch ${this.epoch})`
            : 'was removed';
        this.#fenced = new FencedError(
          `fenced: the checkpoint lock ${this.name} ${by} before "${action}". Another worker uses this ` +
            'checkpoint; this one stops without writing or saving anything more.',
          { lock: this.name, epoch: this.epoch },
        );
      }
    }
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const current = await readLock(this.name).catch(() => undefined);
    if (typeof current === 'object' && current.holder.nonce === this.#holder.nonce) {
      await unlink(this.name).catch(() => undefined);
    }
  }
}
