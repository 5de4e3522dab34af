import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  type Aggregator,
  type FlowEvent,
  fixedWindows,
  LATE,
  StateStore,
  sessionWindows,
  slidingWindows,
  windowAggregate,
} from '../../core/index.js';
import { data, type Ev, ev, testScheduler, wm } from './helpers.js';

interface Sum {
  key: string;
  start: number;
  end: number;
  sum: number;
  late: boolean;
}

const sum: Aggregator<Ev, number> = { init: () => 0, add: (a, e) => a + e.v, merge: (a, b) => a + b };

function summing(
  store: StateStore,
  windows: Parameters<typeof windowAggregate>[0]['windows'],
  allowedLatenessMs = 0,
) {
  return windowAggregate<Ev, number, Sum>({
    name: 'sum',
    store,
    key: (e) => e.key,
    eventTime: (e) => e.t,
    windows,
    allowedLatenessMs,
    aggregator: sum,
    result: (p) => ({ key: p.key, start: p.start, end: p.end, sum: p.acc, late: p.late }),
  });
}

const pane = (key: string, start: number, end: number, s: number, late = false): Sum => ({
  key,
  start,
  end,
  sum: s,
  late,
});
const late = (...items: Ev[]): FlowEvent<never> => ({ kind: 'tagged', tag: LATE.name, items });

describe('windowAggregate with fixed windows', () => {
  it('fires a window only when the watermark reaches its end, counting out-of-order elements', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---b---c---d---e---|', {
        a: data(ev('m1', 5, 1), ev('m2', 7, 10)),
        b: data(ev('m1', 12, 2), ev('m1', 3, 4)), // 3 is out of order but its window [0,10) is still open
        c: wm(9),
        d: wm(10),
        e: wm(25),
      });
      expectObservable(input.pipe(summing(new StateStore(), fixedWindows(10)))).toBe(
        '--------c---(xd)(ye)|',
        {
          c: wm(9),
          x: data(pane('m1', 0, 10, 5), pane('m2', 0, 10, 10)),
          d: wm(10),
          y: data(pane('m1', 10, 20, 2)),
          e: wm(25),
        },
      );
    });
  });

  it('routes data later than the allowed lateness to the late output instead of dropping it', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---b---c---d---e---|', {
        a: data(ev('m1', 5, 1)),
        b: wm(10),
        c: data(ev('m1', 8, 2)), // window [0,10) fired; lateness 5 keeps it until watermark 15
        d: wm(15),
        e: data(ev('m1', 9, 4)), // window gone: late
      });
      expectObservable(input.pipe(summing(new StateStore(), fixedWindows(10), 5))).toBe(
        '----(xb)c---d---e---|',
        {
          x: data(pane('m1', 0, 10, 1)),
          b: wm(10),
          c: data(pane('m1', 0, 10, 3, true)),
          d: wm(15),
          e: late(ev('m1', 9, 4)),
        },
      );
    });
  });

  it('with zero allowed lateness, anything behind the watermark is late', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a-b|', { a: wm(20), b: data(ev('m1', 19, 1), ev('m1', 20, 2)) });
      expectObservable(input.pipe(summing(new StateStore(), fixedWindows(10)))).toBe('a-b|', {
        a: wm(20),
        b: late(ev('m1', 19, 1)),
      });
    });
  });
});

describe('windowAggregate with sliding windows', () => {
  it('puts each element into size/period windows', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---(b|)', { a: data(ev('m1', 12, 1), ev('m1', 17, 2)), b: wm(30) });
      expectObservable(input.pipe(summing(new StateStore(), slidingWindows(10, 5)))).toBe('----(xb|)', {
        x: data(pane('m1', 5, 15, 1), pane('m1', 10, 20, 3), pane('m1', 15, 25, 2)),
        b: wm(30),
      });
    });
  });
});

describe('windowAggregate with session windows', () => {
  it('merges sessions that an out-of-order element bridges, and fires the merged session once', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a-b-c-(d|)', {
        a: data(ev('m1', 0, 1), ev('m1', 20, 2)), // two sessions with gap 10: [0,10) and [20,30)
        b: data(ev('m1', 11, 4)), // [11,21) overlaps [20,30) only
        c: data(ev('m1', 6, 8)), // [6,16) bridges [0,10) and [11,30)
        d: wm(100),
      });
      expectObservable(input.pipe(summing(new StateStore(), sessionWindows(10)))).toBe('------(xd|)', {
        x: data(pane('m1', 0, 30, 15)),
        d: wm(100),
      });
    });
  });

  it('keeps sessions of different keys apart', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a-(b|)', { a: data(ev('m1', 0, 1), ev('m2', 5, 2)), b: wm(12) });
      expectObservable(input.pipe(summing(new StateStore(), sessionWindows(10)))).toBe('--(xb|)', {
        x: data(pane('m1', 0, 10, 1)), // m2's session [5,15) is still open at watermark 12
        b: wm(12),
      });
    });
  });
});

describe('windowAggregate properties', () => {
  it('gives the same sums as a batch group-by for any arrival order within the out-of-orderness bound', () => {
    const element = fc.record({
      key: fc.constantFrom('a', 'b', 'c'),
      t: fc.integer({ min: 0, max: 999 }),
      v: fc.integer({ min: 1, max: 9 }),
    });
    fc.assert(
      fc.property(fc.array(element, { maxLength: 60 }), fc.integer({ min: 1, max: 100 }), (items, size) => {
        const sorted = [...items].sort((x, y) => x.t - y.t);
        // Deliver in chunks of 5; the watermark trails the newest element by the largest disorder in the stream.
        const events: FlowEvent<Ev>[] = [];
        for (let i = 0; i < sorted.length; i += 5) {
          const chunk = sorted.slice(i, i + 5).reverse();
          events.push(data(...chunk));
          const next = sorted[i + 5];
          if (next !== undefined) events.push(wm(next.t));
        }
        events.push(wm(Number.POSITIVE_INFINITY));
        const out: Sum[] = [];
        const lateSeen: unknown[] = [];
        const op = summing(new StateStore(), fixedWindows(size));
        from(events)
          .pipe(op)
          .subscribe((e: FlowEvent<Sum>) => {
            if (e.kind === 'data') out.push(...e.items);
            if (e.kind === 'tagged') lateSeen.push(...e.items);
          });
        const expected = new Map<string, number>();
        for (const it of items) {
          const k = `${it.key}@${Math.floor(it.t / size) * size}`;
          expected.set(k, (expected.get(k) ?? 0) + it.v);
        }
        const actual = new Map(out.map((p) => [`${p.key}@${p.start}`, p.sum]));
        expect(lateSeen).toEqual([]);
        expect(actual).toEqual(expected);
      }),
    );
  });
});
