import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  deserializeSnapshot,
  isSnapshotDelta,
  SnapshotChainError,
  SnapshotFormatError,
  type SnapshotInProgress,
  StateStore,
  type StoreSnapshot,
} from '../../core/index.js';

/** Changes an operator makes to its state between two batches, over every kind of state the store holds. */
type Op =
  | { kind: 'row'; n: number; at: number; value: number }
  | { kind: 'rowDelete'; n: number }
  | { kind: 'push'; n: number; value: number }
  | { kind: 'dropFirst'; n: number }
  | { kind: 'truncate'; n: number }
  | { kind: 'listSet'; n: number; value: number }
  | { kind: 'dense'; n: number; value: number }
  | { kind: 'denseReplace'; n: number; value: number }
  | { kind: 'denseDelete'; n: number }
  | { kind: 'keyed'; key: string; value: number }
  | { kind: 'keyedDelete'; key: string }
  | { kind: 'timer'; key: string; time: number }
  | { kind: 'timerDelete'; key: string }
  | { kind: 'fire'; watermark: number }
  | { kind: 'value'; value: number }
  | { kind: 'snapshot'; delta: boolean; inSteps: boolean }
  | { kind: 'finish' };

const METERS = 'meters';

/** The store of a graph with one stage of each kind of state. */
function graphStore(): StateStore {
  const store = new StateStore();
  register(store);
  return store;
}

function register(store: StateStore): void {
  store.rows('rows', METERS, 3);
  store.vectors('lists', METERS);
  store.denseKeyed<{ v: number }>('dense', METERS);
  store.keyed<{ v: number }>('plain');
  store.timers('timers');
  store.value('watermark', 0);
}

/** Meter `m<i>`'s dense number, given as the graph gives them: in first-seen order. */
function meter(store: StateStore, i: number): { n: number; key: string } {
  const key = `m${i}`;
  return { n: store.denseKeys(METERS).intern(key), key };
}

function apply(store: StateStore, op: Op): void {
  const rows = store.rows('rows', METERS, 3);
  const lists = store.vectors('lists', METERS);
  const dense = store.denseKeyed<{ v: number }>('dense', METERS);
  const plain = store.keyed<{ v: number }>('plain');
  const timers = store.timers('timers');
  switch (op.kind) {
    case 'row': {
      const { n } = meter(store, op.n);
      let offset = rows.open(n);
      if (offset < 0) offset = rows.create(n);
      rows.data[offset + op.at] = op.value;
      break;
    }
    case 'rowDelete':
      rows.delete(meter(store, op.n).n);
      break;
    case 'push':
      lists.push(meter(store, op.n).n, op.value);
      break;
    case 'dropFirst':
      lists.dropFirst(meter(store, op.n).n, 1);
      break;
    case 'truncate':
      lists.truncate(meter(store, op.n).n, 0);
      break;
    case 'listSet': {
      const { n } = meter(store, op.n);
      if (lists.length(n) > 0) lists.open(n)[0] = op.value;
      break;
    }
    case 'dense': {
      const { n, key } = meter(store, op.n);
      const s = dense.getAt(n, key);
      // Operators mutate the object they looked up, in place.
      if (s === undefined) dense.setAt(n, key, { v: op.value });
      else s.v += op.value;
      break;
    }
    case 'denseReplace': {
      const { n, key } = meter(store, op.n);
      dense.setAt(n, key, { v: op.value });
      break;
    }
    case 'denseDelete': {
      const { n, key } = meter(store, op.n);
      dense.deleteAt(n, key);
      break;
    }
    case 'keyed': {
      const s = plain.get(op.key);
      if (s === undefined) plain.set(op.key, { v: op.value });
      else s.v = op.value;
      break;
    }
    case 'keyedDelete':
      plain.delete(op.key);
      break;
    case 'timer':
      timers.set(op.key, 'flush', op.time);
      break;
    case 'timerDelete':
      timers.delete(op.key, 'flush');
      break;
    case 'fire':
      while (timers.popDue(op.watermark) !== undefined);
      break;
    case 'value':
      store.value('watermark', 0).set(op.value);
      break;
    default:
      break;
  }
}

/** What a snapshot holds, with timers as a set (their order in it says nothing), else exactly. */
function content(s: StoreSnapshot): unknown {
  const timers = Object.fromEntries(
    Object.entries(s.timers).map(([ns, list]) => [
      ns,
      (list as [string, string, number][]).map((t) => JSON.stringify(t)).sort(),
    ]),
  );
  const rows = Object.fromEntries(
    Object.entries(s.rows ?? {}).map(([ns, r]) => [ns, { ...r, present: [...r.present], data: [...r.data] }]),
  );
  const vectors = Object.fromEntries(
    Object.entries(s.vectors ?? {}).map(([ns, v]) => [
      ns,
      { ...v, lengths: [...v.lengths], data: [...v.data] },
    ]),
  );
  return { keyed: s.keyed, timers, values: s.values, indexes: s.indexes, rows, vectors };
}

const n = fc.integer({ min: 0, max: 40 });
const num = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double(),
  fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, -(2 ** 31), 1e-300),
);
const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('row' as const),
      n,
      at: fc.integer({ min: 0, max: 2 }),
      value: num,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rowDelete' as const), n }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('push' as const), n, value: num }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dropFirst' as const), n }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), n }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('listSet' as const), n, value: num }) },
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('dense' as const), n, value: fc.integer({ min: 1, max: 99 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('denseReplace' as const), n, value: fc.integer() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('denseDelete' as const), n }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('keyed' as const), key, value: num }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('keyedDelete' as const), key }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('timer' as const),
      key,
      time: fc.integer({ min: 0, max: 100 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('timerDelete' as const), key }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('fire' as const), watermark: fc.integer({ min: 0, max: 100 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('value' as const), value: num }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('snapshot' as const),
      delta: fc.boolean(),
      inSteps: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('finish' as const) }) },
);

/**
 * Runs `ops` on two stores alike: `chained` takes incremental snapshots (full or delta as the op asks),
 * `reference` full ones at the same barriers, both finished at the same moments, while the changes go on.
 * Returns the chain as saved (the last full state and its deltas) and the reference's last full state.
 */
function run(ops: readonly Op[]): {
  chains: { full: Uint8Array; deltas: Uint8Array[]; reference: Uint8Array }[];
} {
  const chained = graphStore();
  const reference = graphStore();
  let pending: { a: SnapshotInProgress; b: SnapshotInProgress } | undefined;
  let full: Uint8Array | undefined;
  let deltas: Uint8Array[] = [];
  const chains: { full: Uint8Array; deltas: Uint8Array[]; reference: Uint8Array }[] = [];
  const finish = (): void => {
    if (pending === undefined) return;
    const a = pending.a.finish() as Uint8Array;
    const b = pending.b.finish() as Uint8Array;
    expect(isSnapshotDelta(a)).toBe(pending.a.delta);
    if (pending.a.delta) deltas = [...deltas, a];
    else {
      full = a;
      deltas = [];
    }
    chains.push({ full: full!, deltas, reference: b });
    pending = undefined;
  };
  for (const o of ops) {
    if (o.kind === 'snapshot') {
      finish();
      pending = {
        a: chained.beginSnapshot({ incremental: true, delta: o.delta }),
        b: reference.beginSnapshot(),
      };
      // A deadline already past: each step copies one slice, the rest stays for later.
      if (o.inSteps) {
        pending.a.step(0);
        pending.b.step(0);
      } else finish();
    } else if (o.kind === 'finish') finish();
    else {
      apply(chained, o);
      apply(reference, o);
      if (pending !== undefined) {
        pending.a.step(0);
        pending.b.step(0);
      }
    }
  }
  finish();
  return { chains };
}

function restoreChain(full: Uint8Array, deltas: readonly Uint8Array[], late = false): StateStore {
  const store = new StateStore();
  // Namespaces registered before the restore, as a graph built before it does; or after (`late`).
  if (!late) register(store);
  store.restore(deserializeSnapshot(full));
  store.applyDeltas(deltas);
  if (late) register(store);
  return store;
}

function fullOf(store: StateStore): StoreSnapshot {
  return deserializeSnapshot(store.beginSnapshot().finish());
}

describe('incremental snapshots (a full snapshot, then deltas of what changed)', () => {
  it('restore, full state plus deltas in order, to exactly the state of a full snapshot at the same barrier', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 200, size: 'max' }), fc.boolean(), (ops, late) => {
        for (const { full, deltas, reference } of run(ops).chains) {
          const restored = restoreChain(full, deltas, late);
          expect(content(fullOf(restored))).toEqual(content(deserializeSnapshot(reference)));
        }
      }),
      { numRuns: 100 },
    );
  });

  it('does nothing per changed key at the barrier of a delta: its keys are listed in the steps after it', () => {
    const build = (): StateStore => {
      const store = new StateStore();
      store.rows('r', METERS, 1);
      const state = store.denseKeyed<{ v: number }>('stage', METERS);
      const index = store.denseKeys(METERS);
      for (let i = 0; i < 3000; i++) state.setAt(index.intern(`MTR-${i}`), `MTR-${i}`, { v: i });
      return store;
    };
    const store = build();
    const state = store.denseKeyed<{ v: number }>('stage', METERS);
    const index = store.denseKeys(METERS);
    const full = store.beginSnapshot({ incremental: true }).finish();
    // Every entry looked up (and changed in place) since: the delta carries them all.
    for (let i = 0; i < 3000; i++) state.getAt(i, `MTR-${i}`)!.v += 1;
    const expected = Array.from({ length: 3000 }, (_, i) => [`MTR-${i}`, { v: i + 1 }]);
    let lookups = 0;
    const keyOf = index.keyOf.bind(index);
    index.keyOf = (n: number) => {
      lookups += 1;
      return keyOf(n);
    };
    const snapshot = store.beginSnapshot({ incremental: true, delta: true });
    expect(snapshot.delta).toBe(true);
    expect(lookups).toBe(0);
    // Changes after the barrier, between steps, do not reach the delta: it holds the barrier's values.
    let steps = 0;
    while (!snapshot.step(Number.NEGATIVE_INFINITY)) {
      const i = (steps * 97) % 3000;
      state.getAt(i, `MTR-${i}`)!.v = -1;
      state.setAt(i + 1 < 3000 ? i + 1 : 0, `MTR-${i + 1 < 3000 ? i + 1 : 0}`, { v: -2 });
      steps += 1;
    }
    expect(steps).toBeGreaterThan(2);
    expect(lookups).toBe(3000);
    const delta = snapshot.finish() as Uint8Array;
    const restored = build();
    restored.restore(deserializeSnapshot(full));
    restored.applyDeltas([delta]);
    expect(deserializeSnapshot(restored.beginSnapshot().finish()).keyed.stage).toEqual(expected);
  });

  it('save only what changed: a delta of a few changed meters is a small part of the full state', () => {
    const store = graphStore();
    for (let i = 0; i < 2000; i++) {
      apply(store, { kind: 'row', n: i, at: 1, value: i + 0.5 });
      apply(store, { kind: 'push', n: i, value: i });
      apply(store, { kind: 'dense', n: i, value: i });
    }
    const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
    for (let i = 0; i < 20; i++) apply(store, { kind: 'row', n: i * 7, at: 2, value: 3 });
    expect(meter(store, 7).n).toBe(7);
    const snapshot = store.beginSnapshot({ incremental: true, delta: true });
    expect(snapshot.delta).toBe(true);
    const delta = snapshot.finish() as Uint8Array;
    expect(delta.length).toBeLessThan(full.length / 20);
    const restored = restoreChain(full, [delta]);
    expect(restored.rows('rows', METERS, 3).data[7 * 3 + 2]).toBe(3);
    expect(content(fullOf(restored))).toEqual(content(fullOf(store)));
  });

  describe('a chain that does not hold together is refused, never restored into a wrong state', () => {
    /** A full state and three deltas, each changing meter 1's row. */
    function chain(): { full: Uint8Array; deltas: Uint8Array[] } {
      const store = graphStore();
      apply(store, { kind: 'row', n: 1, at: 0, value: 1 });
      const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
      const deltas: Uint8Array[] = [];
      for (let i = 2; i <= 4; i++) {
        apply(store, { kind: 'row', n: 1, at: 0, value: i });
        deltas.push(store.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array);
      }
      return { full, deltas };
    }

    it('a delta lost from the middle', () => {
      const { full, deltas } = chain();
      expect(() => restoreChain(full, [deltas[0]!, deltas[2]!])).toThrow(SnapshotChainError);
      expect(() => restoreChain(full, [deltas[1]!])).toThrow(/missing or out of order/);
    });

    it('deltas out of order', () => {
      const { full, deltas } = chain();
      expect(() => restoreChain(full, [deltas[1]!, deltas[0]!, deltas[2]!])).toThrow(SnapshotChainError);
    });

    it('a delta of another chain (its base does not match)', () => {
      const a = chain();
      const b = chain();
      expect(() => restoreChain(a.full, [b.deltas[0]!])).toThrow(/belongs to chain/);
      // Nor on a full state that starts no chain.
      const plain = graphStore().beginSnapshot().finish() as Uint8Array;
      expect(() => restoreChain(plain, [a.deltas[0]!])).toThrow(SnapshotChainError);
    });

    it('a corrupt or truncated delta, and a delta of an unknown format', () => {
      const { full, deltas } = chain();
      const flipped = Uint8Array.from(deltas[0]!);
      flipped[flipped.length - 3]! ^= 0x10;
      expect(() => restoreChain(full, [flipped])).toThrow(SnapshotFormatError);
      expect(() => restoreChain(full, [deltas[0]!.subarray(0, deltas[0]!.length - 8)])).toThrow(
        SnapshotFormatError,
      );
      expect(() => restoreChain(full, [deltas[0]!.subarray(0, 6)])).toThrow(SnapshotFormatError);
    });

    it('leaves the store as restored from the full state when a later delta is bad', () => {
      const { full, deltas } = chain();
      const store = graphStore();
      store.restore(deserializeSnapshot(full));
      const bad = Uint8Array.from(deltas[2]!);
      bad[bad.length - 1]! ^= 1;
      expect(() => store.applyDeltas([deltas[0]!, deltas[1]!, bad])).toThrow(SnapshotFormatError);
      // Meter 1 is the first meter numbered: its row is row 0.
      expect(store.rows('rows', METERS, 3).data[0]).toBe(1);
    });
  });

  it('starts a new chain after a restore: the first incremental snapshot is full', () => {
    const store = graphStore();
    apply(store, { kind: 'row', n: 1, at: 0, value: 1 });
    const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
    const restored = restoreChain(full, []);
    const next = restored.beginSnapshot({ incremental: true, delta: true });
    expect(next.delta).toBe(false);
    expect(isSnapshotDelta(next.finish())).toBe(false);
  });
});
