/**
 * Checkpoints of a store with numeric rows carry its binary snapshot (version 2): through the NATS KV
 * bucket as raw chunks, and in the checkpoint file as base64; a torn chunk set or a truncated snapshot
 * fails with a typed error instead of restoring a partial state.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import { CheckpointStoreError } from '../../connectors/jetstream-errors.js';
import {
  deserializeSnapshot,
  isSnapshotChunks,
  SnapshotFormatError,
  type SnapshotState,
  StateStore,
  snapshotData,
} from '../../core/index.js';
import { fileCheckpointStore, kvCheckpointStore } from '../../pipelines/checkpoints.js';
import type { Checkpoint, RunTotals } from '../../pipelines/runner.js';
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

/** A store's binary snapshot of `meters` rows of 170 numbers, with keyed JSON state beside them. */
function binaryState(meters: number): Uint8Array {
  const store = new StateStore();
  const rows = store.rows('ring', 'meters', 170);
  const index = store.denseKeys('meters');
  for (let m = 0; m < meters; m++) {
    const o = rows.create(index.intern(`MTR-${m}`));
    for (let i = 0; i < 170; i++) rows.data[o + i] = (m * 7919 + i * 104729) % 250_000;
    rows.data[o] = m + 0.25; // one fractional number per row: stays float64
  }
  store.keyed<{ q: number[] }>('held').set('MTR-1', { q: [1, 2, 3] });
  return store.beginSnapshot().finish() as Uint8Array;
}

const checkpoint = (seq: number, state: SnapshotState): Checkpoint => ({
  seq,
  position: { lastSeq: seq },
  state,
  totals,
  stateFormat: 'meter-quality/6',
});

let nc: NatsConnection;
let kv: CheckpointKv;
let dir: string;
beforeAll(async () => {
  nc = await connectNats({ servers: inject('natsUrl'), name: 'binary-checkpoints-test' });
  kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('cpbin'), storage: 'memory' });
  dir = await mkdtemp(join(tmpdir(), 'greenstream-cpbin-'));
});
afterAll(async () => {
  await nc?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('binary checkpoints', () => {
  it('go through the KV bucket as raw chunks and come back byte for byte', async () => {
    const state = binaryState(5000); // ~3.4 MB of rows: several chunks
    const writer = kvCheckpointStore(kv, 'bin');
    await writer.load();
    await writer.save(checkpoint(1, state));
    const manifest = JSON.parse((await kv.get('bin'))!.value) as {
      chunks: { count: number; bytes: number; encoding?: string };
    };
    expect(manifest.chunks).toMatchObject({ bytes: state.byteLength, encoding: 'binary' });
    expect(manifest.chunks.count).toBe(Math.ceil(state.byteLength / (512 * 1024)));
    const loaded = await kvCheckpointStore(kv, 'bin').load();
    expect(loaded?.state).toBeInstanceOf(Uint8Array);
    expect(Buffer.compare(loaded!.state as Uint8Array, state)).toBe(0);
    const restored = new StateStore();
    restored.restore(deserializeSnapshot(loaded!.state));
    expect(restored.rows('ring', 'meters', 170).size).toBe(5000);
    // A text checkpoint after a binary one, by the same writer: each loads as what it was.
    await writer.save(checkpoint(2, '{"version":1,"keyed":{},"timers":{},"values":{}}'));
    expect((await kvCheckpointStore(kv, 'bin').load())?.state).toBe(
      '{"version":1,"keyed":{},"timers":{},"values":{}}',
    );
  });

  it('in pieces go into the KV bucket piece by piece, never joined into one buffer, and load back whole', async () => {
    const store = new StateStore();
    const rows = store.rows('ring', 'meters', 170);
    const index = store.denseKeys('meters');
    for (let m = 0; m < 5000; m++) {
      const o = rows.create(index.intern(`MTR-${m}`));
      for (let i = 0; i < 170; i++) rows.data[o + i] = m + i / 4;
    }
    const state = store.beginSnapshot({ incremental: true }).finishState();
    expect(isSnapshotChunks(state)).toBe(true);
    const whole = Buffer.from(snapshotData(state) as Uint8Array);
    // The bucket as the store sees it, every value put recorded.
    const puts: Uint8Array[] = [];
    const spy = {
      get: (k: string) => kv.get(k),
      getBytes: (k: string) => kv.getBytes(k),
      delete: (k: string) => kv.delete(k),
      compareAndSet: (k: string, v: string, r: number) => kv.compareAndSet(k, v, r),
      put: (k: string, v: string | Uint8Array) => {
        if (typeof v !== 'string') puts.push(v);
        return kv.put(k, v);
      },
    };
    const writer = kvCheckpointStore(spy, 'pieces');
    await writer.load();
    await writer.save(checkpoint(1, state));
    expect(puts.length).toBeGreaterThan(1);
    // Each chunk is a view of one of the snapshot's pieces: none lies in a buffer of the state's size.
    for (const p of puts) expect(p.buffer.byteLength).toBeLessThan(whole.byteLength / 2);
    const loaded = await kvCheckpointStore(kv, 'pieces').load();
    expect(Buffer.compare(loaded!.state as Uint8Array, whole)).toBe(0);
  });

  it('in pieces are let go of piece by piece as the save stores them', async () => {
    const store = new StateStore();
    const rows = store.rows('ring', 'meters', 170);
    const index = store.denseKeys('meters');
    for (let m = 0; m < 5000; m++) {
      const o = rows.create(index.intern(`MTR-${m}`));
      for (let i = 0; i < 170; i++) rows.data[o + i] = m + i / 4;
    }
    const state = store.beginSnapshot({ incremental: true }).finishState();
    if (!isSnapshotChunks(state)) throw new Error('expected a state in pieces');
    const whole = Buffer.from(snapshotData(state) as Uint8Array);
    const pieces = state.chunks.length;
    expect(pieces).toBeGreaterThan(4);
    // At each chunk's put, how many of the state's pieces are still held.
    const held: number[] = [];
    const spy = {
      get: (k: string) => kv.get(k),
      getBytes: (k: string) => kv.getBytes(k),
      delete: (k: string) => kv.delete(k),
      compareAndSet: (k: string, v: string, r: number) => kv.compareAndSet(k, v, r),
      put: (k: string, v: string | Uint8Array) => {
        if (typeof v !== 'string') held.push(state.chunks.filter((c) => c.byteLength > 0).length);
        return kv.put(k, v);
      },
    };
    const writer = kvCheckpointStore(spy, 'released', { lanes: 1 });
    await writer.load();
    await writer.save(checkpoint(1, state));
    // Fewer and fewer pieces held as the chunks go out, none once saved.
    expect(held[0]).toBe(pieces);
    expect(held[held.length - 1]).toBeLessThan(pieces / 2);
    expect(state.chunks.every((c) => c.byteLength === 0)).toBe(true);
    const loaded = await kvCheckpointStore(kv, 'released').load();
    expect(Buffer.compare(loaded!.state as Uint8Array, whole)).toBe(0);
  });

  it('refuse a chunk of another state in their place (the digest differs)', async () => {
    const writer = kvCheckpointStore(kv, 'swapped', { chunkBytes: 64 * 1024 });
    await writer.load();
    await writer.save(checkpoint(3, binaryState(300)));
    const m = JSON.parse((await kv.get('swapped'))!.value) as { chunks: { writer: string; slot: number } };
    const chunk = `swapped.state.${m.chunks.writer}.${m.chunks.slot}.1`;
    const bytes = (await kv.getBytes(chunk))!.value;
    const forged = Uint8Array.from(bytes);
    forged[100] = (forged[100]! + 1) % 256;
    await kv.put(chunk, forged);
    const failed = await kvCheckpointStore(kv, 'swapped', { chunkBytes: 64 * 1024 })
      .load()
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CheckpointStoreError);
    expect((failed as Error).message).toMatch(/checkpoint swapped \(seq 3\): its state chunks do not match/);
  });

  it('are kept in the checkpoint file as base64, and a truncated one fails with SnapshotFormatError', async () => {
    const path = join(dir, 'checkpoint.json');
    const store = fileCheckpointStore(path);
    const state = binaryState(200);
    await store.save(checkpoint(4, state));
    const onDisk = JSON.parse(await readFile(path, 'utf8')) as { seq: number; stateEncoding: string };
    expect(onDisk).toMatchObject({ seq: 4, stateEncoding: 'base64' });
    const loaded = await store.load();
    expect(Buffer.compare(loaded!.state as Uint8Array, state)).toBe(0);
    expect(loaded).not.toHaveProperty('stateEncoding');

    // The state cut short (a disk that lost its tail, a hand edit): loads, then refuses to restore.
    const text = await readFile(path, 'utf8');
    const b64 = (JSON.parse(text) as { state: string }).state;
    await writeFile(
      path,
      text.replace(b64, Buffer.from(state.subarray(0, state.length - 100)).toString('base64')),
    );
    const torn = await store.load();
    const error = (() => {
      try {
        deserializeSnapshot(torn!.state);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(SnapshotFormatError);
    expect((error as SnapshotFormatError).context).toMatchObject({ bytes: state.length - 100, part: 'ring' });
  });
});
