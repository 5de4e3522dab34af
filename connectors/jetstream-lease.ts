/**
 * A worker's lease on its id in the NATS KV bucket: the key holds an epoch, the holder and the lease
 * period, and is renewed by compare-and-set on its revision while the worker runs.
 *
 * A newer worker waits until the lease lapses (released, its holder's process dead on this machine, or
 * its revision unchanged for a whole period as this worker's own clock measures it, so no clocks are
 * compared across machines) and then bumps the epoch; with `takeover` it bumps the epoch at once and
 * waits one lease period before it touches anything. Either way the old holder has stopped acting by
 * then: it stops at the first guarded action after it sees the new epoch, and on its own once its lease
 * has gone unrenewed for a period.
 */
import { sleep } from '../core/sleep.js';
import type { CheckpointKv } from './jetstream-kv.js';
import {
  describeHolder,
  FencedError,
  holderIsDead,
  type Lease,
  type LeaseHolder,
  thisHolder,
} from './lease.js';

export interface KvLeaseOptions {
  /** How long an unrenewed lease stays valid; renewed every third of it. */
  readonly ttlMs: number;
  /** Bump the epoch over a live holder instead of waiting for its lease to lapse. */
  readonly takeover?: boolean;
  /** Called once per holder this worker waits for. */
  readonly onWait?: (holder: LeaseHolder, epoch: number, ttlMs: number) => void;
  /** Called when the lease is taken over a live holder, before the wait of one lease period. */
  readonly onTakeover?: (holder: LeaseHolder, epoch: number, ttlMs: number) => void;
  /** Stops waiting (the acquisition then fails). */
  readonly signal?: AbortSignal;
}

/** The value under the lease key. */
interface LeaseRecord {
  readonly epoch: number;
  readonly holder: LeaseHolder;
  readonly ttlMs: number;
  readonly released?: boolean;
}

type LeaseKv = Pick<CheckpointKv, 'get' | 'compareAndSet'>;

/** The lease key of a checkpoint key: beside it in the same bucket. */
export function leaseKey(checkpointKey: string): string {
  return `${checkpointKey}.lease`;
}

export async function acquireKvLease(kv: LeaseKv, key: string, options: KvLeaseOptions): Promise<Lease> {
  const ttlMs = options.ttlMs;
  const self = thisHolder();
  /** The revision being watched for a lapse, and since when (this clock) it has not moved. */
  let watched: { revision: number; since: number } | undefined;
  for (;;) {
    if (options.signal?.aborted) {
      throw new Error(`stopped while waiting for the lease ${key}`);
    }
    const entry = await kv.get(key);
    const previous = entry === null ? undefined : parseRecord(entry.value);
    const epoch = (previous?.epoch ?? 0) + 1;
    const record: LeaseRecord = { epoch, holder: self, ttlMs };
    const lapsed =
      previous === undefined ||
      previous.released === true ||
      holderIsDead(previous.holder, self) ||
      (watched?.revision === entry?.revision && performance.now() - watched!.since >= previous.ttlMs);
    if (!lapsed && options.takeover !== true) {
      if (watched?.revision !== entry!.revision) {
        if (watched === undefined) options.onWait?.(previous.holder, previous.epoch, previous.ttlMs);
        watched = { revision: entry!.revision, since: performance.now() };
      }
      await sleep(Math.min(1_000, Math.max(50, previous.ttlMs / 4)), options.signal);
      continue;
    }
    const started = performance.now();
    const written = await kv.compareAndSet(key, JSON.stringify(record), entry?.revision ?? 0);
    if (!written.ok) continue;
    const lease = new KvLease(kv, key, record, written.revision, started);
    if (!lapsed) {
      // The old holder is alive: it stops at its next guarded action, or on its own once its lease
      // went unrenewed for a period. Nothing is touched before then.
      options.onTakeover?.(previous!.holder, epoch, previous!.ttlMs);
      await sleep(previous!.ttlMs);
      await lease.check('take over');
    }
    return lease;
  }
}

class KvLease implements Lease {
  readonly name: string;
  readonly epoch: number;
  readonly #kv: LeaseKv;
  readonly #record: LeaseRecord;
  #revision: number;
  /** Past this (this process's monotonic clock) the lease may have lapsed for others: stop. */
  #validUntil: number;
  #fenced: FencedError | undefined;
  #released = false;
  readonly #timer: NodeJS.Timeout;
  #renewing: Promise<void> = Promise.resolve();

  constructor(kv: LeaseKv, key: string, record: LeaseRecord, revision: number, writtenAt: number) {
    this.name = key;
    this.epoch = record.epoch;
    this.#kv = kv;
    this.#record = record;
    this.#revision = revision;
    this.#validUntil = writtenAt + record.ttlMs;
    this.#timer = setInterval(() => {
      this.#renewing = this.#renew();
    }, record.ttlMs / 3);
    // The lease never keeps a finished worker alive.
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#fenced !== undefined || this.#released) return;
    const started = performance.now();
    try {
      const written = await this.#kv.compareAndSet(this.name, JSON.stringify(this.#record), this.#revision);
      if (written.ok) {
        this.#revision = written.revision;
        this.#validUntil = started + this.#record.ttlMs;
        return;
      }
      await this.#readCurrent();
    } catch {
      // The bucket is out of reach: the lease stays valid until `validUntil`, then the worker stops.
    }
  }

  /** Re-reads the key; a newer epoch or holder fences this worker. */
  async #readCurrent(): Promise<void> {
    const entry = await this.#kv.get(this.name);
    const current = entry === null ? undefined : parseRecord(entry.value);
    if (current?.epoch === this.epoch && current.holder.nonce === this.#record.holder.nonce) {
      if (current.released !== true) return;
    }
    this.#fence(
      current === undefined
        ? `its lease ${this.name} was deleted`
        : `worker lease ${this.name} is now held by ${describeHolder(current.holder)} (epoch ${current.epoch}; this worker had epoch ${this.epoch})`,
      current,
    );
  }

  #fence(reason: string, current: LeaseRecord | undefined): void {
    if (this.#fenced !== undefined) return;
    clearInterval(this.#timer);
    this.#fenced = new FencedError(
      `fenced: ${reason}. Another worker runs with this --worker id; this one stops without writing, ` +
        'acknowledging or saving anything more.',
      {
        lease: this.name,
        epoch: this.epoch,
        ...(current === undefined ? {} : { newerEpoch: current.epoch, newerPid: current.holder.pid }),
      },
    );
  }

  get fenced(): boolean {
    return this.#fenced !== undefined;
  }

  async check(action: string): Promise<void> {
    if (this.#fenced === undefined && performance.now() > this.#validUntil) {
      this.#fence(
        `worker lease ${this.name} went unrenewed for ${this.#record.ttlMs} ms before "${action}" (paused, or the bucket was out of reach), so another worker may hold it`,
        undefined,
      );
    }
    if (this.#fenced === undefined) {
      try {
        await this.#readCurrent();
      } catch {
        // The bucket is out of reach: the lease is still valid by this process's clock.
      }
    }
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    await this.#renewing;
    if (this.#fenced !== undefined) return;
    try {
      await this.#kv.compareAndSet(
        this.name,
        JSON.stringify({ ...this.#record, released: true } satisfies LeaseRecord),
        this.#revision,
      );
    } catch {
      // Best effort: a successor waits for the lease to lapse instead.
    }
  }
}

function parseRecord(text: string): LeaseRecord | undefined {
  try {
    const record = JSON.parse(text) as LeaseRecord;
    if (typeof record.epoch !== 'number' || typeof record.holder?.nonce !== 'string') return undefined;
    return record;
  } catch {
    return undefined;
  }
}
