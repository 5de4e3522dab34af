import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dataEvent,
  deserializeSnapshot,
  type FlowEvent,
  StateStore,
  serializeSnapshot,
  taggedEvent,
  watermarkEvent,
} from '../../core/index.js';
import { dedupeReadings } from '../../operators/dedupe-readings.js';
import { QUARANTINE } from '../../operators/outputs.js';
import type { Reading } from '../../schemas/reading.js';
import { testScheduler } from '../core/helpers.js';
import { HOUR, INTERVAL, PROCESSED_AT, reading, runBatch, runFlow, T0 } from './fixtures.js';

const HORIZON = 3 * HOUR;
const dedupe = (items: Reading[], horizonMs = HORIZON) =>
  runBatch(dedupeReadings(new StateStore(), { horizonMs }), items);
const at = (ts: number, kw: number | null = 1, meterId = 'MTR-000001') =>
  reading({ meterId, ts, kw, rawValue: kw === null ? '' : String(kw) });
const reasons = (items: Reading[], horizonMs = HORIZON) =>
  dedupe(items, horizonMs)
    .tagged(QUARANTINE)
    .map((q) => q.reasons[0]);

describe('dedupeReadings routing', () => {
  it('quarantines a repeated (meter, ts) across batches and passes watermarks', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const first = at(T0, 1);
      const again = { ...at(T0, 1), source: 'gw-2' };
      const next = at(T0 + INTERVAL, 2);
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: dataEvent([first]),
        b: watermarkEvent(T0),
        c: dataEvent([again, next]),
      });
      expectObservable(input.pipe(dedupeReadings(new StateStore(), { horizonMs: HORIZON }))).toBe(
        'a-b-(qn)--|',
        {
          a: dataEvent([first]),
          b: watermarkEvent(T0),
          q: taggedEvent(QUARANTINE, [
            {
              meterId: 'MTR-000001',
              ts: T0,
              raw: 'MTR-000001,2024-03-04T00:00:00Z,1,kW',
              reasons: ['duplicate'],
              source: 'gw-2',
              quarantinedAt: PROCESSED_AT,
            },
          ]),
          n: dataEvent([next]),
        },
      );
    });
  });
});

describe('dedupeReadings rules', () => {
  it('keeps the first of two readings with the same meter, ts and value; the second is a duplicate', () => {
    const out = dedupe([at(T0, 1.5), at(T0, 1.5)]);
    expect(out.main).toHaveLength(1);
    expect(out.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([['duplicate']]);
  });

  it('keeps the first of two readings with different values; the second is a conflicting duplicate', () => {
    const first = at(T0, 1.5);
    const out = dedupe([first, at(T0, 2.5), at(T0, 1.5)]);
    expect(out.main).toEqual([first]);
    expect(out.tagged(QUARANTINE).map((q) => q.reasons[0])).toEqual(['conflicting_duplicate', 'duplicate']);
  });

  it('compares standardized kW: 1 W and 1 kW conflict though their record ids match, 1000 W and 1 kW agree', () => {
    const oneKw = reading({ kw: 1, rawValue: '1', rawUnit: 'kW', recordId: 'same' });
    const oneW = reading({ kw: 0.001, rawValue: '1', rawUnit: 'W', recordId: 'same' });
    const thousandW = reading({ kw: 1, rawValue: '1000', rawUnit: 'W', recordId: 'other' });
    expect(reasons([oneKw, oneW, thousandW])).toEqual(['conflicting_duplicate', 'duplicate']);
  });

  it('treats two NULL readings as duplicates and a NULL against a value as a conflict', () => {
    expect(reasons([at(T0, null), at(T0, null), at(T0, 0)])).toEqual(['duplicate', 'conflicting_duplicate']);
  });

  it('keeps the same ts of different meters, and different ts of the same meter', () => {
    const out = dedupe([at(T0, 1, 'A'), at(T0, 1, 'B'), at(T0 + 1, 1, 'A')]);
    expect(out.main).toHaveLength(3);
    expect(out.tagged(QUARANTINE)).toEqual([]);
  });

  it('catches a duplicate that arrives out of order within the horizon', () => {
    const seq = [
      at(T0),
      at(T0 + 2 * INTERVAL),
      at(T0 + INTERVAL),
      at(T0 + 3 * INTERVAL),
      at(T0 + INTERVAL),
      at(T0),
    ];
    expect(reasons(seq)).toEqual(['duplicate', 'duplicate']);
  });
});

/** The (ts, kW) pairs the stage named `dd` keeps for `meterId`, a NULL kW as null. */
function seenPairs(store: StateStore, meterId: string): [number, number | null][] {
  const n = store.denseKeys('meters').numberOf(meterId)!;
  const lists = store.vectors('dd/seen', 'meters');
  const list = lists.array(n);
  const pairs: [number, number | null][] = [];
  for (let i = 0; i < lists.length(n); i += 2)
    pairs.push([list[i]!, Number.isNaN(list[i + 1]!) ? null : list[i + 1]!]);
  return pairs;
}

describe('dedupeReadings horizon', () => {
  it.each([
    [HORIZON - 1, ['duplicate']],
    [HORIZON, ['duplicate']], // exactly at the horizon is still within it
    [HORIZON + 1, []], // older: passed through unchecked
  ])('a repeat of T0 after the meter reached T0 + %d → %j', (ahead, expected) => {
    expect(reasons([at(T0), at(T0 + ahead), at(T0)])).toEqual(expected);
  });

  it('does not record what it passed unchecked', () => {
    const out = dedupe([at(T0 + 2 * HORIZON), at(T0), at(T0)]);
    expect(out.main).toHaveLength(3);
  });

  it('keeps state per meter bounded by the horizon, as typed [ts, kw] pairs and no keyed entry', () => {
    const store = new StateStore();
    const day = Array.from({ length: 96 * 3 }, (_, i) => at(T0 + i * INTERVAL));
    runBatch(dedupeReadings(store, { horizonMs: HORIZON }, 'dd'), day);
    const pairs = seenPairs(store, 'MTR-000001');
    const kept = HORIZON / INTERVAL + 1;
    const newest = T0 + (96 * 3 - 1) * INTERVAL;
    expect(pairs.map(([ts]) => ts)).toEqual(
      Array.from({ length: kept }, (_, i) => newest - HORIZON + i * INTERVAL),
    );
    expect(store.keyed('dd').size).toBe(0);
  });

  it('re-bases on the new reading when a silence longer than the horizon empties the state', () => {
    const store = new StateStore();
    const late = T0 + 10 * HORIZON;
    const out = runBatch(dedupeReadings(store, { horizonMs: HORIZON }, 'dd'), [
      at(T0),
      at(T0 + INTERVAL),
      at(late),
      at(late, 2),
      at(T0 + INTERVAL),
    ]);
    expect(out.main.map((r) => r.ts)).toEqual([T0, T0 + INTERVAL, late, T0 + INTERVAL]);
    expect(out.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([['conflicting_duplicate']]);
    expect(seenPairs(store, 'MTR-000001')).toEqual([[late, 1]]);
  });

  it('resumed from a serialized checkpoint, emits exactly what an uninterrupted run does', () => {
    const readings = Array.from({ length: 60 }, (_, i) =>
      at(T0 + ((i * 7) % 20) * INTERVAL, i % 3, `M${i % 4}`),
    );
    const events = readings.map((r) => dataEvent([r]));
    const op = (store: StateStore) => dedupeReadings(store, { horizonMs: HORIZON });
    const whole = runFlow(op(new StateStore()), events).events;
    for (const cut of [1, 17, 40]) {
      const first = new StateStore();
      const before = runFlow(op(first), events.slice(0, cut)).events;
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      const after = runFlow(op(resumed), events.slice(cut)).events;
      expect([...before, ...after]).toEqual(whole);
    }
  });
});

describe('dedupeReadings properties', () => {
  it('routes each reading once, keeps the first of each (meter, ts), and stores no (meter, ts) twice', () => {
    const item = fc.record({
      meterId: fc.constantFrom('A', 'B', 'C'),
      slot: fc.integer({ min: 0, max: 8 }),
      kw: fc.constantFrom(null, 0, 1, 2),
    });
    fc.assert(
      fc.property(fc.array(item, { maxLength: 80 }), fc.integer({ min: 1, max: 6 }), (items, batches) => {
        const readings = items.map((i) => at(T0 + i.slot * INTERVAL, i.kw, i.meterId));
        const events: FlowEvent<Reading>[] = [];
        const size = Math.ceil(readings.length / batches) || 1;
        for (let k = 0; k < readings.length; k += size) events.push(dataEvent(readings.slice(k, k + size)));
        // A horizon longer than the slots span: every repeat is within it.
        const out = runFlow(dedupeReadings(new StateStore(), { horizonMs: 10 * INTERVAL }), events);
        expect(out.main.length + out.tagged(QUARANTINE).length).toBe(readings.length);
        const firsts = new Map<string, Reading>();
        for (const r of readings)
          if (!firsts.has(`${r.meterId}@${r.ts}`)) firsts.set(`${r.meterId}@${r.ts}`, r);
        expect(out.main).toEqual([...firsts.values()]);
      }),
    );
  });
});
