import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CheckpointKv } from '../connectors/jetstream-kv.js';
import type { Checkpoint, CheckpointStore } from './runner.js';

/** Checkpoints in a local file (the files source): written to a temporary name, synced, then renamed. */
export function fileCheckpointStore(path: string): CheckpointStore {
  return {
    async load() {
      try {
        return JSON.parse(await readFile(path, 'utf8')) as Checkpoint;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new Error(`cannot read checkpoint ${path}: ${(err as Error).message}`, { cause: err });
      }
    },
    async save(checkpoint) {
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.partial`;
      const handle = await open(tmp, 'w');
      try {
        await handle.writeFile(JSON.stringify(checkpoint));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
    },
  };
}

/** Keeps checkpoints in memory only: for tests and one-shot runs that must not resume. */
export function memoryCheckpointStore(): CheckpointStore & { last: Checkpoint | undefined } {
  const store = {
    last: undefined as Checkpoint | undefined,
    async load() {
      return store.last;
    },
    async save(checkpoint: Checkpoint) {
      store.last = checkpoint;
    },
  };
  return store;
}

/**
 * Checkpoints in the NATS KV bucket, written with compare-and-set: a stale worker (one that lost its
 * partitions to another) cannot overwrite a newer checkpoint, and fails instead.
 */
export function kvCheckpointStore(kv: CheckpointKv, key: string): CheckpointStore {
  let revision = 0;
  return {
    async load() {
      const entry = await kv.get(key);
      if (entry === null) return undefined;
      revision = entry.revision;
      return JSON.parse(entry.value) as Checkpoint;
    },
    async save(checkpoint) {
      const result = await kv.compareAndSet(key, JSON.stringify(checkpoint), revision);
      if (!result.ok) {
        throw new Error(
          `checkpoint ${key} was written by another worker (revision ${String(result.currentRevision)}, expected ${revision}); stopping`,
        );
      }
      revision = result.revision;
    },
  };
}
