/**
 * The timer queue fires due timers in (time, name, key) order, one per (key, name), whatever the order
 * they were set, replaced, deleted or set while firing: checked against a plain model on random scripts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimerQueue } from '../../core/state-store.js';

type Op =
  | { op: 'set'; key: string; name: string; time: number }
  | { op: 'setAt'; key: string; name: string; time: number }
  | { op: 'delete'; key: string; name: string }
  | { op: 'fire'; watermark: number; setWhileFiring: { key: string; name: string; dt: number } | null };

const KEYS = ['m1', 'm2', 'm10', 'a', 'B', ''];
const key = fc.constantFrom(...KEYS);
const name = fc.constantFrom('end:0', 'end:3600', 'silence', 'release');
const time = fc.integer({ min: -3, max: 12 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key, name, time }),
  // By dense key number (the key's place in KEYS), as keyed stages with a dense key set them.
  fc.record({ op: fc.constant('setAt' as const), key, name, time }),
  fc.record({ op: fc.constant('delete' as const), key, name }),
  fc.record({
    op: fc.constant('fire' as const),
    watermark: time,
    setWhileFiring: fc.option(fc.record({ key, name, dt: fc.integer({ min: -2, max: 2 }) })),
  }),
);

/** Model: a map of (key, name) to time; firing takes the least (time, name, key) at or before the watermark. */
class Model {
  readonly timers = new Map<string, { key: string; name: string; time: number }>();
  set(key: string, name: string, time: number): void {
    this.timers.set(`${name}\u0000${key}`, { key, name, time });
  }
  delete(key: string, name: string): void {
    this.timers.delete(`${name}\u0000${key}`);
  }
  popDue(watermark: number): { key: string; name: string; time: number } | undefined {
    let best: { key: string; name: string; time: number } | undefined;
    for (const t of this.timers.values()) {
      if (t.time > watermark) continue;
      if (
        best === undefined ||
        t.time < best.time ||
        (t.time === best.time && (t.name < best.name || (t.name === best.name && t.key < best.key)))
      )
        best = t;
    }
    if (best !== undefined) this.delete(best.key, best.name);
    return best;
  }
}

describe('TimerQueue', () => {
  it('fires as the model does: (time, name, key) order, replaced and deleted timers skipped, timers set while firing included', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const queue = new TimerQueue();
        const model = new Model();
        for (const o of ops) {
          if (o.op === 'set') {
            queue.set(o.key, o.name, o.time);
            model.set(o.key, o.name, o.time);
          } else if (o.op === 'setAt') {
            queue.setAt(KEYS.indexOf(o.key), o.key, o.name, o.time);
            model.set(o.key, o.name, o.time);
          } else if (o.op === 'delete') {
            queue.delete(o.key, o.name);
            model.delete(o.key, o.name);
          } else {
            let extra = o.setWhileFiring;
            for (;;) {
              const got = queue.popDue(o.watermark);
              const want = model.popDue(o.watermark);
              expect(got && { key: got.key, name: got.name, time: got.time }).toEqual(want);
              if (got === undefined) break;
              // A timer set by the firing one, possibly due at once (as a re-armed timer is).
              if (extra !== null) {
                queue.set(extra.key, extra.name, got.time + extra.dt);
                model.set(extra.key, extra.name, got.time + extra.dt);
                extra = null;
              }
            }
          }
          expect(queue.size).toBe(model.timers.size);
          for (const k of KEYS)
            for (const n of ['end:0', 'silence'])
              expect(queue.getAt(KEYS.indexOf(k), k, n)).toBe(model.timers.get(`${n}\u0000${k}`)?.time);
        }
        // A restore from the snapshot fires the same way.
        const restored = new TimerQueue();
        restored.restore(queue.snapshot());
        for (;;) {
          const got = restored.popDue(Number.POSITIVE_INFINITY);
          const want = model.popDue(Number.POSITIVE_INFINITY);
          expect(got && { key: got.key, name: got.name, time: got.time }).toEqual(want);
          if (got === undefined) break;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('keeps no fired, deleted or replaced timer in its cache by key number (one timer name per hour)', () => {
    const queue = new TimerQueue();
    const cache = (): Map<string, unknown> =>
      (queue as unknown as { byNumber: Map<string, unknown> }).byNumber;
    const HOUR = 3_600_000;
    for (let hour = 0; hour < 48; hour++) {
      for (let m = 0; m < 50; m++) {
        queue.setAt(m, `m${m}`, `end:${hour * HOUR}`, (hour + 1) * HOUR);
        queue.setAt(m, `m${m}`, 'release', hour * HOUR + m);
      }
      if (hour % 2 === 0) queue.delete('m7', `end:${hour * HOUR}`);
      let fired = 0;
      while (queue.popDue(hour * HOUR + 1) !== undefined) fired++;
      expect(fired).toBeGreaterThan(0);
      // The hours still open, and the release timers: nothing of the hours that fired.
      expect(cache().size).toBeLessThanOrEqual(3);
    }
    while (queue.popDue(Number.POSITIVE_INFINITY) !== undefined);
    expect(queue.size).toBe(0);
    expect(cache().size).toBe(0);
  });
});
