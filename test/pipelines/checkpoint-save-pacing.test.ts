/**
 * A checkpoint's save into the NATS KV bucket shares the event loop and the connection with a live
 * worker's pulls and acks: it hands over one chunk per turn of the loop and keeps few chunks in flight,
 * and what it saved still loads back byte for byte.
 */
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import type { SnapshotChunks } from '../../core/index.js';
import { type CheckpointKvStore, kvCheckpointStore, LoopTurns } from '../../pipelines/checkpoints.js';
import { emptyTotals } from '../../pipelines/meter-quality-outputs.js';
import type { Checkpoint } from '../../pipelines/runner.js';
import { uniqueName } from '../harness/servers.js';

let nc: NatsConnection;
let kv: CheckpointKv;
beforeAll(async () => {
  nc = await connectNats({ servers: inject('natsUrl'), name: 'checkpoint-pacing-test' });
  kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('cppace'), storage: 'memory' });
});
afterAll(async () => {
  await nc?.close();
});

/** A full state in pieces, as a checkpoint hands it over: `mb` MB of patterned bytes. */
function stateOf(mb: number): SnapshotChunks {
  const chunks: Uint8Array[] = [];
  for (let c = 0; c < mb; c++) {
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + c * 7) & 0xff;
    chunks.push(chunk);
  }
  return { kind: 'chunks', chunks, byteLength: mb << 20 };
}

/**
 * The real bucket, with each chunk put noted: the loop iteration it started in (counted by an immediate
 * that re-arms itself: one per iteration) and how many chunk puts were in flight then.
 */
function observed(): {
  store: CheckpointKvStore;
  puts: { turn: number; inFlight: number }[];
  stop: () => void;
} {
  let turn = 0;
  let running = true;
  const tick = (): void => {
    turn++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  const puts: { turn: number; inFlight: number }[] = [];
  let inFlight = 0;
  const store: CheckpointKvStore = {
    get: (k) => kv.get(k),
    getBytes: (k) => kv.getBytes(k),
    compareAndSet: (k, v, r) => kv.compareAndSet(k, v, r),
    delete: (k) => kv.delete(k),
    put: async (k, v) => {
      if (!k.includes('.state.')) return kv.put(k, v);
      inFlight++;
      puts.push({ turn, inFlight });
      try {
        return await kv.put(k, v);
      } finally {
        inFlight--;
      }
    },
  };
  return { store, puts, stop: () => (running = false) };
}

describe('a checkpoint save into the KV bucket', () => {
  it('hands over one chunk per turn of the event loop, at most two in flight, and loads back whole', async () => {
    const state = stateOf(12); // 24 chunks of 512 KiB
    // The save lets go of the state's pieces as it stores them: what it must store, taken before.
    const pieces = state.chunks.map((c) => Buffer.from(c));
    const { store, puts, stop } = observed();
    try {
      const writer = kvCheckpointStore(store, 'paced');
      await writer.load();
      const cp: Checkpoint = {
        seq: 1,
        position: { lastSeq: 1 },
        state,
        totals: emptyTotals(),
      };
      await writer.save(cp);
    } finally {
      stop();
    }
    expect(puts).toHaveLength(24);
    const perTurn = new Map<number, number>();
    for (const p of puts) perTurn.set(p.turn, (perTurn.get(p.turn) ?? 0) + 1);
    expect(Math.max(...perTurn.values())).toBe(1);
    expect(Math.max(...puts.map((p) => p.inFlight))).toBeLessThanOrEqual(2);
    const loaded = await kvCheckpointStore(kv, 'paced').load();
    const bytes = loaded!.state as Uint8Array;
    expect(bytes.byteLength).toBe(state.byteLength);
    for (let c = 0; c < pieces.length; c++)
      expect(Buffer.compare(bytes.subarray(c << 20, (c + 1) << 20), pieces[c]!)).toBe(0);
  });

  it('takes its chunks in the order asked for, one turn of the loop apart', async () => {
    const turns = new LoopTurns();
    const order: number[] = [];
    let iteration = 0;
    let running = true;
    const tick = (): void => {
      iteration++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const seen: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        await turns.next();
        order.push(i);
        seen.push(iteration);
      }),
    );
    running = false;
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
  });
});
