import { describe, expect, it } from 'vitest';
import { assignWatermarks, type FlowEvent, StateStore, tickEvent } from '../../core/index.js';
import { data, type Ev, ev, testScheduler, wm } from './helpers.js';

const options = (store: StateStore, extra: Partial<Parameters<typeof assignWatermarks<Ev>>[0]> = {}) => ({
  name: 'source',
  store,
  eventTime: (e: Ev) => e.t,
  maxOutOfOrdernessMs: 10,
  ...extra,
});

describe('assignWatermarks', () => {
  it('trails the newest event time by the out-of-orderness bound and never goes back', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---b---c---d---|', {
        a: data(ev('m1', 100)),
        b: data(ev('m1', 90)), // out of order, within the bound: no watermark change
        c: data(ev('m1', 130), ev('m2', 120)),
        d: data(ev('m2', 125)),
      });
      const store = new StateStore();
      expectObservable(input.pipe(assignWatermarks(options(store, { finalWatermark: (max) => max })))).toBe(
        '(aw)b---(cx)d---(y|)',
        {
          a: data(ev('m1', 100)),
          w: wm(90),
          b: data(ev('m1', 90)),
          c: data(ev('m1', 130), ev('m2', 120)),
          x: wm(120),
          d: data(ev('m2', 125)),
          y: wm(130),
        },
      );
    });
  });

  it('emits +Infinity on completion by default, firing everything downstream (Beam bounded input)', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---|', { a: data(ev('m1', 50)) });
      expectObservable(input.pipe(assignWatermarks(options(new StateStore())))).toBe('(aw)(z|)', {
        a: data(ev('m1', 50)),
        w: wm(40),
        z: wm(Number.POSITIVE_INFINITY),
      });
    });
  });

  it('holds the watermark at the slowest active partition', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---b---c', {
        a: data(ev('m1', 100, 1, 'p1')),
        b: data(ev('m2', 500, 1, 'p2')),
        c: data(ev('m1', 200, 1, 'p1')),
      });
      const op = assignWatermarks(options(new StateStore(), { partition: (e: Ev) => e.p ?? '' }));
      expectObservable(input.pipe(op)).toBe('(aw)b---(cx)', {
        a: data(ev('m1', 100, 1, 'p1')),
        w: wm(90),
        b: data(ev('m2', 500, 1, 'p2')),
        c: data(ev('m1', 200, 1, 'p1')),
        x: wm(190),
      });
    });
  });

  it('stops waiting for an idle partition, and advances just past the newest event time when all are idle', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      // p1 goes silent after frame 0; p2 sends until frame 30; then only the driver's ticks come.
      const input = cold<FlowEvent<Ev>>('a 9ms b 9ms c 9ms d 9ms s 9ms t', {
        a: data(ev('m1', 100, 1, 'p1')),
        b: data(ev('m2', 300, 1, 'p2')),
        c: data(ev('m2', 400, 1, 'p2')),
        d: data(ev('m2', 500, 1, 'p2')),
        s: tickEvent(40),
        t: tickEvent(50),
      });
      const op = assignWatermarks(
        options(new StateStore(), { partition: (e: Ev) => e.p ?? '', idleTimeoutMs: 15 }),
      );
      // Idleness is checked on each batch and each tick. At c (20 ms) p1 has been silent for 20 ms >= 15:
      // only p2 counts. At the 40 ms tick p2 has been silent for 10 ms: nothing moves. At the 50 ms tick
      // every partition is idle, and the watermark moves just past the newest event time, to 501: the
      // elements at 500 are complete too. Ticks are consumed here.
      expectObservable(input.pipe(op), '^ 60ms !').toBe('(aw) 6ms b 9ms (cy) 6ms (dz) 16ms r', {
        a: data(ev('m1', 100, 1, 'p1')),
        w: wm(90),
        b: data(ev('m2', 300, 1, 'p2')),
        c: data(ev('m2', 400, 1, 'p2')),
        y: wm(390),
        d: data(ev('m2', 500, 1, 'p2')),
        z: wm(490),
        r: wm(501),
      });
    });
  });

  it('keeps no timer of its own: processing time passing without ticks changes nothing', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a 99ms s', { a: data(ev('m1', 100)), s: tickEvent(100) });
      const op = assignWatermarks(options(new StateStore(), { idleTimeoutMs: 15 }));
      expectObservable(input.pipe(op), '^ 200ms !').toBe('(aw) 96ms r', {
        a: data(ev('m1', 100)),
        w: wm(90),
        r: wm(101),
      });
    });
  });

  it('ignores ticks when idleness is off', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a 99ms s', { a: data(ev('m1', 100)), s: tickEvent(100) });
      expectObservable(input.pipe(assignWatermarks(options(new StateStore())))).toBe('(aw)', {
        a: data(ev('m1', 100)),
        w: wm(90),
      });
    });
  });

  it('restores partition positions from a snapshot, so a restarted source does not re-emit old watermarks', () => {
    const store = new StateStore();
    const seen: FlowEvent<Ev>[] = [];
    testScheduler().run(({ cold }) => {
      cold<FlowEvent<Ev>>('a|', { a: data(ev('m1', 1000)) })
        .pipe(assignWatermarks(options(store, { finalWatermark: (m) => m })))
        .subscribe();
    });
    const restored = new StateStore();
    restored.restore(store.snapshot());
    testScheduler().run(({ cold }) => {
      cold<FlowEvent<Ev>>('a', { a: data(ev('m1', 500)) })
        .pipe(assignWatermarks(options(restored)))
        .subscribe((e) => seen.push(e));
    });
    expect(seen).toEqual([data(ev('m1', 500))]);
  });
});
