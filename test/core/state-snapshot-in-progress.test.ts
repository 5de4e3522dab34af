import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, StateStore, serializeSnapshot } from '../../core/index.js';

interface MeterState {
  n: number;
  last: number[];
}

/** Operations an operator does on its keyed state between two batches. */
type Op =
  | { kind: 'mutate'; key: string; value: number }
  | { kind: 'replace'; key: string; value: number }
  | { kind: 'delete'; key: string }
  | { kind: 'step'; slices: number }
  | { kind: 'timer'; key: string; time: number }
  | { kind: 'value'; value: number };

function apply(store: StateStore, op: Op): void {
  const meters = store.keyed<MeterState>('meters');
  switch (op.kind) {
    case 'mutate': {
      // Operators mutate the object they looked up, in place.
      const s = meters.get(op.key);
      if (s === undefined) meters.set(op.key, { n: 1, last: [op.value] });
      else {
        s.n += 1;
        s.last.push(op.value);
      }
      break;
    }
    case 'replace':
      meters.set(op.key, { n: op.value, last: [] });
      break;
    case 'delete':
      meters.delete(op.key);
      break;
    case 'timer':
      store.timers('meters').set(op.key, 'silence', op.time);
      break;
    case 'value':
      store.value('watermark', 0).set(op.value);
      break;
    case 'step':
      break;
  }
}

const key = fc.constantFrom('m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('mutate' as const), key, value: fc.integer() }),
  fc.record({ kind: fc.constant('replace' as const), key, value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key }),
  fc.record({ kind: fc.constant('step' as const), slices: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('timer' as const), key, time: fc.integer({ min: 0, max: 1000 }) }),
  fc.record({ kind: fc.constant('value' as const), value: fc.integer() }),
);

describe('a state snapshot taken while the graph goes on', () => {
  it('holds exactly the content at its barrier, whatever changes while it is serialized', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.array(op, { maxLength: 60 }), (before, during) => {
        const store = new StateStore();
        store.keyed('meters'); // operators create their namespaces up front
        for (const o of before) apply(store, o);
        const expected = store.serialize();
        const snapshot = store.beginSnapshot();
        for (const o of during) {
          // A zero deadline serializes one slice at most: the ops interleave with the slices.
          if (o.kind === 'step') snapshot.step(0);
          apply(store, o);
        }
        expect(snapshot.finish()).toBe(expected);
        // Afterwards the store snapshots its new content, and a snapshot restores.
        const after = store.serialize();
        const restored = new StateStore();
        restored.keyed('meters');
        restored.restore(deserializeSnapshot(after));
        expect(restored.serialize()).toBe(after);
      }),
      { numRuns: 300 },
    );
  });

  it('serializes a slice per step until done, then gives the same text again', () => {
    const store = new StateStore();
    const meters = store.keyed<MeterState>('meters');
    for (let i = 0; i < 1000; i++) meters.set(`m${i}`, { n: i, last: [i] });
    const expected = store.serialize();
    const snapshot = store.beginSnapshot();
    let steps = 0;
    while (!snapshot.step(0)) {
      steps += 1;
      meters.get(`m${(steps * 7) % 1000}`)!.n = -1;
    }
    // 64 entries a slice.
    expect(steps).toBe(Math.ceil(1000 / 64) - 1);
    expect(snapshot.finish()).toBe(expected);
    expect(snapshot.finish()).toBe(expected);
    expect(store.serialize()).not.toBe(expected);
  });

  it("prints a namespace's timers a piece of ≤ 4,096 at a time, to the text of all of them at once", () => {
    const store = new StateStore();
    const timers = store.timers('meters');
    const ends = [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1.5, 2 ** 53];
    for (let i = 0; i < 10_000; i++) timers.set(`m${i}`, i % 3 === 0 ? 'silence' : 'hour', ends[i % 7] ?? i);
    store.timers('few').set('k', 'x', 1);
    const expected = serializeSnapshot(store.snapshot());
    const snapshot = store.beginSnapshot();
    let steps = 0;
    while (!snapshot.step(0)) steps += 1;
    // 10,000 timers in 3 pieces, one step each (all at once: 1); the namespace of one timer in the next.
    expect(steps).toBe(3);
    expect(snapshot.finish()).toBe(expected);
  });

  it('allows one snapshot at a time', () => {
    const store = new StateStore();
    const first = store.beginSnapshot();
    expect(() => store.beginSnapshot()).toThrow(/already in progress/);
    first.finish();
    expect(() => store.beginSnapshot().finish()).not.toThrow();
  });

  it('completes before iteration hands out values that may change', () => {
    const store = new StateStore();
    const meters = store.keyed<MeterState>('meters');
    meters.set('a', { n: 1, last: [] });
    meters.set('b', { n: 2, last: [] });
    const expected = store.serialize();
    const snapshot = store.beginSnapshot();
    for (const [, s] of meters.entries()) s.n = 0;
    expect(snapshot.finish()).toBe(expected);
  });
});
