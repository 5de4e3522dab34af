import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DenseVectors,
  deserializeSnapshot,
  isBinarySnapshot,
  SnapshotFormatError,
  StateStore,
  serializeSnapshot,
} from '../../core/index.js';

/** What the lists should hold: key number → its numbers. */
type Model = Map<number, number[]>;

type Op =
  | { kind: 'push'; n: number; values: number[]; capacity: number | null }
  | { kind: 'set'; n: number; at: number; value: number }
  | { kind: 'remove'; n: number; at: number; count: number }
  | { kind: 'truncate'; n: number; length: number }
  | { kind: 'dropFirst'; n: number; k: number }
  | { kind: 'advance'; n: number; k: number }
  | { kind: 'step' }
  | { kind: 'keyed'; key: string; value: number };

function apply(store: StateStore, lists: DenseVectors, model: Model, op: Op): void {
  const list = model.get('n' in op ? op.n : -1) ?? [];
  switch (op.kind) {
    case 'push':
      if (op.values.length === 2) lists.push2(op.n, op.values[0]!, op.values[1]!);
      else if (op.values.length === 1) lists.push(op.n, op.values[0]!);
      else {
        const at = lists.extend(op.n, op.values.length, op.capacity ?? undefined);
        expect(at).toBe(lists.start(op.n) + list.length);
        lists.array(op.n).set(op.values, at);
      }
      list.push(...op.values);
      break;
    case 'set':
      if (op.at < list.length) {
        lists.open(op.n)[lists.start(op.n) + op.at] = op.value;
        list[op.at] = op.value;
      }
      break;
    case 'remove':
      lists.remove(op.n, op.at, op.count);
      if (op.count > 0) list.splice(op.at, op.count);
      break;
    case 'truncate':
      lists.truncate(op.n, op.length);
      if (op.length < list.length) list.length = op.length;
      break;
    case 'dropFirst':
      lists.dropFirst(op.n, op.k);
      if (op.k > 0) list.splice(0, op.k);
      break;
    case 'advance':
      lists.advance(op.n, op.k);
      if (op.k > 0) list.splice(0, op.k);
      break;
    case 'keyed':
      store.keyed<number>('other').set(op.key, op.value);
      return;
    case 'step':
      return;
  }
  model.set(op.n, list);
}

function expectLists(lists: DenseVectors, model: Model): void {
  for (const [n, values] of model) {
    expect(lists.length(n), `list ${n}`).toBe(values.length);
    const a = lists.array(n);
    const s = lists.start(n);
    expect(s + values.length).toBeLessThanOrEqual(a.length);
    for (let i = 0; i < values.length; i++)
      expect(Object.is(a[s + i], values[i]), `list ${n}[${i}]`).toBe(true);
  }
}

/** Every number a float64 can be, edge values included: -0, NaN, ±Infinity, huge, tiny, int32 bounds. */
const number = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(
    -0,
    0,
    Number.NaN,
    Infinity,
    -Infinity,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    2 ** 31,
    -(2 ** 31),
  ),
);
// Key numbers far apart enough that a capture copies several slices of lists (1,024 a step).
const keyNumber = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 3000 }));
const small = fc.integer({ min: 0, max: 40 });
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('push' as const),
      n: keyNumber,
      values: fc.array(number, { minLength: 1, maxLength: 20 }),
      capacity: fc.option(fc.integer({ min: 0, max: 64 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('set' as const), n: keyNumber, at: small, value: number }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('remove' as const), n: keyNumber, at: small, count: small }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('truncate' as const), n: keyNumber, length: small }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dropFirst' as const), n: keyNumber, k: small }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), n: keyNumber, k: small }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('step' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('keyed' as const),
      key: fc.constantFrom('a', 'b'),
      value: fc.integer(),
    }),
  },
);

function newStore(): { store: StateStore; lists: DenseVectors } {
  const store = new StateStore();
  store.keyed('other');
  return { store, lists: store.vectors('test/lists', 'meters') };
}

describe('numeric lists (DenseVectors) in the state store', () => {
  it('hold what a plain array would, through pushes, changes in place, removals and shrinking', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const { store, lists } = newStore();
        const model: Model = new Map();
        for (const o of ops) apply(store, lists, model, o);
        expectLists(lists, model);
      }),
      { numRuns: 150 },
    );
  });

  it('grow to the capacity an extension names, never below the length, and snapshot only the length', () => {
    const { store, lists } = newStore();
    lists.extend(3, 5, 40);
    expect(lists.array(3).length).toBe(40);
    lists.array(3).set([1, 2, 3, 4, 5]);
    // Within the buffer: no reallocation, whatever capacity is named.
    const buffer = lists.array(3);
    lists.extend(3, 30, 1000);
    expect(lists.array(3)).toBe(buffer);
    // Past it: exactly the capacity named, or the new length when that is more.
    lists.extend(3, 10, 50);
    expect(lists.array(3).length).toBe(50);
    lists.extend(3, 20, 10);
    expect(lists.array(3).length).toBe(65);
    expect(Array.from(lists.array(3).subarray(0, 5))).toEqual([1, 2, 3, 4, 5]);
    const copy = new StateStore();
    copy.keyed('other');
    copy.restore(deserializeSnapshot(store.serialize()));
    const restored = copy.vectors('test/lists', 'meters');
    expect(restored.length(3)).toBe(65);
    expect(restored.array(3).length).toBeLessThan(1000);
  });

  it('round-trip exactly through the binary snapshot, registered before or after the restore', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), fc.boolean(), (ops, registerFirst) => {
        const { store, lists } = newStore();
        const model: Model = new Map();
        for (const o of ops) apply(store, lists, model, o);
        const bytes = store.beginSnapshot().finish();
        expect(isBinarySnapshot(bytes as Uint8Array)).toBe(true);
        const restored = new StateStore();
        restored.keyed('other');
        let again = registerFirst ? restored.vectors('test/lists', 'meters') : undefined;
        restored.restore(deserializeSnapshot(bytes));
        again ??= restored.vectors('test/lists', 'meters');
        expectLists(again, model);
        expect(Buffer.compare(restored.beginSnapshot().finish() as Uint8Array, bytes as Uint8Array)).toBe(0);
        // The JSON form (tests, tools) restores the same lists, -0 aside (JSON has none).
        const viaJson = new StateStore();
        viaJson.restore(deserializeSnapshot(serializeSnapshot(store.snapshot())));
        const jsonLists = viaJson.vectors('test/lists', 'meters');
        for (const [n, values] of model) {
          expect(jsonLists.length(n)).toBe(values.length);
          const a = jsonLists.array(n);
          const s = jsonLists.start(n);
          for (let i = 0; i < values.length; i++)
            expect(Object.is(a[s + i], values[i]) || (a[s + i] === 0 && values[i] === 0)).toBe(true);
        }
      }),
      { numRuns: 80 },
    );
  });

  it('a snapshot is the cut at beginSnapshot, whatever changes while it is copied', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(op, { maxLength: 60 }), (before, during) => {
        const { store, lists } = newStore();
        const model: Model = new Map();
        for (const o of before) apply(store, lists, model, o);
        const expected = store.beginSnapshot().finish() as Uint8Array;
        const atBarrier = new Map([...model].map(([n, v]) => [n, [...v]]));
        const snapshot = store.beginSnapshot();
        for (const o of during) {
          // A zero deadline copies one slice at most: the changes interleave with the slices.
          if (o.kind === 'step') snapshot.step(0);
          apply(store, lists, model, o);
        }
        const bytes = snapshot.finish() as Uint8Array;
        expect(Buffer.compare(bytes, expected)).toBe(0);
        const restored = newStore();
        restored.store.restore(deserializeSnapshot(bytes));
        expectLists(restored.lists, atBarrier);
        expectLists(lists, model);
      }),
      { numRuns: 150 },
    );
  });

  it('an emptied list keeps a small buffer: refilled, it holds only the new numbers; a capture begun before keeps the old', () => {
    for (const delta of [false, true]) {
      const { store, lists } = newStore();
      // An hour's moments: seven numbers, opened and closed every meter-hour.
      lists.extend(5, 7);
      lists.array(5).set([1, 2, 3, 4, 5, 6, 7]);
      lists.push2(6, 8, 9);
      const full = delta ? (store.beginSnapshot({ incremental: true }).finish() as Uint8Array) : undefined;
      lists.open(5)[0] = 10;
      const buffer = lists.array(5);
      const capture = store.beginSnapshot(delta ? { incremental: true, delta: true } : {});
      lists.remove(5, 0, 7);
      expect(lists.length(5)).toBe(0);
      expect(lists.array(5)).toBe(buffer);
      lists.push2(5, 11, 12);
      expect(lists.array(5)).toBe(buffer);
      // The capture holds the list as it was at its barrier, a snapshot now only the new numbers.
      const bytes = capture.finish() as Uint8Array;
      const atBarrier = newStore();
      atBarrier.store.restore(deserializeSnapshot(full ?? bytes));
      if (full !== undefined) atBarrier.store.applyDeltas([bytes]);
      expectLists(
        atBarrier.lists,
        new Map([
          [5, [10, 2, 3, 4, 5, 6, 7]],
          [6, [8, 9]],
        ]),
      );
      const now = newStore();
      now.store.restore(deserializeSnapshot(store.beginSnapshot().finish()));
      expectLists(
        now.lists,
        new Map([
          [5, [11, 12]],
          [6, [8, 9]],
        ]),
      );
      // Emptied by a truncation too; a large buffer is given back.
      lists.truncate(5, 0);
      expect(lists.array(5)).toBe(buffer);
      lists.extend(7, 100);
      lists.truncate(7, 0);
      expect(lists.array(7).length).toBe(0);
    }
  });

  it('a list taken from the front moves its start, not its numbers, and moves them down in its buffer while an eighth stays free; a capture keeps the cut', () => {
    for (const delta of [false, true]) {
      const { store, lists } = newStore();
      const values = (): number[] => {
        const s = lists.start(2);
        return Array.from(lists.array(2).subarray(s, s + lists.length(2)));
      };
      const range = (from: number, to: number): number[] =>
        Array.from({ length: to - from }, (_, i) => from + i);
      // A hold: 16 readings' worth (time, kW) in a buffer of 32.
      lists.extend(2, 32, 32);
      for (let i = 0; i < 32; i++) lists.open(2)[i] = i;
      const buffer = lists.array(2);
      const full = delta ? (store.beginSnapshot({ incremental: true }).finish() as Uint8Array) : undefined;
      lists.advance(2, 20);
      expect(lists.array(2)).toBe(buffer);
      expect(lists.start(2)).toBe(20);
      expect(values()).toEqual(range(20, 32));
      const capture = store.beginSnapshot(delta ? { incremental: true, delta: true } : {});
      // Out of room at its end: moved down in the same buffer, after the capture kept it.
      lists.push2(2, 100, 101);
      expect(lists.array(2)).toBe(buffer);
      expect(lists.start(2)).toBe(0);
      expect(values()).toEqual([...range(20, 32), 100, 101]);
      for (let i = 0; i < 8; i++) lists.push2(2, 102 + 2 * i, 103 + 2 * i);
      lists.advance(2, 6);
      lists.push2(2, 200, 201);
      expect(lists.start(2)).toBe(6);
      // 28 of 32 after the move (an eighth free): moved down again, not grown.
      lists.push2(2, 202, 203);
      expect(lists.array(2)).toBe(buffer);
      expect(lists.start(2)).toBe(0);
      expect(values()).toEqual([...range(26, 32), 100, 101, ...range(102, 118), 200, 201, 202, 203]);
      // Less than an eighth free after a move: a new buffer, the list at its start, an eighth free.
      lists.advance(2, 2);
      const at = lists.extend(2, 20);
      expect(lists.array(2)).not.toBe(buffer);
      expect(lists.array(2).length).toBe(64);
      expect(lists.start(2)).toBe(0);
      expect(at).toBe(26);
      expect(values().slice(0, 26)).toEqual([
        ...range(28, 32),
        100,
        101,
        ...range(102, 118),
        200,
        201,
        202,
        203,
      ]);
      const bytes = capture.finish() as Uint8Array;
      const atBarrier = newStore();
      atBarrier.store.restore(deserializeSnapshot(full ?? bytes));
      if (full !== undefined) atBarrier.store.applyDeltas([bytes]);
      expectLists(atBarrier.lists, new Map([[2, range(20, 32)]]));
      expect(atBarrier.lists.start(2)).toBe(0);
    }
  });

  it('narrows whole numbers to int32 in the encoding, and a restore clears lists the snapshot lacks', () => {
    const ints = newStore();
    const floats = newStore();
    for (let n = 0; n < 500; n++) {
      ints.lists.push2(n, n * 1000 - 2 ** 31 + 1, n);
      floats.lists.push2(n, n + 0.5, n);
    }
    const smaller = ints.store.beginSnapshot().finish() as Uint8Array;
    const larger = floats.store.beginSnapshot().finish() as Uint8Array;
    expect(larger.length - smaller.length).toBeGreaterThanOrEqual(1000 * 4 - 64);
    const back = newStore();
    back.lists.push(9999, 1);
    back.store.restore(deserializeSnapshot(smaller));
    expect(back.lists.array(499)[0]).toBe(499 * 1000 - 2 ** 31 + 1);
    expect(back.lists.length(9999)).toBe(0);
    const none = newStore();
    back.store.restore(deserializeSnapshot(none.store.beginSnapshot().finish()));
    expect(back.lists.length(499)).toBe(0);
  });

  it('refuses a truncated or corrupted binary snapshot with a SnapshotFormatError naming where', () => {
    const { store, lists } = newStore();
    for (let n = 0; n < 30; n++) for (let i = 0; i < n % 5; i++) lists.push2(n, n / 3, i);
    const bytes = store.beginSnapshot().finish() as Uint8Array;
    for (let cut = 4; cut < bytes.length; cut += 5)
      expect(() => deserializeSnapshot(bytes.subarray(0, cut)), `cut at ${cut}`).toThrow(SnapshotFormatError);
    expect(() => deserializeSnapshot(Buffer.concat([bytes, Buffer.alloc(8)]))).toThrow(SnapshotFormatError);
    const text = Buffer.from(bytes).toString('latin1');
    const total = /"total":(\d+)/.exec(text)![1]!;
    const miscounted = Buffer.from(
      text.replace(`"total":${total}`, `"total":${Number(total) - 2}`),
      'latin1',
    );
    expect(() => deserializeSnapshot(miscounted)).toThrow(SnapshotFormatError);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: bytes.length - 1 }),
        fc.integer({ min: 0, max: 255 }),
        (at, value) => {
          const hostile = Buffer.from(bytes);
          hostile[at] = value;
          try {
            deserializeSnapshot(hostile);
          } catch (e) {
            expect(e).toBeInstanceOf(SnapshotFormatError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
