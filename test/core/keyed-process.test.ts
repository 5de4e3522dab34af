import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  awaitSideInputs,
  deserializeSnapshot,
  type FlowEvent,
  keyedProcess,
  outputTag,
  PipelineGraph,
  parDo,
  SideInput,
  StateStore,
  serializeSnapshot,
  type Transform,
} from '../../core/index.js';
import { data, type Ev, ev, testScheduler, wm } from './helpers.js';

interface Silence {
  key: string;
  lastSeen: number;
  firedAt: number;
}

/** Raises an event when a key has been silent for `silenceMs` of event time: the "no data for 24 h" shape. */
function silenceAlarm(store: StateStore, silenceMs: number): Transform<Ev, Silence> {
  return keyedProcess<Ev, Silence, { lastSeen: number }>(store, {
    name: 'silence',
    key: (e) => e.key,
    onElement: (ctx, e) => {
      const last = Math.max(ctx.state?.lastSeen ?? e.t, e.t);
      ctx.state = { lastSeen: last };
      ctx.setTimer('silent', last + silenceMs);
    },
    onTimer: (ctx, timer) => {
      ctx.emit({ key: ctx.key, lastSeen: ctx.state?.lastSeen ?? Number.NaN, firedAt: timer.time });
    },
  });
}

describe('keyedProcess timers', () => {
  it('fire for a key that went silent while other keys keep the watermark moving', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a-b-c-d-(e|)', {
        a: data(ev('m1', 0), ev('m2', 0)),
        b: wm(50),
        c: data(ev('m2', 90)), // m1 silent from 0
        d: wm(99), // one short of m1's deadline at 100
        e: wm(100),
      });
      expectObservable(input.pipe(silenceAlarm(new StateStore(), 100))).toBe('--b---d-(xe|)', {
        b: wm(50),
        d: wm(99),
        x: data({ key: 'm1', lastSeen: 0, firedAt: 100 }),
        e: wm(100),
      });
    });
  });
});

describe('state store checkpoints', () => {
  it('a run cut at any point and resumed from a serialized snapshot emits exactly what an uninterrupted run does', () => {
    const events: FlowEvent<Ev>[] = [];
    for (let i = 0; i < 40; i++) {
      events.push(data(ev(`m${i % 3}`, i * 10), ev(`m${(i * 7) % 5}`, i * 10 + 3)));
      if (i % 4 === 3) events.push(wm(i * 10 - 200));
    }
    events.push(wm(Number.POSITIVE_INFINITY));
    const run = (store: StateStore, input: FlowEvent<Ev>[]): FlowEvent<Silence>[] => {
      const out: FlowEvent<Silence>[] = [];
      from(input)
        .pipe(silenceAlarm(store, 100))
        .subscribe((e) => out.push(e));
      return out;
    };
    const uninterrupted = run(new StateStore(), events);
    expect(uninterrupted.filter((e) => e.kind === 'data').length).toBeGreaterThan(0);
    for (const cut of [1, 7, 20, 33, events.length - 1]) {
      const first = new StateStore();
      const before = run(first, events.slice(0, cut));
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      const after = run(resumed, events.slice(cut));
      expect([...before, ...after]).toEqual(uninterrupted);
    }
  });

  it('snapshots are copies: later mutation does not change a taken snapshot', () => {
    const store = new StateStore();
    store.keyed<{ n: number }>('op').set('k', { n: 1 });
    const snap = store.snapshot();
    store.keyed<{ n: number }>('op').get('k')!.n = 2;
    expect(snap.keyed.op).toEqual([['k', { n: 1 }]]);
  });
});

describe('side inputs', () => {
  it('hold the main input back until the lookup has its first value, then read the latest value', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const registry = new SideInput(
        'registry',
        hot<Record<string, string>>('---r-----s', {
          r: { m1: 'north' },
          s: { m1: 'south' },
        }),
      );
      const input = cold<FlowEvent<Ev>>('a-b-----c|', {
        a: data(ev('m1', 1)),
        b: data(ev('m1', 2)),
        c: data(ev('m1', 3)),
      });
      const enrich = parDo<Ev, string>((e, out) => out.emit(`${e.key}@${e.t}:${registry.value[e.key]}`));
      expectObservable(input.pipe(awaitSideInputs(registry), enrich)).toBe('--- (xz) 1ms y|', {
        x: data('m1@1:north'), // held until the registry arrives at frame 3, then released in order
        z: data('m1@2:north'),
        y: data('m1@3:north'),
      });
    });
  });
});

describe('tagged outputs and the pipeline graph', () => {
  const REJECTED = outputTag<Ev>('quarantine');
  it('routes records to a tag without throwing, passes tags through later stages, and counts per stage', () => {
    const graph = new PipelineGraph('test');
    graph.source('events');
    const validate = graph.stage(
      'validate',
      parDo<Ev, Ev>((e, out) => (e.v < 0 ? out.tag(REJECTED, e) : out.emit(e))),
    );
    const double = graph.stage(
      'double',
      parDo<Ev, Ev>((e, out) => out.emit({ ...e, v: e.v * 2 })),
    );
    graph.sink('quarantine-table', 'validate', 'quarantine');
    graph.sink('readings-table', 'double');
    const out: FlowEvent<Ev>[] = [];
    from([data(ev('m1', 1, 1), ev('m1', 2, -1), ev('m1', 3, 3)), wm(5)])
      .pipe(validate, double)
      .subscribe((e) => out.push(e));
    expect(out).toEqual([
      { kind: 'tagged', tag: 'quarantine', items: [ev('m1', 2, -1)] },
      data(ev('m1', 1, 2), ev('m1', 3, 6)),
      wm(5),
    ]);
    expect(graph.stageCounters()).toEqual({
      validate: { in: 3, out: 2, tagged: { quarantine: 1 }, watermark: 5 },
      double: { in: 2, out: 2, tagged: {}, watermark: 5 },
    });
    expect(graph.toMermaid()).toBe(
      [
        'flowchart LR',
        '  n0[("events")]',
        '  n1["validate"]',
        '  n2["double"]',
        '  n3[("quarantine-table")]',
        '  n4[("readings-table")]',
        '  n0 --> n1',
        '  n1 --> n2',
        '  n1 -. quarantine .-> n3',
        '  n2 --> n4',
        '',
      ].join('\n'),
    );
    expect(() =>
      graph.stage(
        'double',
        parDo<Ev, Ev>(() => undefined),
      ),
    ).toThrow(/already has a node named "double"/);
  });
});
