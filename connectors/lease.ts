/**
 * What a worker's claim on its id is (a lease) and who holds it: the contract the KV lease
 * (`jetstream-lease.ts`) and the lock file (`file-lease.ts`) share, the error a worker stops with once
 * a newer one holds its id, and how a holder on this machine is known to be dead.
 */

import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { GreenStreamError } from '../core/errors.js';

/** A claim on a worker id. Only the holder of the newest epoch may touch the consumer or the stores. */
export interface Lease {
  /** What is leased (the KV key or the lock file), for messages. */
  readonly name: string;
  /** Bumped by every new holder. */
  readonly epoch: number;
  /**
   * Resolves while this worker still holds the lease; throws `FencedError` once a newer holder took it
   * (or, for a renewed lease, once it went unrenewed for a whole lease period). Called before every write
   * of outputs, acknowledgement, pull and checkpoint save.
   */
  check(action: string): Promise<void>;
  /** A check (or a renewal) found a newer holder. */
  readonly fenced: boolean;
  /** Gives the lease up (a successor starts at once); does nothing once fenced. Idempotent. */
  release(): Promise<void>;
}

/** Who holds a lease: enough to tell a dead holder on this machine, and to name it in messages. */
export interface LeaseHolder {
  readonly host: string;
  /** The pid namespace: two containers sharing a hostname do not share pids. */
  readonly pidNs: string;
  readonly pid: number;
  /** Tells two holders apart whatever else they share. */
  readonly nonce: string;
}

export function thisHolder(): LeaseHolder {
  let pidNs = '';
  try {
    pidNs = readlinkSync('/proc/self/ns/pid');
  } catch {
    // No procfs (macOS): the hostname alone must do.
  }
  return { host: hostname(), pidNs, pid: process.pid, nonce: randomBytes(8).toString('hex') };
}

/** True only when the holder ran on this machine, in this pid namespace, and its process is gone. */
export function holderIsDead(holder: LeaseHolder, self: LeaseHolder = thisHolder()): boolean {
  if (holder.host !== self.host || holder.pidNs !== self.pidNs || holder.pid === self.pid) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists but is not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export function describeHolder(holder: LeaseHolder): string {
  return `pid ${holder.pid} on ${holder.host}`;
}

/**
 * A newer worker holds this worker's id: this one must stop without writing, acknowledging or saving
 * anything more. Not retryable: running again only makes sense once the other worker is gone.
 */
export class FencedError extends GreenStreamError<Readonly<Record<string, string | number>>> {
  override readonly name = 'FencedError';
  constructor(message: string, context: Readonly<Record<string, string | number>>) {
    super(message, { retryable: false, context });
  }
}
