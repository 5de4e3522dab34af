/**
 * A full binary snapshot as a checkpoint saves it comes in pieces (`SnapshotChunks`): the bytes of the
 * one-buffer encoding, with no buffer of the whole state's size made, the rows' capture pieces taken over
 * as its own.
 */
import { describe, expect, it, vi } from 'vitest';
import {
  decodeBinarySnapshot,
  deserializeSnapshot,
  encodeBinarySnapshot,
  isSnapshotChunks,
  joinSnapshotChunks,
  type RowsHeader,
  StateStore,
  type VectorsHeader,
} from '../../core/index.js';

/** Rows of int32 numbers (odd width), of float64 numbers, lists of both kinds, keyed JSON and timers. */
function filledStore(meters: number): StateStore {
  const store = new StateStore();
  const index = store.denseKeys('meters');
  const ints = store.rows('ints', 'meters', 3);
  const floats = store.rows('floats', 'meters', 170);
  const intLists = store.vectors('intLists', 'meters');
  const floatLists = store.vectors('floatLists', 'meters');
  const held = store.keyed<{ n: number }>('held');
  const timers = store.timers('hours');
  for (let m = 0; m < meters; m++) {
    const n = index.intern(`MTR-${m}`);
    if (m % 7 === 3) continue; // some numbers without rows: absent rows in between
    let o = ints.create(n);
    ints.data[o] = m;
    ints.data[o + 1] = -m - 1;
    ints.data[o + 2] = m * 3;
    o = floats.create(n);
    for (let i = 0; i < 170; i++) floats.data[o + i] = m + i / 8;
    for (let i = 0; i < m % 5; i++) intLists.push(n, m + i);
    floatLists.push2(n, m + 0.5, -0);
    held.set(`MTR-${m}`, { n: m });
    timers.set(`MTR-${m}`, 'end', 3_600_000 * (1 + (m % 3)));
  }
  return store;
}

describe('a full snapshot in pieces', () => {
  it('holds exactly the bytes of the one-buffer encoding, in pieces none of which is the whole state', () => {
    // 2,600 rows: three capture pieces of at most 1,024 rows each.
    const store = filledStore(2600);
    const expected = deserializeSnapshot(store.beginSnapshot().finish());
    const state = store.beginSnapshot({ incremental: true }).finishState();
    expect(isSnapshotChunks(state)).toBe(true);
    if (!isSnapshotChunks(state)) return;
    const bytes = joinSnapshotChunks(state);
    expect(bytes.byteLength).toBe(state.byteLength);
    // The one-buffer encoder, given what the pieces decode to, writes the very same bytes.
    const { json, rows, vectors } = decodeBinarySnapshot(bytes);
    const parsed = JSON.parse(json) as { rows: RowsHeader[]; vectors: VectorsHeader[] };
    expect(parsed.rows.find((h) => h.ns === 'ints')?.type).toBe('i32');
    expect(parsed.rows.find((h) => h.ns === 'floats')?.type).toBeUndefined();
    const again = encodeBinarySnapshot(
      json,
      parsed.rows.map((h) => rows.get(h.ns)!),
      parsed.rows,
      parsed.vectors.map((h) => vectors.get(h.ns)!),
      parsed.vectors,
    );
    expect(Buffer.compare(Buffer.from(again), Buffer.from(bytes))).toBe(0);
    const restored = deserializeSnapshot(state);
    expect(restored.rows).toEqual(expected.rows);
    expect(restored.vectors).toEqual(expected.vectors);
    expect(restored.keyed).toEqual(expected.keyed);
    expect(restored.timers).toEqual(expected.timers);
    // No buffer of the state's size: every piece lies in a buffer of at most a capture piece of rows
    // (1,024 rows of 170 numbers) or the JSON text.
    const jsonBytes = Buffer.byteLength(json) + 8;
    const largest = Math.max(...state.chunks.map((c) => c.buffer.byteLength));
    expect(largest).toBeLessThanOrEqual(Math.max(1024 * 170 * 8, jsonBytes + 8));
    expect(largest).toBeLessThan(state.byteLength / 2);
  });

  it('restores to the same content whether saved in pieces or in one buffer', () => {
    const store = filledStore(1500);
    const whole = store.beginSnapshot().finish();
    const pieces = store.beginSnapshot().finishState();
    const a = new StateStore();
    a.restore(deserializeSnapshot(whole));
    const b = new StateStore();
    b.restore(deserializeSnapshot(pieces));
    expect(
      Buffer.compare(Buffer.from(b.beginSnapshot().finish()), Buffer.from(a.beginSnapshot().finish())),
    ).toBe(0);
  });

  it('measures and writes the keyed entries as text in pieces of a bounded number of entries, not a namespace at once', () => {
    const store = filledStore(20_000);
    const byteLength = vi.spyOn(Buffer, 'byteLength');
    try {
      const state = store.beginSnapshot({ incremental: true }).finishState();
      const texts = byteLength.mock.calls.map(([s]) => (typeof s === 'string' ? s.length : 0));
      const keyedChars = JSON.stringify(deserializeSnapshot(state).keyed.held).length;
      expect(keyedChars).toBeGreaterThan(400_000);
      // The largest piece of JSON text measured at once is a block of entries (1,024 keyed entries, 4,096
      // timers or index keys), not a namespace of 20,000.
      expect(Math.max(...texts)).toBeLessThan(keyedChars / 2);
    } finally {
      byteLength.mockRestore();
    }
  });
});
