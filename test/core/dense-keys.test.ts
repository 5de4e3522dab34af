import fc from 'fast-check';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  type DenseKey,
  dataEvent,
  deserializeSnapshot,
  type FlowEvent,
  keyedProcess,
  StateStore,
  type StoreSnapshot,
  type Transform,
  watermarkEvent,
} from '../../core/index.js';

/** An element with the number its key had in some index, if any (possibly another index's). */
interface Item {
  readonly key: string;
  readonly t: number;
  readonly v: number;
  readonly n?: number | undefined;
}

const carried: DenseKey<Item> = { index: 'keys', of: (i) => i.n };

/**
 * A stage using every part of keyed state: replaced and mutated-in-place state, deletion, a timer moved by
 * each element and read back, and timers that emit and clear the state.
 */
function counter(store: StateStore, dense: boolean): Transform<Item, string> {
  return keyedProcess<Item, string, { sum: number; seen: number }>(store, {
    name: 'counter',
    key: (i) => i.key,
    ...(dense ? { dense: carried } : {}),
    onElement: (ctx, i) => {
      const s = ctx.state;
      if (i.v === 0) ctx.state = undefined;
      else if (s === undefined || i.v % 3 === 0) ctx.state = { sum: i.v + (s?.sum ?? 0), seen: 1 };
      else {
        s.sum += i.v;
        s.seen++;
      }
      ctx.emit(`${ctx.key}:${ctx.state?.sum}:${ctx.timerTime('flush')}`);
      if (i.v % 2 === 0) ctx.setTimer('flush', i.t + 10);
      else if (i.v % 5 === 0) ctx.clearTimer('flush');
    },
    onTimer: (ctx, timer) => {
      ctx.emit(`fired ${ctx.key}@${timer.time}:${JSON.stringify(ctx.state)}`);
      ctx.state = undefined;
    },
  });
}

type Step =
  | { kind: 'data'; items: Item[] }
  | { kind: 'watermark'; time: number }
  | { kind: 'checkpoint'; dropIndexes: boolean };

/** Runs the steps, restoring into a fresh store at every checkpoint step (optionally as an old checkpoint). */
function run(steps: readonly Step[], dense: boolean): string[] {
  const out: string[] = [];
  let store = new StateStore();
  let input = new Subject<FlowEvent<Item>>();
  const connect = () =>
    input.pipe(counter(store, dense)).subscribe((e) => {
      if (e.kind === 'data') out.push(...e.items);
    });
  let sub = connect();
  for (const step of steps) {
    if (step.kind === 'data') input.next(dataEvent(step.items));
    else if (step.kind === 'watermark') input.next(watermarkEvent(step.time));
    else {
      const text = store.serialize();
      const snapshot = deserializeSnapshot(text);
      const { indexes: _dropped, ...old } = snapshot;
      sub.unsubscribe();
      store = new StateStore();
      input = new Subject();
      sub = connect();
      store.restore(step.dropIndexes ? (old as StoreSnapshot) : snapshot);
    }
  }
  return out;
}

const keys = ['a', 'b', 'c', 'd', 'e'];
const item = fc.record({
  key: fc.constantFrom(...keys),
  t: fc.integer({ min: 0, max: 100 }),
  v: fc.integer({ min: 0, max: 12 }),
  // Right, wrong, out-of-range or no number: only the right one may be used.
  n: fc.option(fc.integer({ min: -1, max: 7 }), { nil: undefined }),
});
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('data' as const), items: fc.array(item, { maxLength: 8 }) }),
  fc.record({ kind: fc.constant('watermark' as const), time: fc.integer({ min: 0, max: 120 }) }),
  fc.record({ kind: fc.constant('checkpoint' as const), dropIndexes: fc.boolean() }),
);

describe('keyedProcess with dense keys', () => {
  it('behaves exactly as with string keys, whatever numbers elements carry, across restores', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
        // Watermarks only move forward, as sources guarantee.
        let last = -1;
        const ordered = steps.map((s) => {
          if (s.kind !== 'watermark') return s;
          last = Math.max(last, s.time);
          return { ...s, time: last };
        });
        expect(run(ordered, true)).toEqual(run(ordered, false));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the index in the snapshot, and numbers keys afresh from a snapshot without one', () => {
    const store = new StateStore();
    const index = store.denseKeys('keys');
    const state = store.denseKeyed<{ x: number }>('ns', 'keys');
    const nb = index.intern('b');
    const na = index.intern('a');
    state.setAt(na, 'a', { x: 1 });
    state.setAt(nb, 'b', { x: 2 });
    const snapshot = deserializeSnapshot(store.serialize());
    expect(snapshot.indexes).toEqual({ keys: ['b', 'a'] });

    const restored = new StateStore();
    const restoredState = restored.denseKeyed<{ x: number }>('ns', 'keys');
    restored.restore(snapshot);
    expect(restored.denseKeys('keys').numberOf('a')).toBe(na);
    expect(restoredState.getAt(na, 'a')).toEqual({ x: 1 });

    // A checkpoint of before the indexes: the entries come back in their order, numbered as they come.
    const { indexes: _dropped, ...old } = snapshot;
    const fresh = new StateStore();
    const freshState = fresh.denseKeyed<{ x: number }>('ns', 'keys');
    fresh.restore(old as StoreSnapshot);
    const freshIndex = fresh.denseKeys('keys');
    expect(freshIndex.snapshot()).toEqual(['a', 'b']);
    expect(freshState.getAt(freshIndex.numberOf('b')!, 'b')).toEqual({ x: 2 });
    expect(freshState.get('a')).toEqual({ x: 1 });
  });

  it('a snapshot in progress keeps the barrier value of an entry changed through its number', () => {
    const store = new StateStore();
    const index = store.denseKeys('keys');
    const state = store.denseKeyed<{ x: number }>('ns', 'keys');
    const n = index.intern('k');
    state.setAt(n, 'k', { x: 1 });
    const other = index.intern('gone');
    state.setAt(other, 'gone', { x: 7 });
    const job = store.beginSnapshot();
    state.getAt(n, 'k')!.x = 2;
    state.deleteAt(other, 'gone');
    const text = job.finish();
    expect(deserializeSnapshot(text).keyed.ns).toEqual([
      ['k', { x: 1 }],
      ['gone', { x: 7 }],
    ]);
    expect(state.get('k')).toEqual({ x: 2 });
    expect(state.has('gone')).toBe(false);
  });

  it('a timer set by number and replaced or deleted by key is never read back stale', () => {
    const store = new StateStore();
    const timers = store.timers('t');
    timers.setAt(0, 'k', 'flush', 100);
    expect(timers.getAt(0, 'k', 'flush')).toBe(100);
    timers.set('k', 'flush', 200);
    expect(timers.getAt(0, 'k', 'flush')).toBe(200);
    timers.setAt(0, 'k', 'flush', 100);
    timers.delete('k', 'flush');
    expect(timers.getAt(0, 'k', 'flush')).toBeUndefined();
    timers.setAt(0, 'k', 'flush', 100);
    expect(timers.popDue(100)).toEqual({ key: 'k', name: 'flush', time: 100 });
    expect(timers.getAt(0, 'k', 'flush')).toBeUndefined();
    expect(timers.popDue(1000)).toBeUndefined();
  });
});
