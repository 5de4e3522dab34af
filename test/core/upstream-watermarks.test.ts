import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  type FlowEvent,
  holdForUpstreamWatermarks,
  StateStore,
  tickEvent,
  type UpstreamRecord,
} from '../../core/index.js';

interface Row {
  readonly id: string;
  readonly end: number;
}

const el = (id: string, end: number): UpstreamRecord<Row> => ({ kind: 'element', item: { id, end } });
const mark = (partitions: readonly number[], time: number): UpstreamRecord<Row> => ({
  kind: 'watermark',
  partitions,
  time,
});
const batch = (...items: UpstreamRecord<Row>[]): FlowEvent<UpstreamRecord<Row>> => ({ kind: 'data', items });

function run(store: StateStore, events: FlowEvent<UpstreamRecord<Row>>[], partitions = [0, 1]) {
  const out: FlowEvent<Row>[] = [];
  from(events)
    .pipe(
      holdForUpstreamWatermarks<Row>(store, {
        name: 'hold',
        partitions,
        completeAt: (r) => r.end,
        identity: (r) => r.id,
      }),
    )
    .subscribe({ next: (e) => out.push(e) });
  return out;
}

describe('holdForUpstreamWatermarks', () => {
  it('releases nothing before every partition reported, then the passed elements in time order and the minimum', () => {
    const out = run(new StateStore(), [
      batch(el('b', 20), el('a', 10), mark([0], 100)),
      batch(el('c', 30), mark([1], 25)),
      batch(mark([1], 40)),
    ]);
    expect(out).toEqual([
      {
        kind: 'data',
        items: [
          { id: 'a', end: 10 },
          { id: 'b', end: 20 },
        ],
      },
      { kind: 'watermark', time: 25 },
      { kind: 'data', items: [{ id: 'c', end: 30 }] },
      { kind: 'watermark', time: 40 },
    ]);
  });

  it('an element sent again while held counts once; one sent again after its release is dropped', () => {
    const out = run(new StateStore(), [
      batch(el('a', 10), el('a', 10), mark([0, 1], 10)),
      batch(el('a', 10), el('b', 20), mark([0, 1], 20)),
    ]);
    expect(out).toEqual([
      { kind: 'data', items: [{ id: 'a', end: 10 }] },
      { kind: 'watermark', time: 10 },
      { kind: 'data', items: [{ id: 'b', end: 20 }] },
      { kind: 'watermark', time: 20 },
    ]);
  });

  it("a partition's watermark never moves back (a worker restarted from an older checkpoint)", () => {
    const out = run(new StateStore(), [
      batch(mark([0, 1], 50)),
      batch(mark([1], 30), el('x', 60), mark([0, 1], 40)),
    ]);
    expect(out).toEqual([{ kind: 'watermark', time: 50 }]);
  });

  it('passes tagged events, consumes ticks, and takes an infinite watermark as the end of time', () => {
    const out = run(new StateStore(), [
      { kind: 'tagged', tag: 'late', items: [1] },
      tickEvent(5),
      batch(el('a', 10), mark([0, 1], Number.POSITIVE_INFINITY)),
    ]);
    expect(out).toEqual([
      { kind: 'tagged', tag: 'late', items: [1] },
      { kind: 'data', items: [{ id: 'a', end: 10 }] },
      { kind: 'watermark', time: Number.MAX_SAFE_INTEGER },
    ]);
  });

  it('restored from a snapshot at any batch, with the batches after it replayed, it outputs what one run does', () => {
    const record = fc.oneof(
      fc
        .record({ id: fc.constantFrom('a', 'b', 'c', 'd', 'e'), end: fc.integer({ min: 0, max: 50 }) })
        .map(({ id, end }) => el(`${id}${end}`, end)),
      fc
        .record({ p: fc.constantFrom([0], [1], [2], [0, 1], [1, 2]), t: fc.integer({ min: 0, max: 60 }) })
        .map(({ p, t }) => mark(p, t)),
    );
    fc.assert(
      fc.property(
        fc.array(fc.array(record, { maxLength: 6 }), { maxLength: 10 }),
        fc.nat(),
        (batches, cutAt) => {
          const events = batches.map((b) => batch(...b));
          const whole = run(new StateStore(), events, [0, 1, 2]);
          const cut = events.length === 0 ? 0 : cutAt % (events.length + 1);
          const first = new StateStore();
          const before = run(first, events.slice(0, cut), [0, 1, 2]);
          const restored = new StateStore();
          restored.restore(JSON.parse(JSON.stringify(first.snapshot())));
          const after = run(restored, events.slice(cut), [0, 1, 2]);
          expect([...before, ...after]).toEqual(whole);
          // Every released element is released once.
          const ids = whole.flatMap((e) => (e.kind === 'data' ? e.items.map((r) => r.id) : []));
          expect(new Set(ids).size).toBe(ids.length);
        },
      ),
    );
  });
});
