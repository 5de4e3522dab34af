import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RowsCapture, RowsDeltaCapture } from '../../core/dense-rows.js';
import {
  type DenseRows,
  deserializeSnapshot,
  isBinarySnapshot,
  SnapshotFormatError,
  StateStore,
  serializeSnapshot,
} from '../../core/index.js';
import { decodeBinarySnapshot, encodeBinarySnapshot, rowsHeaders } from '../../core/snapshot-codec.js';

const WIDTH = 3;

/** What the rows should hold: row number → its numbers. */
type Model = Map<number, number[]>;

type Op =
  | { kind: 'set'; n: number; col: number; value: number }
  | { kind: 'delete'; n: number }
  | { kind: 'step' }
  | { kind: 'keyed'; key: string; value: number };

function apply(store: StateStore, rows: DenseRows, model: Model, op: Op): void {
  switch (op.kind) {
    case 'set': {
      let o = rows.open(op.n);
      if (o < 0) {
        o = rows.create(op.n);
        model.set(op.n, new Array<number>(WIDTH).fill(0));
      }
      rows.data[o + op.col] = op.value;
      model.get(op.n)![op.col] = op.value;
      break;
    }
    case 'delete':
      rows.delete(op.n);
      model.delete(op.n);
      break;
    case 'keyed':
      store.keyed<number>('other').set(op.key, op.value);
      break;
    case 'step':
      break;
  }
}

function expectRows(rows: DenseRows, model: Model): void {
  expect(rows.size).toBe(model.size);
  for (const [n, values] of model) {
    const o = rows.open(n);
    expect(o, `row ${n}`).toBeGreaterThanOrEqual(0);
    for (let c = 0; c < WIDTH; c++)
      expect(Object.is(rows.data[o + c], values[c]), `row ${n}[${c}]`).toBe(true);
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
// Row numbers far apart enough that a capture copies several slices of rows (1,024 a step).
const rowNumber = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 4000 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      n: rowNumber,
      col: fc.integer({ min: 0, max: WIDTH - 1 }),
      value: number,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), n: rowNumber }) },
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
const onlyInts = op.filter((o) => o.kind !== 'set' || ((o.value | 0) === o.value && !Object.is(o.value, -0)));

/** Creates row `n` and sets one number: `data` is read after `create`, which may grow (replace) it. */
function put(rows: DenseRows, n: number, col: number, value: number): void {
  const o = rows.create(n);
  rows.data[o + col] = value;
}

function newStore(): { store: StateStore; rows: DenseRows } {
  const store = new StateStore();
  store.keyed('other');
  return { store, rows: store.rows('test/rows', 'meters', WIDTH) };
}

describe('numeric rows (DenseRows) in the state store', () => {
  it('round-trip exactly through the binary snapshot, registered before or after the restore', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(op, onlyInts), { maxLength: 80 }), fc.boolean(), (ops, registerFirst) => {
        const { store, rows } = newStore();
        const model: Model = new Map();
        for (const o of ops) apply(store, rows, model, o);
        const bytes = store.beginSnapshot().finish();
        expect(typeof bytes).not.toBe('string');
        expect(isBinarySnapshot(bytes as Uint8Array)).toBe(true);
        const restored = new StateStore();
        restored.keyed('other');
        let again = registerFirst ? restored.rows('test/rows', 'meters', WIDTH) : undefined;
        restored.restore(deserializeSnapshot(bytes));
        again ??= restored.rows('test/rows', 'meters', WIDTH);
        expectRows(again, model);
        expect(Buffer.compare(restored.beginSnapshot().finish() as Uint8Array, bytes as Uint8Array)).toBe(0);
        // The JSON form (tests, tools) restores the same rows, -0 aside (JSON has none).
        const viaJson = new StateStore();
        viaJson.restore(deserializeSnapshot(serializeSnapshot(store.snapshot())));
        const jsonRows = viaJson.rows('test/rows', 'meters', WIDTH);
        for (const [n, values] of model) {
          const o = jsonRows.open(n);
          for (let c = 0; c < WIDTH; c++) {
            const v = jsonRows.data[o + c]!;
            expect(Object.is(v, values[c]) || (v === 0 && values[c] === 0)).toBe(true);
          }
        }
      }),
      { numRuns: 80 },
    );
  });

  it('a snapshot is the cut at beginSnapshot, whatever changes while it is copied', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(op, { maxLength: 60 }), (before, during) => {
        const { store, rows } = newStore();
        const model: Model = new Map();
        for (const o of before) apply(store, rows, model, o);
        const expected = store.beginSnapshot().finish() as Uint8Array;
        const atBarrier = new Map([...model].map(([n, v]) => [n, [...v]]));
        const snapshot = store.beginSnapshot();
        for (const o of during) {
          // A zero deadline copies one slice at most: the changes interleave with the slices.
          if (o.kind === 'step') snapshot.step(0);
          apply(store, rows, model, o);
        }
        const bytes = snapshot.finish() as Uint8Array;
        expect(Buffer.compare(bytes, expected)).toBe(0);
        const restored = newStore();
        restored.store.restore(deserializeSnapshot(bytes));
        expectRows(restored.rows, atBarrier);
        // The live rows went on changing.
        expectRows(rows, model);
      }),
      { numRuns: 150 },
    );
  });

  it("allocates and copies no row at a full snapshot's barrier: its steps and changes take a piece of ≤ 1,024 rows each", () => {
    const { store, rows } = newStore();
    for (let n = 0; n < 5000; n++) put(rows, n, n % WIDTH, n % 7 === 0 ? n + 0.5 : n);
    const snapshot = store.beginSnapshot();
    const capture = rows.capture;
    expect(capture).toBeInstanceOf(RowsCapture);
    const allocated = (): number => (capture as RowsCapture).allocatedRows;
    // The barrier itself: nothing of the rows' size allocated.
    expect(allocated()).toBe(0);
    // A change ahead of the steps takes the one piece its row is in.
    put(rows, 4500, 0, -1);
    expect(allocated()).toBe(5000 - 4096);
    // A step past its deadline copies one piece, and allocates it.
    snapshot.step(0);
    expect(allocated()).toBe(5000 - 4096 + 1024);
    snapshot.step(0);
    expect(allocated()).toBe(5000 - 4096 + 2048);
    const bytes = snapshot.finish() as Uint8Array;
    const back = newStore();
    back.store.restore(deserializeSnapshot(bytes));
    expect(back.rows.data[back.rows.open(4500)]).toBe(4500 % WIDTH === 0 ? 4500 : 0);
    expect(back.rows.data[back.rows.open(4502) + (4502 % WIDTH)]).toBe(4502);
  });

  it("allocates no changed row at a delta's barrier: its steps and changes take a piece of ≤ 1,024 rows each", () => {
    const { store, rows } = newStore();
    for (let n = 0; n < 5000; n++) put(rows, n, n % WIDTH, n);
    const full = store.beginSnapshot({ incremental: true }).finish();
    // Every row changed since: the delta carries them all.
    for (let n = 0; n < 5000; n++) put(rows, n, 0, n + 0.5);
    const snapshot = store.beginSnapshot({ incremental: true, delta: true });
    expect(snapshot.delta).toBe(true);
    const capture = rows.capture;
    expect(capture).toBeInstanceOf(RowsDeltaCapture);
    const allocated = (): number => (capture as RowsDeltaCapture).allocatedRows;
    expect(allocated()).toBe(0);
    // A change ahead of the steps takes the one piece its row is in.
    put(rows, 4500, 1, -1);
    expect(allocated()).toBe(5000 - 4096);
    snapshot.step(0);
    expect(allocated()).toBe(5000 - 4096 + 1024);
    const delta = snapshot.finish() as Uint8Array;
    const back = newStore();
    back.store.restore(deserializeSnapshot(full));
    back.store.applyDeltas([delta]);
    for (const n of [0, 1023, 1024, 4500, 4999]) {
      const o = back.rows.open(n);
      expect(back.rows.data[o]).toBe(n + 0.5);
    }
    expect(back.rows.data[back.rows.open(4500) + 1]).toBe(4500 % WIDTH === 1 ? 4500 : 0);
  });

  it('encodes rows captured in pieces to the very bytes of the rows in one buffer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3500 }),
        fc.constantFrom(0.5, -0, 2 ** 31, Number.NaN, Number.POSITIVE_INFINITY, 1e-300),
        fc.nat(3500),
        fc.boolean(),
        (count, odd, at, anyOdd) => {
          const { store, rows } = newStore();
          for (let n = 0; n < count; n += n % 5 === 0 ? 2 : 1) put(rows, n, n % WIDTH, n - 1000);
          if (anyOdd && count > 0) put(rows, at % count, 1, odd);
          const bytes = store.beginSnapshot().finish() as Uint8Array;
          const { json } = decodeBinarySnapshot(bytes);
          const whole = store.snapshot().rows!;
          const headers = rowsHeaders(new Map(Object.entries(whole)));
          expect(json).toContain(`"rows":${JSON.stringify(headers)}`);
          const expected = encodeBinarySnapshot(json, Object.values(whole), headers);
          expect(Buffer.compare(bytes, expected)).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('grows by doubling under a capture in progress, and keeps the cut', () => {
    const { store, rows } = newStore();
    for (let n = 0; n < 3000; n += 3) put(rows, n, 1, n);
    const snapshot = store.beginSnapshot();
    snapshot.step(0);
    for (let n = 0; n < 100_000; n += 997) put(rows, n, 1, -n);
    const restored = newStore();
    restored.store.restore(deserializeSnapshot(snapshot.finish()));
    expect(restored.rows.size).toBe(1000);
    for (let n = 0; n < 3000; n += 3) expect(restored.rows.data[restored.rows.open(n) + 1]).toBe(n);
    expect(restored.rows.open(99_700)).toBe(-1);
    expect(rows.data[rows.open(99_700) + 1]).toBe(-99_700);
  });

  it('narrows whole numbers to int32 in the encoding: half the bytes, the same numbers back', () => {
    const ints = newStore();
    const floats = newStore();
    for (let n = 0; n < 1000; n++) {
      put(ints.rows, n, 0, n * 1000 - 2 ** 31 + 1);
      put(floats.rows, n, 0, n + 0.5);
    }
    const small = ints.store.beginSnapshot().finish() as Uint8Array;
    const large = floats.store.beginSnapshot().finish() as Uint8Array;
    // 4 bytes a number fewer, less the longer JSON part that says so.
    expect(large.length - small.length).toBeGreaterThanOrEqual(1000 * WIDTH * 4 - 64);
    const back = newStore();
    back.store.restore(deserializeSnapshot(small));
    expect(back.rows.data[back.rows.open(999)]).toBe(999 * 1000 - 2 ** 31 + 1);
  });

  it('refuses a truncated or corrupted binary snapshot with a SnapshotFormatError naming where', () => {
    const { store, rows } = newStore();
    store.keyed<number>('other').set('a', 1);
    for (let n = 0; n < 50; n++) put(rows, n, 2, n / 3);
    const bytes = store.beginSnapshot().finish() as Uint8Array;
    for (let cut = 0; cut < bytes.length; cut += 7) {
      const error = (() => {
        try {
          deserializeSnapshot(bytes.subarray(0, cut));
        } catch (e) {
          return e;
        }
      })();
      expect(error, `cut at ${cut}`).toBeInstanceOf(SnapshotFormatError);
      expect((error as SnapshotFormatError).retryable).toBe(false);
      // Too short to carry the magic: read as JSON text, which it is not.
      if (cut >= 4) expect((error as SnapshotFormatError).context.bytes).toBe(cut);
    }
    // Extra bytes, a bad presence byte, a JSON part that does not parse, a row count beyond the bytes.
    expect(() => deserializeSnapshot(Buffer.concat([bytes, Buffer.alloc(8)]))).toThrow(SnapshotFormatError);
    const json = Buffer.from(bytes).readUInt32LE(4);
    const presence = Buffer.from(bytes);
    presence[((8 + json + 7) & ~7) + 3] = 9;
    expect(() => deserializeSnapshot(presence)).toThrow(/presence byte 9 of row 3/);
    const garbled = Buffer.from(bytes);
    garbled[8] = 0x7b + 1;
    expect(() => deserializeSnapshot(garbled)).toThrow(/JSON part does not parse/);
    const text = Buffer.from(bytes).toString('latin1');
    const inflated = Buffer.from(text.replace('"count":50', '"count":90'), 'latin1');
    expect(() => deserializeSnapshot(inflated)).toThrow(/truncated: rows test\/rows need/);
  });

  it('any byte changed in a binary snapshot decodes or fails with SnapshotFormatError, never otherwise', () => {
    const { store, rows } = newStore();
    for (let n = 0; n < 20; n++) put(rows, n, 1, n);
    const bytes = store.beginSnapshot().finish() as Uint8Array;
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
            // A bad magic makes it JSON text, which does not parse: the same error.
            expect(e).toBeInstanceOf(SnapshotFormatError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('writes zeros in every padding (no stale memory goes into a checkpoint)', () => {
    for (let count = 1; count <= 9; count++) {
      const { store, rows } = newStore();
      for (let n = 0; n < count; n++) put(rows, n, 0, n); // whole numbers: int32, 12 bytes a row
      store.value('v', 'x'.repeat(count)).set('x'.repeat(count)); // moves the end of the JSON part
      const bytes = Buffer.from(store.beginSnapshot().finish() as Uint8Array);
      const json = bytes.readUInt32LE(4);
      const pad8 = (n: number) => (n + 7) & ~7;
      const jsonEnd = 8 + json;
      const presenceAt = pad8(jsonEnd);
      const dataAt = presenceAt + pad8(count);
      const end = dataAt + pad8(count * WIDTH * 4);
      expect(bytes.length).toBe(end);
      const pads = [
        ...bytes.subarray(jsonEnd, presenceAt),
        ...bytes.subarray(presenceAt + count, dataAt),
        ...bytes.subarray(dataAt + count * WIDTH * 4, end),
      ];
      expect(pads.every((b) => b === 0)).toBe(true);
    }
  });

  it('a store without rows keeps writing JSON text (version 1), readable as before', () => {
    const store = new StateStore();
    store.keyed<number>('k').set('a', 1);
    const text = store.beginSnapshot().finish();
    expect(typeof text).toBe('string');
    expect(JSON.parse(text as string).version).toBe(1);
  });
});

describe('rows upgraded from the keyed entries of a snapshot taken before them', () => {
  /** An old layout: `{ a, f }` per meter as a keyed entry, beside rows of another namespace. */
  const legacyStore = (): StateStore => {
    const store = new StateStore();
    store.rows('other', 'meters', 2);
    const old = store.denseKeyed<{ a: number; f: string | null }>('rule', 'meters');
    const index = store.denseKeys('meters');
    for (const [key, a, f] of [
      ['M1', 1.5, null],
      ['M2', 2.5, 'open'],
    ] as const)
      old.setAt(index.intern(key), key, { a, f });
    return store;
  };
  /** The new layout: `a` in a row, `f` left in the keyed entry while not null. */
  const register = (store: StateStore): DenseRows =>
    store.rows('rule/row', 'meters', 1, {
      namespace: 'rule',
      upgrade: (value, _n, d, o) => {
        const v = value as { a: number; f: string | null };
        d[o] = v.a;
        return v.f ?? undefined;
      },
    });
  const content = (store: StateStore, rows: DenseRows) => {
    const index = store.denseKeys('meters');
    return {
      rows: ['M1', 'M2', 'M3'].map((k) => {
        const n = index.numberOf(k);
        return n !== undefined && rows.has(n) ? rows.data[n] : undefined;
      }),
      keyed: [...store.keyed('rule').entries()],
    };
  };

  it.each([
    ['before', true],
    ['after', false],
  ])('from a binary snapshot holding other rows (registered %s the restore)', (_, first) => {
    const old = legacyStore();
    const bytes = old.beginSnapshot().finish();
    expect(typeof bytes).not.toBe('string');
    const store = new StateStore();
    const early = first ? register(store) : undefined;
    store.restore(deserializeSnapshot(bytes));
    const rows = early ?? register(store);
    expect(content(store, rows)).toEqual({ rows: [1.5, 2.5, undefined], keyed: [['M2', 'open']] });
  });

  it('from the deltas on such a snapshot: their changed entries, and a namespace they replace', () => {
    const old = legacyStore();
    const full = old.beginSnapshot({ incremental: true }).finish() as Uint8Array;
    const entries = old.denseKeyed<{ a: number; f: string | null }>('rule', 'meters');
    const index = old.denseKeys('meters');
    entries.getAt(0, 'M1')!.f = 'opened';
    entries.setAt(index.intern('M3'), 'M3', { a: 3.5, f: null });
    const changed = old.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
    entries.deleteAt(1, 'M2');
    const replaced = old.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
    for (const [deltas, want] of [
      [
        [changed],
        {
          rows: [1.5, 2.5, 3.5],
          keyed: [
            ['M2', 'open'],
            ['M1', 'opened'],
          ],
        },
      ],
      [[changed, replaced], { rows: [1.5, undefined, 3.5], keyed: [['M1', 'opened']] }],
    ] as const) {
      const store = new StateStore();
      const rows = register(store);
      store.restore(deserializeSnapshot(full));
      store.applyDeltas(deltas);
      expect(content(store, rows)).toEqual(want);
    }
  });

  it('not from a snapshot that holds the rows', () => {
    const store = new StateStore();
    const rows = register(store);
    const index = store.denseKeys('meters');
    const o = rows.create(index.intern('M1'));
    rows.data[o] = 7;
    store.keyed<string>('rule').set('M1', 'open');
    const restored = new StateStore();
    const again = register(restored);
    restored.restore(deserializeSnapshot(store.beginSnapshot().finish()));
    expect(content(restored, again)).toEqual({ rows: [7, undefined, undefined], keyed: [['M1', 'open']] });
  });
});
