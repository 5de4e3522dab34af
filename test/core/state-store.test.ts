import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, type Json, StateStore, serializeSnapshot } from '../../core/index.js';

/** A store with keyed state, timers and values, as operators leave it. */
function filledStore(): StateStore {
  const store = new StateStore();
  const gaps = store.keyed<{ lastTs: number; lastKw: number | null; run: number[] }>('fillGaps');
  gaps.set('MTR-1', { lastTs: 1_700_000_000_000, lastKw: null, run: [1, 2.5, -0] });
  gaps.set('MTR-2', { lastTs: 1_700_000_900_000, lastKw: 0.25, run: [] });
  const minima = store.keyed<{ min: number; seen: (number | null)[] }>('minima');
  minima.set('MTR-1', { min: Number.POSITIVE_INFINITY, seen: [null, Number.NaN, 3] });
  store.keyed('empty');
  store.timers('fillGaps').set('MTR-1', 'silence', 1_700_086_400_000);
  store.timers('fillGaps').set('MTR-2', 'silence', 1_700_086_500_000);
  store.value<number>('fillGaps/input-watermark', Number.NEGATIVE_INFINITY).set(Number.NEGATIVE_INFINITY);
  store
    .value<unknown[]>('orderByEventTime/pending', [])
    .set([{ start: 60_000, readings: [{ meterId: 'MTR-1', kw: null }] }]);
  return store;
}

describe('StateStore.serialize', () => {
  it('writes exactly the text of serializeSnapshot(snapshot()), non-finite numbers included', () => {
    const store = filledStore();
    const text = store.serialize();
    expect(text).toBe(serializeSnapshot(store.snapshot()));
    const restored = new StateStore();
    restored.restore(deserializeSnapshot(text));
    expect(restored.keyed('minima').get('MTR-1')).toEqual({
      min: Number.POSITIVE_INFINITY,
      seen: [null, Number.NaN, 3],
    });
    expect(restored.value('fillGaps/input-watermark', 0).get()).toBe(Number.NEGATIVE_INFINITY);
    expect(restored.timers('fillGaps').get('MTR-2', 'silence')).toBe(1_700_086_500_000);
  });

  it('matches the cloning serializer on any JSON state, with or without non-finite numbers', () => {
    const number = fc.oneof(
      fc.double(),
      fc.constantFrom(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN),
    );
    const value = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        number,
        fc.string(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(fc.string(), tie('node'), { maxKeys: 4 }),
      ),
    })).node;
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), value, { maxKeys: 5 }),
        fc.array(value, { maxLength: 3 }),
        (keyed, vals) => {
          const store = new StateStore();
          const state = store.keyed<unknown>('ns');
          for (const [k, v] of Object.entries(keyed)) state.set(k, v);
          vals.forEach((v, i) => {
            store.value<unknown>(`value-${i}`, null).set(v as Json);
          });
          expect(store.serialize()).toBe(serializeSnapshot(store.snapshot()));
        },
      ),
    );
  });

  it('leaves the live state untouched', () => {
    const store = filledStore();
    const before = serializeSnapshot(store.snapshot());
    store.serialize();
    expect(serializeSnapshot(store.snapshot())).toBe(before);
  });
});
