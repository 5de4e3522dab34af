/**
 * A throw inside any hand-written operator reaches its subscriber as an error, synchronously, in the same
 * frame as the event that caused it: nothing is rethrown later on a timer where the runner cannot see it.
 */
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  assignWatermarks,
  awaitSideInputs,
  type FlowEvent,
  keyedProcess,
  mapBatch,
  PipelineGraph,
  parDo,
  SideInput,
  StageError,
  StateStore,
  type Transform,
} from '../../core/index.js';
import { data, type Ev, ev, testScheduler, wm } from './helpers.js';

const boom = new Error('boom');
const throwOn =
  (bad: number) =>
  (e: Ev): Ev => {
    if (e.t === bad) throw boom;
    return e;
  };

/** Every operator under test, set to throw on the element with event time 2 (or on watermark 50). */
const operators: Record<string, () => Transform<Ev, Ev>> = {
  parDo: () => parDo<Ev, Ev>((e, out) => out.emit(throwOn(2)(e))),
  mapBatch: () =>
    mapBatch<Ev, Ev>((items, out) => {
      for (const e of items) out.emit(throwOn(2)(e));
    }),
  'keyedProcess onElement': () =>
    keyedProcess<Ev, Ev, number>(new StateStore(), {
      name: 'k',
      key: (e) => e.key,
      onElement: (ctx, e) => ctx.emit(throwOn(2)(e)),
    }),
  'assignWatermarks eventTime': () =>
    assignWatermarks<Ev>({
      name: 'w',
      store: new StateStore(),
      maxOutOfOrdernessMs: 0,
      eventTime: (e) => throwOn(2)(e).t,
    }),
};

describe('operators route a throw to their subscriber', () => {
  for (const [name, make] of Object.entries(operators)) {
    it(`${name}: the error replaces the output of the batch that threw, and nothing follows`, () => {
      testScheduler().run(({ cold, expectObservable }) => {
        const input = cold<FlowEvent<Ev>>('a---b-c|', {
          a: data(ev('m1', 1)),
          b: data(ev('m1', 2)),
          c: data(ev('m1', 3)),
        });
        const out = input.pipe(make());
        // assignWatermarks emits its watermark with the first batch.
        const first = name.startsWith('assignWatermarks') ? '(aw)' : 'a---';
        expectObservable(out).toBe(`${first}#`, { a: data(ev('m1', 1)), w: wm(1) }, boom);
      });
    });
  }

  it('keyedProcess: a throwing timer or watermark hook errors at that watermark', () => {
    for (const hook of ['onTimer', 'onWatermark'] as const) {
      testScheduler().run(({ cold, expectObservable }) => {
        const input = cold<FlowEvent<Ev>>('a-b-c|', { a: data(ev('m1', 1)), b: wm(10), c: wm(50) });
        const op = keyedProcess<Ev, Ev, number>(new StateStore(), {
          name: 'k',
          key: (e) => e.key,
          onElement: (ctx, e) => ctx.setTimer('t', e.t + 40),
          ...(hook === 'onTimer'
            ? {
                onTimer: () => {
                  throw boom;
                },
              }
            : {
                onWatermark: (time: number) => {
                  if (time === 50) throw boom;
                },
              }),
        });
        expectObservable(input.pipe(op)).toBe('--b-#', { b: wm(10) }, boom);
      });
    }
  });

  it('assignWatermarks: a throw while firing the final watermark errors at completion', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Ev>>('a---|', { a: data(ev('m1', 1)) });
      const op = assignWatermarks<Ev>({
        name: 'w',
        store: new StateStore(),
        maxOutOfOrdernessMs: 0,
        eventTime: (e) => e.t,
        finalWatermark: () => {
          throw boom;
        },
      });
      expectObservable(input.pipe(op)).toBe('(aw)#', { a: data(ev('m1', 1)), w: wm(1) }, boom);
    });
  });

  it('awaitSideInputs: a throw downstream of events released by a late side input reaches the subscriber', () => {
    const side = new Subject<number>();
    const input = new Subject<FlowEvent<Ev>>();
    const graph = new PipelineGraph('g');
    graph.source('in');
    const errors: unknown[] = [];
    input
      .pipe(
        graph.stage('wait', awaitSideInputs<Ev>(new SideInput('registry', side))),
        graph.stage(
          'fails',
          parDo<Ev, Ev>((e, out) => out.emit(throwOn(1)(e))),
        ),
      )
      .subscribe({ error: (err: unknown) => errors.push(err) });
    input.next(data(ev('m1', 1)));
    expect(errors).toEqual([]);
    side.next(1); // releases the held batch, which throws in the next stage
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(StageError);
    expect((errors[0] as StageError).stage).toBe('fails');
  });
});

describe('PipelineGraph names the failing stage', () => {
  it('wraps a throw as a StageError naming its stage, synchronously, and passes it on unwrapped', () => {
    const graph = new PipelineGraph('meters');
    graph.source('in');
    const input = new Subject<FlowEvent<Ev>>();
    const seen: FlowEvent<Ev>[] = [];
    const errors: unknown[] = [];
    input
      .pipe(
        graph.stage(
          'first',
          parDo<Ev, Ev>((e, out) => out.emit(e)),
        ),
        graph.stage(
          'second',
          parDo<Ev, Ev>((e, out) => out.emit(throwOn(2)(e))),
        ),
        graph.stage(
          'third',
          parDo<Ev, Ev>((e, out) => out.emit(e)),
        ),
      )
      .subscribe({ next: (e) => seen.push(e), error: (err: unknown) => errors.push(err) });
    input.next(data(ev('m1', 1)));
    input.next(data(ev('m1', 2)));
    // Synchronously: the error is there when `next` returns.
    expect(errors).toHaveLength(1);
    const error = errors[0] as StageError;
    expect(error).toBeInstanceOf(StageError);
    expect(error.stage).toBe('second');
    expect(error.cause).toBe(boom);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/stage "second" of graph "meters" failed: Error: boom/);
    expect(seen).toEqual([data(ev('m1', 1))]);
    // The input is no longer subscribed: later batches go nowhere.
    expect(input.observed).toBe(false);
    expect(graph.stageCounters().third!.in).toBe(1);
  });
});
