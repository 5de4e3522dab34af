/**
 * A binary full snapshot keeps keyed entries in columns (version 3): every entry restores exactly as its
 * own JSON text would (any value kind, any mix of shapes, in order, also when entries change while the
 * snapshot is taken), and a version-2 snapshot written before the columns still restores.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, SnapshotFormatError, StateStore } from '../../core/index.js';
import { entriesOf } from '../../core/snapshot-columns.js';

/** What a value becomes through the snapshot's JSON (non-finite numbers kept, -0 as 0, undefined fields gone). */
function throughJson(value: unknown): unknown {
  const text = JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'number' && !Number.isFinite(v) ? { $num: String(v) } : v,
  );
  return JSON.parse(text, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && '$num' in v ? Number((v as { $num: string }).$num) : v,
  );
}

const number = fc.oneof(
  fc.double(),
  fc.constantFrom(0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
  fc.constantFrom(Number.MAX_VALUE, Number.MIN_VALUE, -Number.MAX_VALUE, 2 ** 53, 1e-300),
  fc.integer(),
);
const scalar = fc.oneof(number, fc.boolean(), fc.constant(null), fc.string(), fc.constant(''));
/** Values a keyed namespace may hold: mostly flat records of a few shapes, some of anything else. */
const value = fc.oneof(
  { weight: 6, arbitrary: fc.record({ lt: number, lk: scalar, cs: fc.boolean(), s: fc.string() }) },
  {
    weight: 2,
    arbitrary: fc.record({ lt: number, lk: scalar, cs: fc.boolean(), s: fc.string() }, { requiredKeys: [] }),
  },
  { weight: 1, arbitrary: fc.record({ lk: scalar, lt: number }) },
  {
    weight: 1,
    arbitrary: fc.record({ lt: number, f: fc.option(fc.record({ at: number, n: fc.integer() })) }),
  },
  { weight: 1, arbitrary: fc.record({ lt: number, u: fc.constant(undefined) }) },
  { weight: 1, arbitrary: fc.record({ ['__proto__']: number, a: number }) },
  { weight: 1, arbitrary: fc.oneof(scalar, fc.array(number), fc.constant({})) },
);
const entries = fc.uniqueArray(fc.tuple(fc.string({ minLength: 1 }), value), {
  selector: (e) => e[0],
  maxLength: 2500, // more than two blocks of columns
});

/** Many entries (several blocks of columns and steps of a capture) of a few generated values. */
const manyEntries = fc
  .tuple(fc.array(value, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1025, max: 3000 }))
  .map(([pool, n]) =>
    Array.from({ length: n }, (_, i) => [`MTR-${i}`, structuredClone(pool[(i * 7) % pool.length])] as const),
  );
const someEntries = fc.oneof(entries, manyEntries);

/** A binary store (it has rows) whose namespace `k` holds `items`, in order. */
function storeOf(items: readonly (readonly [string, unknown])[]): StateStore {
  const store = new StateStore();
  store.rows('r', 'meters', 1).create(store.denseKeys('meters').intern('m'));
  const keyed = store.keyed<unknown>('k');
  for (const [k, v] of items) keyed.set(k, v);
  return store;
}

function restoredEntries(bytes: Uint8Array): [string, unknown][] {
  const restored = new StateStore();
  restored.restore(deserializeSnapshot(bytes));
  return [...(restored.keyed<unknown>('k') as unknown as Map<string, unknown>).entries()];
}

describe('keyed entries in columns', () => {
  it('restore exactly as their own JSON text would, every value kind and shape, in order', () => {
    fc.assert(
      fc.property(someEntries, (items) => {
        const bytes = storeOf(items).beginSnapshot().finish() as Uint8Array;
        expect(restoredEntries(bytes)).toEqual(items.map(([k, v]) => [k, throughJson(v)]));
      }),
      { numRuns: 60 },
    );
  });

  it('hold each entry as it was at the barrier while entries change, go and come during the capture', () => {
    fc.assert(
      fc.property(someEntries, fc.array(fc.nat(), { maxLength: 200 }), (items, changes) => {
        fc.pre(items.length > 0);
        const store = storeOf(items);
        const keyed = store.keyed<unknown>('k');
        const expected = items.map(([k, v]) => [k, throughJson(v)]);
        const job = store.beginSnapshot();
        // Steps of one slice at a time, with entries changed in place and replaced between them.
        let done = job.step(0);
        for (const c of changes) {
          const [key] = items[c % items.length]!;
          if (c % 5 === 0) keyed.delete(key);
          else if (c % 5 === 1) keyed.set(`NEW-${c}`, { lt: c });
          else {
            const held = keyed.get(key);
            if (held !== null && typeof held === 'object' && !Array.isArray(held))
              (held as Record<string, unknown>).lt = c;
            else keyed.set(key, { lt: c });
          }
          if (!done) done = job.step(0);
        }
        const bytes = job.finish() as Uint8Array;
        expect(restoredEntries(bytes)).toEqual(expected);
      }),
      { numRuns: 40 },
    );
  });

  it('list the keys of the barrier, however many, when entries are deleted and added before the steps reach them', () => {
    const items = Array.from({ length: 40_000 }, (_, i) => [`MTR-${i}`, { lt: i, ok: i % 2 === 0 }] as const);
    const store = storeOf(items);
    const keyed = store.keyed<{ lt: number }>('k');
    const job = store.beginSnapshot();
    for (let i = 0; i < 40_000; i += 997) keyed.delete(`MTR-${i}`);
    for (let i = 0; i < 50; i++) keyed.set(`NEW-${i}`, { lt: -i });
    const bytes = job.finish() as Uint8Array;
    expect(restoredEntries(bytes)).toEqual(items.map(([k, v]) => [k, v]));
  });

  it('are what a binary full snapshot writes (version 3), not one text per entry', () => {
    const bytes = storeOf([
      ['a', { lt: 1, lk: 2 }],
      ['b', { lt: 3, lk: 4 }],
    ])
      .beginSnapshot()
      .finish() as Uint8Array;
    const jsonBytes = Buffer.from(bytes).readUInt32LE(4);
    const json = JSON.parse(Buffer.from(bytes).toString('utf8', 8, 8 + jsonBytes)) as {
      version: number;
      keyed: { k: unknown };
    };
    expect(json.version).toBe(3);
    expect(json.keyed.k).toEqual({
      $columns: ['lt', 'lk'],
      blocks: [
        [
          ['a', 'b'],
          [1, 3],
          [2, 4],
        ],
      ],
      other: [],
    });
  });

  it('that do not add up fail with SnapshotFormatError', () => {
    expect(() => entriesOf('k', { $columns: ['a'], blocks: [[['x', 'y'], [1]]], other: [] })).toThrow(
      SnapshotFormatError,
    );
    expect(() => entriesOf('k', { $columns: ['a'], blocks: [], other: [[1, ['x', 1]]] })).toThrow(
      SnapshotFormatError,
    );
    expect(() => entriesOf('k', { $columns: ['__proto__'], blocks: [], other: [] })).toThrow(
      SnapshotFormatError,
    );
    expect(() => entriesOf('k', { rows: [] })).toThrow(SnapshotFormatError);
  });

  it('leave a version-2 snapshot of the build before them restorable', () => {
    // Written by the previous build (`beginSnapshot({ incremental: true }).finish()`): rows `ring` of width
    // 2 for three meters, keyed `gaps` (flat, mixed and nested values, -0, NaN) and `order` (Infinity), a
    // timer, a value and the index.
    const v2 = Buffer.from(
      'R1NTMr4BAAB7InZlcnNpb24iOjIsImtleWVkIjp7ImdhcHMiOltbIk1UUi0wIix7Imx0IjoxNzAwMDAwMDAwMDAwLCJsayI6MS4yNSwiY3MiOnRydWUsIm51IjowLCJzIjoiIn1dLFsiTVRSLTEiLHsibHQiOjAsImxrIjpudWxsLCJjcyI6ZmFsc2UsIm51Ijp7IiRudW0iOiJOYU4ifSwicyI6InhcInkifV0sWyJNVFItMiIseyJsdCI6NSwiZiI6eyJvcGVuIjoxfX1dXSwib3JkZXIiOltbIk1UUi0wIix7Imxhc3QiOnsiJG51bSI6IkluZmluaXR5In19XV19LCJ0aW1lcnMiOnsidCI6W1siTVRSLTEiLCJzaWxlbmNlIiwxMjM0XV19LCJ2YWx1ZXMiOnsid20iOjk5fSwiaW5kZXhlcyI6eyJtZXRlcnMiOlsiTVRSLTAiLCJNVFItMSIsIk1UUi0yIl19LCJyb3dzIjpbeyJucyI6InJpbmciLCJpbmRleCI6Im1ldGVycyIsIndpZHRoIjoyLCJjb3VudCI6M31dLCJjaGFpbiI6IjcyMTczZmMwYzMzYTYyOWYifQAAAQEBAAAAAAAAAAAAAADgPwAAAAAAAAAAAAAAAAAA+D8AAAAAAADwPwAAAAAAAARAAAAAAAAAAEA=',
      'base64',
    );
    const store = new StateStore();
    store.restore(deserializeSnapshot(new Uint8Array(v2)));
    expect([...(store.keyed<unknown>('gaps') as unknown as Map<string, unknown>).entries()]).toEqual([
      ['MTR-0', { lt: 1700000000000, lk: 1.25, cs: true, nu: 0, s: '' }],
      ['MTR-1', { lt: 0, lk: null, cs: false, nu: Number.NaN, s: 'x"y' }],
      ['MTR-2', { lt: 5, f: { open: 1 } }],
    ]);
    expect(store.keyed<{ last: number }>('order').get('MTR-0')).toEqual({ last: Number.POSITIVE_INFINITY });
    expect(store.timers('t').get('MTR-1', 'silence')).toBe(1234);
    expect(store.value('wm', 0).get()).toBe(99);
    const rows = store.rows('ring', 'meters', 2);
    const at = rows.open(store.denseKeys('meters').numberOf('MTR-2')!);
    expect([rows.data[at], rows.data[at + 1]]).toEqual([2.5, 2]);
    // Written again, it is version 3 and the same content.
    const again = store.beginSnapshot().finish() as Uint8Array;
    const back = new StateStore();
    back.restore(deserializeSnapshot(again));
    expect([...(back.keyed<unknown>('gaps') as unknown as Map<string, unknown>).entries()]).toEqual([
      ...(store.keyed<unknown>('gaps') as unknown as Map<string, unknown>).entries(),
    ]);
  });
});
