/**
 * Incremental checkpoints in the three checkpoint stores: a full state, then deltas saved on it, loaded
 * back as the chain they form; a chain that does not hold together (a delta's chunks lost or changed,
 * deltas out of order, a delta with nothing to extend) fails with a typed error instead of restoring a
 * wrong state, and a worker killed between a delta's chunks and its commit resumes from the chain before.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { map, type Observable } from 'rxjs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import { CheckpointStoreError } from '../../connectors/jetstream-errors.js';
import type { Lease } from '../../connectors/lease.js';
import {
  deserializeSnapshot,
  type FlowEvent,
  isSnapshotDelta,
  SnapshotChainError,
  SnapshotFormatError,
  StateStore,
} from '../../core/index.js';
import {
  type CheckpointKvStore,
  fileCheckpointStore,
  kvCheckpointStore,
  memoryCheckpointStore,
} from '../../pipelines/checkpoints.js';
import { fencedCheckpoints } from '../../pipelines/fencing.js';
import {
  type Checkpoint,
  type CheckpointStore,
  type ReadingSource,
  type RunTotals,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import { identifiedCheckpoints, type RunSinks } from '../../pipelines/store-identity.js';
import type { RawReading, Reading } from '../../schemas/reading.js';
import { uniqueName } from '../harness/servers.js';

const totals: RunTotals = {
  recordsIn: 1,
  readings: 1,
  measured: 1,
  quarantined: 0,
  deadLettered: 0,
  faults: 0,
  alerts: 0,
};

const checkpoint = (seq: number, state: Uint8Array): Checkpoint => ({
  seq,
  position: { lastSeq: seq },
  state,
  totals,
  stateFormat: 'meter-quality/7',
});

/** A store with `meters` rows of 64 numbers and a keyed entry per meter, as the graph keeps them. */
function meterStore(meters: number): StateStore {
  const store = new StateStore();
  const rows = store.rows('ring', 'meters', 64);
  const keyed = store.denseKeyed<{ last: number }>('last', 'meters');
  const index = store.denseKeys('meters');
  for (let m = 0; m < meters; m++) {
    const key = `MTR-${m}`;
    const n = index.intern(key);
    const o = rows.create(n);
    for (let i = 0; i < 64; i++) rows.data[o + i] = m * 64 + i + 0.5;
    keyed.setAt(n, key, { last: m });
  }
  return store;
}

/** Changes meters `from, from + step, …` (a reading each). */
function touch(store: StateStore, from: number, step: number, value: number): void {
  const rows = store.rows('ring', 'meters', 64);
  const keyed = store.denseKeyed<{ last: number }>('last', 'meters');
  for (let n = from; n < rows.size; n += step) {
    rows.data[rows.open(n) + 3] = value;
    keyed.getAt(n, `MTR-${n}`)!.last = value;
  }
}

/** A full state and three deltas of a 1,000-meter store, and the store's state after each. */
function chain(): { full: Uint8Array; deltas: Uint8Array[]; store: StateStore } {
  const store = meterStore(1000);
  const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
  const deltas: Uint8Array[] = [];
  for (let i = 1; i <= 3; i++) {
    touch(store, i, 7, 1000 + i);
    const delta = store.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
    expect(isSnapshotDelta(delta)).toBe(true);
    deltas.push(delta);
  }
  return { full, deltas, store };
}

/** What a store holds, as a full snapshot of it says. */
function content(store: StateStore): unknown {
  const s = deserializeSnapshot(store.beginSnapshot().finish());
  return { keyed: s.keyed, indexes: s.indexes, rows: s.rows };
}

function restoreFrom(cp: Checkpoint): StateStore {
  const store = new StateStore();
  store.rows('ring', 'meters', 64);
  store.restore(deserializeSnapshot(cp.state));
  store.applyDeltas(cp.deltas ?? []);
  return store;
}

/** Saves the chain's full state and deltas as checkpoints 1 … 4. */
async function saveChain(
  store: CheckpointStore,
  c: { full: Uint8Array; deltas: Uint8Array[] },
): Promise<void> {
  await store.save(checkpoint(1, c.full));
  for (const [i, d] of c.deltas.entries()) await store.save(checkpoint(2 + i, d));
}

let nc: NatsConnection;
let kv: CheckpointKv;
let dir: string;
beforeAll(async () => {
  nc = await connectNats({ servers: inject('natsUrl'), name: 'incremental-checkpoints-test' });
  kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('cpinc'), storage: 'memory' });
  dir = await mkdtemp(join(tmpdir(), 'greenstream-cpinc-'));
});
afterAll(async () => {
  await nc?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('incremental checkpoints', () => {
  const stores: [string, () => CheckpointStore][] = [
    ['the KV bucket', () => kvCheckpointStore(kv, uniqueName('chain'), { chunkBytes: 64 * 1024 })],
    ['a file', () => fileCheckpointStore(join(dir, `${uniqueName('chain')}.json`))],
    ['memory', () => memoryCheckpointStore()],
  ];

  for (const [where, make] of stores) {
    it(`restore from a chain kept in ${where}: the full state, then each delta in order`, async () => {
      const c = chain();
      const store = make();
      expect(store.chains).toBe(true);
      await store.load();
      await saveChain(store, c);
      const loaded = (await store.load())!;
      expect(loaded.seq).toBe(4);
      expect(loaded.position).toEqual({ lastSeq: 4 });
      expect(Buffer.compare(loaded.state as Uint8Array, c.full)).toBe(0);
      expect(loaded.deltas?.map((d) => Buffer.from(d).toString('hex'))).toEqual(
        c.deltas.map((d) => Buffer.from(d).toString('hex')),
      );
      expect(content(restoreFrom(loaded))).toEqual(content(c.store));
      // A full state starts the chain afresh.
      const full = c.store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
      await store.save(checkpoint(5, full));
      const next = (await store.load())!;
      expect(next.deltas).toBeUndefined();
      expect(content(restoreFrom(next))).toEqual(content(c.store));
    });

    it(`refuses a delta with no full state to extend in ${where}`, async () => {
      const store = make();
      await store.load();
      await expect(store.save(checkpoint(1, chain().deltas[0]!))).rejects.toThrow(SnapshotChainError);
    });
  }

  /** Per store kind: a key's store as a worker opens it (memory: the one store, which outlives no process). */
  const reopened: [string, () => () => CheckpointStore][] = [
    [
      'the KV bucket',
      () => {
        const key = uniqueName('chain');
        return () => kvCheckpointStore(kv, key, { chunkBytes: 64 * 1024 });
      },
    ],
    [
      'a file',
      () => {
        const path = join(dir, `${uniqueName('chain')}.json`);
        return () => fileCheckpointStore(path);
      },
    ],
    [
      'memory',
      () => {
        const store = memoryCheckpointStore();
        return () => store;
      },
    ],
  ];
  for (const [where, keyOf] of reopened) {
    it(`let a restored worker extend the chain it loaded from ${where} with deltas, until its own full state`, async () => {
      const open = keyOf();
      const c = chain();
      const first = open();
      await first.load();
      await saveChain(first, c);
      // The next worker restores the chain and goes on with it.
      const second = open();
      expect(second.extendsLoaded).toBe(true);
      const loaded = (await second.load())!;
      const worker = restoreFrom(loaded);
      expect(worker.continueRestoredChain()).toBe(true);
      touch(worker, 4, 5, 2004);
      worker.denseKeys('meters').intern('MTR-new');
      const delta = worker.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
      expect(isSnapshotDelta(delta)).toBe(true);
      await second.save(checkpoint(5, delta));
      touch(worker, 5, 3, 2005);
      await second.save(
        checkpoint(6, worker.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array),
      );
      const third = (await open().load())!;
      expect(third.seq).toBe(6);
      expect(third.deltas).toHaveLength(5);
      expect(content(restoreFrom(third))).toEqual(content(worker));
      // Its own full state supersedes the loaded chain, which then is gone from the store.
      await second.save(checkpoint(7, worker.beginSnapshot({ incremental: true }).finish() as Uint8Array));
      const after = (await open().load())!;
      expect(after.deltas).toBeUndefined();
      expect(content(restoreFrom(after))).toEqual(content(worker));
    });
  }

  it('is said of a store by the wrappers a worker puts around it', () => {
    const inner = memoryCheckpointStore();
    const sinks = { identity: {}, hotStoreIds: [] } as unknown as RunSinks;
    const lease = { name: 'lease', epoch: 1, fenced: false, check: async () => {} } as unknown as Lease;
    expect(identifiedCheckpoints(inner, sinks, { name: 'memory' }).extendsLoaded).toBe(true);
    expect(fencedCheckpoints(inner, lease).extendsLoaded).toBe(true);
    expect(fencedCheckpoints({ chains: true, load: inner.load, save: inner.save }, lease).extendsLoaded).toBe(
      undefined,
    );
  });

  it('a store restored from a snapshot that starts no chain has none to continue', () => {
    const store = meterStore(10);
    const restored = new StateStore();
    restored.rows('ring', 'meters', 64);
    restored.restore(deserializeSnapshot(store.beginSnapshot().finish()));
    expect(restored.continueRestoredChain()).toBe(false);
    const next = restored.beginSnapshot({ incremental: true, delta: true });
    expect(next.delta).toBe(false);
  });

  it('keeps a delta a small part of the full state when few meters changed', () => {
    const c = chain();
    for (const d of c.deltas) expect(d.byteLength).toBeLessThan(c.full.byteLength / 4);
  });

  describe('in the KV bucket', () => {
    const manifestOf = async (key: string) =>
      JSON.parse((await kv.get(key))!.value) as {
        format: string;
        seq: number;
        chunks: { writer: string; slot: number };
        deltas?: { writer: string; slot: number; delta: number; count: number }[];
      };
    const deltaChunk = (key: string, d: { writer: string; slot: number; delta: number }, i: number) =>
      `${key}.state.${d.writer}.${d.slot}.d${d.delta}.${i}`;

    it('fails clearly when a chunk of a delta is lost', async () => {
      const key = uniqueName('lost');
      const store = kvCheckpointStore(kv, key, { chunkBytes: 16 * 1024 });
      await store.load();
      await saveChain(store, chain());
      const m = await manifestOf(key);
      expect(m.deltas).toHaveLength(3);
      // A format a build without chains refuses, rather than restoring the full state alone.
      expect(m.format).toBe('greenstream-checkpoint/3');
      await kv.delete(deltaChunk(key, m.deltas![1]!, 0));
      await expect(kvCheckpointStore(kv, key).load()).rejects.toThrow(/is missing delta 2 chunk 1 of/);
    });

    it('fails clearly when a delta is corrupt, or its chunks are not those the manifest names', async () => {
      const key = uniqueName('corrupt');
      const store = kvCheckpointStore(kv, key, { chunkBytes: 16 * 1024 });
      await store.load();
      await saveChain(store, chain());
      const m = await manifestOf(key);
      const name = deltaChunk(key, m.deltas![0]!, 0);
      const bytes = Uint8Array.from((await kv.getBytes(name))!.value);
      bytes[20]! ^= 0xff;
      await kv.put(name, bytes);
      await expect(kvCheckpointStore(kv, key).load()).rejects.toThrow(CheckpointStoreError);
      await expect(kvCheckpointStore(kv, key).load()).rejects.toThrow(/delta 1 chunks do not match/);
    });

    it('fails clearly when the manifest lists its deltas out of order', async () => {
      const key = uniqueName('order');
      const store = kvCheckpointStore(kv, key, { chunkBytes: 16 * 1024 });
      await store.load();
      await saveChain(store, chain());
      const m = await manifestOf(key);
      const swapped = { ...m, deltas: [m.deltas![1], m.deltas![0], m.deltas![2]] };
      await kv.put(key, JSON.stringify(swapped));
      await expect(kvCheckpointStore(kv, key).load()).rejects.toThrow(/delta 1 is not the chain's next/);
    });

    it("resumes from the chain before a delta whose worker was killed between its chunks and its commit, and cleans up the delta's chunks", async () => {
      const key = uniqueName('killed');
      const c = chain();
      const written: string[] = [];
      let killed = false;
      const dying: CheckpointKvStore = {
        get: (k) => kv.get(k),
        getBytes: (k) => kv.getBytes(k),
        delete: (k) => kv.delete(k),
        put: (k, v) => {
          written.push(k);
          return kv.put(k, v);
        },
        compareAndSet: async (k, v, revision) => {
          if (killed) throw new Error('killed before the commit');
          return kv.compareAndSet(k, v, revision);
        },
      };
      const worker = kvCheckpointStore(dying, key, { chunkBytes: 16 * 1024 });
      await worker.load();
      await worker.save(checkpoint(1, c.full));
      await worker.save(checkpoint(2, c.deltas[0]!));
      killed = true;
      written.length = 0;
      await expect(worker.save(checkpoint(3, c.deltas[1]!))).rejects.toThrow(/killed/);
      const orphans = written.filter((k) => k.includes('.d2.'));
      expect(orphans.length).toBeGreaterThan(0);
      for (const k of orphans) expect(await kv.getBytes(k), k).not.toBeNull();

      const successor = kvCheckpointStore(kv, key, { chunkBytes: 16 * 1024 });
      const resumed = (await successor.load())!;
      expect(resumed.seq).toBe(2);
      expect(resumed.position).toEqual({ lastSeq: 2 });
      expect(resumed.deltas).toHaveLength(1);
      // The state at checkpoint 2: the full state and the first delta.
      const expected = new StateStore();
      expected.rows('ring', 'meters', 64);
      expected.restore(deserializeSnapshot(c.full));
      expected.applyDeltas([c.deltas[0]!]);
      expect(content(restoreFrom(resumed))).toEqual(content(expected));
      // Its first commit (a full state: a restored store starts a chain of its own) deletes the dead
      // writer's chain and the delta it never committed.
      const restored = restoreFrom(resumed);
      const next = restored.beginSnapshot({ incremental: true, delta: true });
      expect(next.delta).toBe(false);
      await successor.save(checkpoint(3, next.finish() as Uint8Array));
      for (const k of orphans) expect(await kv.getBytes(k), k).toBeNull();
    });
  });

  describe('in a file', () => {
    it('fails clearly when a delta in it is corrupt or truncated', async () => {
      const path = join(dir, `${uniqueName('file')}.json`);
      const store = fileCheckpointStore(path);
      await store.load();
      const c = chain();
      await saveChain(store, c);
      const saved = JSON.parse(await readFile(path, 'utf8')) as { deltas: string[]; stateEncoding: string };
      expect(saved.stateEncoding).toBe('base64+deltas');
      const bytes = Buffer.from(saved.deltas[1]!, 'base64');
      saved.deltas[1] = bytes.subarray(0, bytes.length - 100).toString('base64');
      await writeFile(path, JSON.stringify(saved));
      const loaded = (await fileCheckpointStore(path).load())!;
      expect(() => restoreFrom(loaded)).toThrow(SnapshotFormatError);
      // One lost from the middle.
      saved.deltas.splice(1, 1);
      await writeFile(path, JSON.stringify(saved));
      const fileLoaded = (await fileCheckpointStore(path).load())!;
      expect(fileLoaded.deltas).toHaveLength(2);
      expect(() => restoreFrom(fileLoaded)).toThrow(SnapshotChainError);
    });
  });
});

/** A bounded source of `pulls` pulls of one record each, starting after `from` (its position). */
function pullsSource(pulls: number, from: number): ReadingSource {
  let i = from;
  return {
    name: 'pulls',
    open: async () => {},
    next: async (): Promise<SourceBatch | 'end'> => {
      if (i >= pulls) return 'end';
      i += 1;
      return { records: [{ value: String(i) }] as RawReading[], quarantined: [], deadLettered: 0 };
    },
    position: () => i,
    commit: async () => {},
    close: async () => {},
  };
}

/** A graph that keeps a row per meter (of 50) and a keyed entry per meter seen, pull `i` changing meter `i mod 50`. */
const rowsGraph =
  (store: StateStore) =>
  (input: Observable<FlowEvent<RawReading>>, sink: { readings(b: Reading[]): void }) => {
    const rows = store.rows('ring', 'meters', 64);
    const keyed = store.denseKeyed<{ pulls: number }>('last', 'meters');
    const index = store.denseKeys('meters');
    return input.pipe(
      map((e) => {
        if (e.kind !== 'data') return;
        // Every meter has a row from the start (a delta is then smaller than the full state).
        for (let m = 0; m < 50 && rows.size < 50; m++) rows.create(index.intern(`MTR-${m}`));
        for (const r of e.items) {
          const i = Number(r.value);
          const key = `MTR-${i % 50}`;
          const n = index.intern(key);
          let o = rows.open(n);
          if (o < 0) o = rows.create(n);
          rows.data[o + (i % 64)] = i;
          const s = keyed.getAt(n, key);
          if (s === undefined) keyed.setAt(n, key, { pulls: 1 });
          else s.pulls += 1;
        }
        sink.readings(e.items.map((r) => ({ status: 'measured', qualityScore: Number(r.value) }) as Reading));
      }),
    );
  };

describe('the epoch coordinator with incremental checkpoints', () => {
  const run = (store: StateStore, checkpoints: CheckpointStore, pulls: number, from: number) =>
    runPipeline({
      source: pullsSource(pulls, from),
      sinks: { rollback: async () => {}, write: async () => {} },
      checkpoints,
      store,
      connect: rowsGraph(store),
      untilIdle: true,
      flushRows: 1,
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 60_000,
      checkpointEveryFlushes: 1,
      fullCheckpointEvery: 4,
      idlePollMs: 1,
      now: () => 0,
    });

  it('saves a full state every 4th checkpoint and deltas between, and resumes from a chain to the state of an uninterrupted run', async () => {
    const saved: boolean[] = [];
    const memory = memoryCheckpointStore();
    const recording: CheckpointStore = {
      chains: true,
      load: () => memory.load(),
      save: async (cp) => {
        saved.push(isSnapshotDelta(cp.state));
        await memory.save(cp);
      },
    };
    // Interrupted after 6 pulls (checkpoints: full, delta, delta, delta, full, delta, and the last)…
    const first = new StateStore();
    await run(first, recording, 6, 0);
    expect(saved.slice(0, 6)).toEqual([false, true, true, true, false, true]);
    const chain = memory.last!;
    expect(chain.deltas?.length).toBeGreaterThan(0);
    // … resumed from the chain for the remaining 10.
    const resumed = new StateStore();
    const position = chain.position as number;
    await run(resumed, memory, 16, position);
    const uninterrupted = new StateStore();
    await run(uninterrupted, memoryCheckpointStore(), 16, 0);
    expect(content(resumed)).toEqual(content(uninterrupted));
    // Without a store that keeps chains, every checkpoint is full.
    const full: boolean[] = [];
    await run(
      new StateStore(),
      { load: async () => undefined, save: async (cp) => void full.push(isSnapshotDelta(cp.state)) },
      6,
      0,
    );
    expect(full.every((d) => !d)).toBe(true);
  });

  it("makes a restored worker's first checkpoint a delta on the chain it restored when the store keeps it, else a full state", async () => {
    const memory = memoryCheckpointStore();
    await run(new StateStore(), memory, 6, 0);
    const interrupted = memory.last!;
    expect(interrupted.deltas?.length).toBeGreaterThan(0);
    const resumeWith = async (extendsLoaded: boolean) => {
      const kinds: boolean[] = [];
      const store: CheckpointStore = {
        chains: true,
        ...(extendsLoaded ? { extendsLoaded: true } : {}),
        load: async () => interrupted,
        save: async (cp) => void kinds.push(isSnapshotDelta(cp.state)),
      };
      const resumed = new StateStore();
      await run(resumed, store, 9, interrupted.position as number);
      return { kinds, resumed };
    };
    const uninterrupted = new StateStore();
    await run(uninterrupted, memoryCheckpointStore(), 9, 0);
    const extended = await resumeWith(true);
    expect(extended.kinds[0]).toBe(true);
    expect(content(extended.resumed)).toEqual(content(uninterrupted));
    expect((await resumeWith(false)).kinds[0]).toBe(false);
  });
});
