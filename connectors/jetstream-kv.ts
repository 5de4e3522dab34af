/**
 * Checkpoints in a NATS KV bucket. `compareAndSet` writes only over the revision the writer last
 * read, so a stale worker (one that lost its partition to another and has not noticed) cannot
 * overwrite a newer checkpoint: it gets `{ ok: false }` and must stop.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { CheckpointStoreError, isTransientNatsError, messageOf } from './jetstream-errors.js';
import { isApiError, type LimitDifference, managerOf } from './jetstream-streams.js';

export const CHECKPOINT_BUCKET = 'greenstream_checkpoints';

/** Server codes for "the key is not at the revision you expected". */
const WRONG_LAST_SEQUENCE = 10071;
const WRONG_LAST_SEQUENCE_UNKNOWN = 10164;
const STREAM_NOT_FOUND = 10059;
/** How long a read keeps trying through a node restart: a JetStream leader election takes a few seconds. */
const READ_RETRY_MS = 8_000;

export interface CheckpointEntry {
  readonly value: string;
  /** Pass back to `compareAndSet`. */
  readonly revision: number;
  readonly updatedAt: Date;
}

export type CompareAndSetResult =
  | { readonly ok: true; readonly revision: number }
  | { readonly ok: false; readonly reason: 'stale_revision'; readonly currentRevision: number | null };

export interface CheckpointKvOptions {
  readonly bucket?: string;
  /** Test servers may use memory; default file. */
  readonly storage?: 'file' | 'memory';
  /** Copies on a cluster (1, 3 or 5) when the bucket is created; an existing bucket is kept as it is. */
  readonly replicas?: number;
  /** false: never create the bucket, only open it (a missing one is a `CheckpointStoreError`). */
  readonly manage?: boolean;
  /** The existing bucket's replicas differ from `replicas`; they are kept. */
  readonly onLimitsDiffer?: (stream: string, differences: readonly LimitDifference[]) => void;
}

export class CheckpointKv {
  readonly #kv: KV;
  readonly #bucket: string;

  private constructor(kv: KV, bucket: string) {
    this.#kv = kv;
    this.#bucket = bucket;
  }

  /**
   * Opens the bucket, creating it (history 1: only the latest checkpoint matters) when missing and
   * `manage` is not false. An existing bucket's settings are never changed.
   */
  static async open(js: JetStreamClient, options: CheckpointKvOptions = {}): Promise<CheckpointKv> {
    const bucket = options.bucket ?? CHECKPOINT_BUCKET;
    const replicas = options.replicas ?? 1;
    let existingReplicas: number | null;
    try {
      existingReplicas = (await (await managerOf(js)).streams.info(`KV_${bucket}`)).config.num_replicas;
    } catch (error) {
      if (!isApiError(error, STREAM_NOT_FOUND))
        throw new CheckpointStoreError(
          `cannot look up checkpoint bucket ${bucket}: ${messageOf(error)}`,
          { bucket },
          { cause: error },
        );
      existingReplicas = null;
    }
    if (existingReplicas === null && options.manage === false)
      throw new CheckpointStoreError(
        `checkpoint bucket ${bucket} does not exist and streams are not managed here (--no-manage-streams): ` +
          'its owner must create it (see deploy/nats/README.md)',
        { bucket },
      );
    if (existingReplicas !== null && existingReplicas !== replicas)
      options.onLimitsDiffer?.(`KV_${bucket}`, [
        { limit: 'num_replicas', actual: existingReplicas, recommended: replicas },
      ]);
    try {
      const kv =
        existingReplicas !== null
          ? await new Kvm(js).open(bucket)
          : await new Kvm(js).create(bucket, {
              history: 1,
              replicas,
              ...(options.storage === 'memory' ? { storage: 'memory' as const } : {}),
            });
      return new CheckpointKv(kv, bucket);
    } catch (error) {
      throw new CheckpointStoreError(
        `cannot open checkpoint bucket ${bucket}: ${messageOf(error)}`,
        { bucket },
        { cause: error },
      );
    }
  }

  get bucket(): string {
    return this.#bucket;
  }

  /**
   * The current checkpoint, or null when none was written (or it was deleted). A read that times out while
   * a cluster node restarts (the bucket's leader moving) is tried again for up to `READ_RETRY_MS`: a read
   * changes nothing, so unlike a compare-and-set it can be repeated blindly.
   */
  async get(key: string): Promise<CheckpointEntry | null> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const entry = await this.#kv.get(key);
        if (entry === null || entry.operation !== 'PUT') return null;
        return { value: entry.string(), revision: entry.revision, updatedAt: entry.created };
      } catch (error) {
        if (isTransientNatsError(error) && Date.now() - started < READ_RETRY_MS) {
          await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 2_000)));
          continue;
        }
        throw this.#error('read', key, error);
      }
    }
  }

  /**
   * `get` with the value's bytes as stored, for binary values (a checkpoint's state chunks): a view of the
   * received message, not a copy.
   */
  async getBytes(key: string): Promise<{ readonly value: Uint8Array; readonly revision: number } | null> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const entry = await this.#kv.get(key);
        if (entry === null || entry.operation !== 'PUT') return null;
        return { value: entry.value, revision: entry.revision };
      } catch (error) {
        if (isTransientNatsError(error) && Date.now() - started < READ_RETRY_MS) {
          await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 2_000)));
          continue;
        }
        throw this.#error('read', key, error);
      }
    }
  }

  /**
   * Unconditional write; prefer `compareAndSet` for checkpoints. Returns the new revision. Bytes are sent
   * as they are (no text encoding, no copy).
   */
  async put(key: string, value: string | Uint8Array): Promise<number> {
    try {
      return await this.#kv.put(key, value);
    } catch (error) {
      throw this.#error('write', key, error);
    }
  }

  /**
   * Writes `value` only if the key is still at `expectedRevision` (0: only if it does not exist yet).
   */
  async compareAndSet(key: string, value: string, expectedRevision: number): Promise<CompareAndSetResult> {
    try {
      const revision =
        expectedRevision === 0
          ? await this.#kv.create(key, value)
          : await this.#kv.update(key, value, expectedRevision);
      return { ok: true, revision };
    } catch (error) {
      if (isApiError(error, WRONG_LAST_SEQUENCE) || isApiError(error, WRONG_LAST_SEQUENCE_UNKNOWN)) {
        const current = await this.get(key);
        return { ok: false, reason: 'stale_revision', currentRevision: current?.revision ?? null };
      }
      throw this.#error('write', key, error);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.#kv.delete(key);
    } catch (error) {
      throw this.#error('delete', key, error);
    }
  }

  #error(action: string, key: string, error: unknown): CheckpointStoreError {
    return new CheckpointStoreError(
      `cannot ${action} checkpoint ${key} in ${this.#bucket}: ${messageOf(error)}`,
      { bucket: this.#bucket, key },
      { cause: error },
    );
  }
}
