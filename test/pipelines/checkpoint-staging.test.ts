/**
 * A checkpoint staged while its epoch's seal runs: the state is stored before the seal ends, committed
 * only after it, and a state staged but never committed (a kill, a failed seal, a fenced worker) is never
 * restored and is cleared away by the successor.
 */
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { map, type Observable } from 'rxjs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import { FencedError, type Lease } from '../../connectors/lease.js';
import { type FlowEvent, type SnapshotState, StateStore } from '../../core/index.js';
import { type CheckpointKvStore, kvCheckpointStore } from '../../pipelines/checkpoints.js';
import { fencedCheckpoints } from '../../pipelines/fencing.js';
import { emptyTotals } from '../../pipelines/meter-quality-outputs.js';
import {
  type Checkpoint,
  type CheckpointStore,
  type ReadingSource,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import {
  type IdentifiedCheckpoint,
  identifiedCheckpoints,
  type RunSinks,
} from '../../pipelines/store-identity.js';
import type { RawReading, Reading } from '../../schemas/reading.js';
import { uniqueName } from '../harness/servers.js';

let nc: NatsConnection;
let kv: CheckpointKv;
beforeAll(async () => {
  nc = await connectNats({ servers: inject('natsUrl'), name: 'checkpoint-staging-test' });
  kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('cpstage'), storage: 'memory' });
});
afterAll(async () => {
  await nc?.close();
});

/** `bytes` patterned bytes tagged by `tag`, in one piece. */
function stateOf(bytes: number, tag: number): Uint8Array {
  const state = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) state[i] = (i * 13 + tag) & 0xff;
  return state;
}

function checkpoint(seq: number, state: Uint8Array): Checkpoint {
  return { seq, position: { lastSeq: seq * 10 }, state, totals: emptyTotals(), stateFormat: 'test/1' };
}

/** The real bucket, with the keys of every chunk put noted. */
function noting(puts: string[]): CheckpointKvStore {
  return {
    get: (k) => kv.get(k),
    getBytes: (k) => kv.getBytes(k),
    compareAndSet: (k, v, r) => kv.compareAndSet(k, v, r),
    delete: (k) => kv.delete(k),
    put: (k, v) => {
      if (k.includes('.state.')) puts.push(k);
      return kv.put(k, v);
    },
  };
}

/** A bounded source of `pulls` pulls of two records; its position is the pulls handed out. */
function countingSource(pulls: number, resumesFromPosition: boolean): ReadingSource {
  let i = 0;
  return {
    name: 'counting',
    resumesFromPosition,
    open: async () => {},
    next: async (): Promise<SourceBatch | 'end'> => {
      if (i >= pulls) return 'end';
      i += 1;
      return { records: [{ value: '1' }, { value: '2' }] as RawReading[], quarantined: [], deadLettered: 0 };
    },
    position: () => i,
    commit: async () => {},
    close: async () => {},
  };
}

const countingGraph =
  (store: StateStore) => (input: Observable<FlowEvent<RawReading>>, sink: { readings(b: Reading[]): void }) =>
    input.pipe(
      map((e) => {
        if (e.kind !== 'data') return;
        const seen = store.value('seen', 0);
        seen.set(seen.get() + e.items.length);
        sink.readings(e.items.map(() => ({ status: 'measured', qualityScore: 1 }) as Reading));
      }),
    );

/** A store that stages: each stage and commit logged, the committed checkpoints kept. */
function stagingStore(log: string[]): CheckpointStore & { committed: Checkpoint[] } {
  const committed: Checkpoint[] = [];
  return {
    committed,
    load: async () => undefined,
    save: async (cp) => {
      log.push(`save ${cp.seq}`);
      committed.push(cp);
    },
    stage: async (seq: number, state: SnapshotState) => {
      log.push(`stage ${seq}`);
      return {
        commit: async (cp) => {
          log.push(`commit ${cp.seq}`);
          committed.push({ ...cp, state });
        },
      };
    },
  };
}

/** Runs the counting graph over `source` to the end, a checkpoint every two flushes of two readings. */
function stagedRun(
  checkpoints: CheckpointStore,
  source: ReadingSource,
  seal: (epoch: number) => Promise<void>,
): Promise<unknown> {
  const store = new StateStore();
  return runPipeline({
    source,
    sinks: { rollback: async () => {}, write: async () => {}, seal },
    checkpoints,
    store,
    connect: countingGraph(store),
    untilIdle: true,
    flushRows: 2,
    flushIntervalMs: 60_000,
    checkpointIntervalMs: 60_000,
    checkpointEveryFlushes: 2,
    idlePollMs: 1,
    now: () => 0,
  });
}

describe('a checkpoint staged while its seal runs', () => {
  it('is stored before the seal ends and committed after it, with the epoch totals', async () => {
    for (const resumesFromPosition of [false, true]) {
      const log: string[] = [];
      const checkpoints = stagingStore(log);
      await stagedRun(checkpoints, countingSource(4, resumesFromPosition), async (epoch) => {
        log.push(`seal ${epoch}`);
        // The seal takes a while: long enough for the state to be staged meanwhile.
        await new Promise((r) => setTimeout(r, 20));
        log.push(`sealed ${epoch}`);
      });
      expect(checkpoints.committed.map((cp) => cp.seq)).toEqual([1, 2, 3]);
      expect(log.filter((l) => l.startsWith('save'))).toEqual([]);
      for (const seq of [1, 2, 3]) {
        expect(log.indexOf(`stage ${seq}`), `${resumesFromPosition} ${seq}`).toBeLessThan(
          log.indexOf(`sealed ${seq}`),
        );
        expect(log.indexOf(`commit ${seq}`)).toBeGreaterThan(log.indexOf(`sealed ${seq}`));
      }
      expect(checkpoints.committed.map((cp) => cp.totals.readings)).toEqual([4, 8, 8]);
    }
  });

  it('is never committed when the seal fails', async () => {
    const log: string[] = [];
    const checkpoints = stagingStore(log);
    const broken = new Error('lake full');
    await expect(
      stagedRun(checkpoints, countingSource(4, true), async () => {
        await new Promise((r) => setTimeout(r, 5));
        throw broken;
      }),
    ).rejects.toBe(broken);
    expect(log).toContain('stage 1');
    expect(checkpoints.committed).toEqual([]);
  });
});

describe('the wrappers around a store that stages', () => {
  it('pass staging on: the identity is stamped on the commit', async () => {
    const log: string[] = [];
    const inner = stagingStore(log);
    const identity = { hot: { target: 'chdb:/x', database: 'db', id: 'h1' } };
    const sinks = { identity, hotStoreIds: [] } as unknown as RunSinks;
    const identified = identifiedCheckpoints(inner, sinks, { name: 'staging' });
    const { state: _, ...meta } = checkpoint(1, new Uint8Array(0));
    await (await identified.stage!(1, stateOf(8, 1))).commit(meta);
    expect((inner.committed[0] as IdentifiedCheckpoint).sinks).toEqual(identity);
  });
});

describe('kvCheckpointStore.stage', () => {
  it('a worker killed between stage and commit resumes from the last commit; its successor clears the staged chunks', async () => {
    const puts: string[] = [];
    const dying = kvCheckpointStore(noting(puts), 'killed', { chunkBytes: 16 * 1024 });
    await dying.load();
    const first = checkpoint(1, stateOf(50_000, 1));
    const firstBytes = Buffer.from(first.state as Uint8Array);
    await dying.save(first);
    puts.length = 0;
    // Staged, its chunks all stored, and then the worker is gone before the commit.
    await dying.stage!(2, stateOf(70_000, 2));
    const staged = [...puts];
    expect(staged.length).toBeGreaterThanOrEqual(5);
    for (const k of staged) expect(await kv.get(k), k).not.toBeNull();

    const successor = kvCheckpointStore(kv, 'killed', { chunkBytes: 16 * 1024 });
    const loaded = await successor.load();
    expect(loaded?.seq).toBe(1);
    expect(Buffer.from(loaded!.state as Uint8Array).equals(firstBytes)).toBe(true);
    // Its first commit (staged, then committed) clears the chunks the dead worker staged.
    const next = stateOf(40_000, 3);
    const nextBytes = Buffer.from(next);
    const { state: _, ...nextMeta } = checkpoint(2, next);
    await (await successor.stage!(2, next)).commit(nextMeta);
    for (const k of staged) expect(await kv.get(k), k).toBeNull();
    const after = await kvCheckpointStore(kv, 'killed').load();
    expect(after?.seq).toBe(2);
    expect(Buffer.from(after!.state as Uint8Array).equals(nextBytes)).toBe(true);
  });

  it('refuses to commit a staged state another commit came after, or a second time', async () => {
    const store = kvCheckpointStore(kv, 'overtaken', { chunkBytes: 16 * 1024 });
    await store.load();
    const staged = await store.stage!(1, stateOf(30_000, 1));
    const saved = checkpoint(1, stateOf(30_000, 2));
    const savedBytes = Buffer.from(saved.state as Uint8Array);
    await store.save(saved);
    const { state: _, ...meta } = checkpoint(1, new Uint8Array(0));
    await expect(staged.commit(meta)).rejects.toThrow(/not the next to commit/);
    const loaded = await kvCheckpointStore(kv, 'overtaken').load();
    expect(Buffer.from(loaded!.state as Uint8Array).equals(savedBytes)).toBe(true);

    const again = await store.stage!(2, stateOf(10_000, 3));
    await again.commit({ ...meta, seq: 2 });
    await expect(again.commit({ ...meta, seq: 2 })).rejects.toThrow(/a second time/);
    expect((await kvCheckpointStore(kv, 'overtaken').load())?.seq).toBe(2);
  });
});

describe('a fenced worker staging a checkpoint', () => {
  const lease = (fenced: () => boolean): Lease =>
    ({
      name: 'lease',
      epoch: 1,
      check: async (action: string) => {
        if (fenced()) throw new FencedError(`fenced before it could ${action}`, { epoch: 1 });
      },
    }) as unknown as Lease;

  it('stores nothing once fenced, and does not commit when fenced after staging', async () => {
    const puts: string[] = [];
    const inner = kvCheckpointStore(noting(puts), 'fenced', { chunkBytes: 16 * 1024 });
    await inner.load();
    const committed = checkpoint(1, stateOf(20_000, 1));
    const committedBytes = Buffer.from(committed.state as Uint8Array);
    await inner.save(committed);
    puts.length = 0;

    let isFenced = true;
    const guarded = fencedCheckpoints(
      inner,
      lease(() => isFenced),
    );
    expect(guarded.stage).toBeDefined();
    await expect(guarded.stage!(2, stateOf(20_000, 2))).rejects.toBeInstanceOf(FencedError);
    expect(puts).toEqual([]);

    isFenced = false;
    const staged = await guarded.stage!(2, stateOf(20_000, 3));
    expect(puts.length).toBeGreaterThan(0);
    isFenced = true;
    const { state: _, ...meta } = checkpoint(2, new Uint8Array(0));
    await expect(staged.commit(meta)).rejects.toBeInstanceOf(FencedError);
    const loaded = await kvCheckpointStore(kv, 'fenced').load();
    expect(loaded?.seq).toBe(1);
    expect(Buffer.from(loaded!.state as Uint8Array).equals(committedBytes)).toBe(true);
  });
});
