/**
 * The fused keyed chain against the composition it replaces: the same members piped as separate
 * `keyedProcess` stages, on a real state store, must give the same events in the same order (tagged
 * outputs, timer cascades, watermarks), the same state, the same counters, and resume from each other's
 * checkpoints; a member's failure names the member.
 */
import fc from 'fast-check';
import { from, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  chainMember,
  type DenseKey,
  dataEvent,
  deserializeSnapshot,
  type FlowEvent,
  type KeyedProcessSpec,
  keyedChain,
  keyedProcess,
  MemberFailure,
  outputTag,
  PipelineGraph,
  StageError,
  StateStore,
  serializeSnapshot,
  type Transform,
  watermarkEvent,
} from '../../core/index.js';

interface Item {
  readonly key: string;
  readonly t: number;
  readonly v: number;
  /** A number the item carries in the `keys` index: right, wrong or absent. */
  readonly n?: number;
  /** What the members did to it, with the watermark each saw: makes order and watermarks observable. */
  readonly trail: string;
}

const LATE = outputTag<string>('late');
const ALERTS = outputTag<string>('alerts');
const byKey: DenseKey<Item> = { index: 'keys', of: (i) => i.n };
type Spec<S> = KeyedProcessSpec<Item, Item, S>;

/**
 * A sort buffer like `orderByEventTime`: holds items ahead of the watermark in a value, releases them in
 * `onWatermark` (touching keyed state directly), tags the ones behind their key's last released time.
 */
function sorter(store: StateStore): Spec<{ last: number }> {
  const pending = store.value<Item[]>('sorter/pending', []);
  const last = store.denseKeyed<{ last: number }>('sorter', 'keys');
  const keys = store.denseKeys('keys');
  return {
    name: 'sorter',
    key: (i) => i.key,
    dense: byKey,
    onElement: (ctx, i) => {
      const st = ctx.state;
      if (st !== undefined && i.t <= st.last) {
        ctx.tag(LATE, `sorter late ${i.key}@${i.t} wm ${ctx.watermark}`);
        return;
      }
      if (i.t <= ctx.watermark) {
        if (st === undefined) ctx.state = { last: i.t };
        else st.last = i.t;
        ctx.emit(i);
        return;
      }
      pending.set([...pending.get(), i]);
    },
    onWatermark: (w, out) => {
      const all = pending.get();
      const due = all.filter((i) => i.t <= w).sort((a, b) => a.t - b.t);
      if (due.length === 0) return;
      pending.set(all.filter((i) => i.t > w));
      for (const i of due) {
        const n = keys.intern(i.key);
        const o = last.getAt(n, i.key);
        if (o !== undefined && i.t <= o.last) {
          out.tag(LATE, `sorter released late ${i.key}@${i.t}`);
          continue;
        }
        if (o === undefined) last.setAt(n, i.key, { last: i.t });
        else o.last = i.t;
        out.emit(i);
      }
    },
  };
}

/** Counts and sums per key, tags every third item, re-emits some as new objects, and a timer per key. */
function tally(): Spec<{ c: number; s: number }> {
  return {
    name: 'tally',
    key: (i) => i.key,
    dense: byKey,
    onElement: (ctx, i) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { c: 0, s: 0 };
        ctx.state = st;
      }
      st.c++;
      st.s += i.v;
      if (st.c % 3 === 0) ctx.tag(ALERTS, `tally ${i.key} c=${st.c} wm=${ctx.watermark}`);
      ctx.setTimer('quiet', i.t + 40);
      if (st.s > 60) ctx.state = undefined;
      ctx.emit(i.v % 4 === 0 ? { ...i, trail: `${i.trail} T${st.c}@${ctx.watermark}` } : i);
    },
    onTimer: (ctx, timer) => {
      const s = ctx.state?.s ?? -1;
      ctx.tag(ALERTS, `tally quiet ${ctx.key}@${timer.time} wm=${ctx.watermark}`);
      ctx.emit({ key: ctx.key, t: timer.time, v: (s + 7) % 9, trail: `timer@${ctx.watermark}` });
    },
  };
}

/** Holds odd items until the end of their 100 ms window (a timer), like the erratic-excursion rule. */
function holder(): Spec<{ held: Item[] }> {
  return {
    name: 'holder',
    key: (i) => i.key,
    dense: byKey,
    onElement: (ctx, i) => {
      if (i.v % 2 === 0) {
        ctx.emit({ ...i, trail: `${i.trail} h@${ctx.watermark}` });
        return;
      }
      const st = ctx.state;
      if (st === undefined) ctx.state = { held: [i] };
      else st.held.push(i);
      const end = Math.floor(i.t / 100) * 100 + 100;
      const set = ctx.timerTime('release');
      if (set === undefined || set > end) ctx.setTimer('release', end);
    },
    onTimer: (ctx) => {
      const held = ctx.state?.held ?? [];
      ctx.state = undefined;
      ctx.tag(LATE, `holder ${ctx.key} released ${held.length} wm=${ctx.watermark}`);
      for (const i of held) ctx.emit({ ...i, trail: `${i.trail} r@${ctx.watermark}` });
    },
  };
}

/** Drops multiples of 5 to a tag, stamps the rest. */
function gate(): Spec<{ seen: number }> {
  return {
    name: 'gate',
    key: (i) => i.key,
    dense: byKey,
    onElement: (ctx, i) => {
      const st = ctx.state ?? { seen: 0 };
      st.seen++;
      ctx.state = st;
      if (i.v % 5 === 0) ctx.tag(ALERTS, `gate dropped ${i.key}@${i.t} #${st.seen}`);
      else ctx.emit({ ...i, trail: `${i.trail} g${st.seen}@${ctx.watermark}` });
    },
  };
}

type Factory = (store: StateStore) => Spec<unknown>;
const erase =
  <S>(make: (store: StateStore) => Spec<S>): Factory =>
  (store) =>
    chainMember(make(store)).spec;
const MEMBERS: Record<string, Factory> = {
  sorter: erase(sorter),
  tally: erase(tally),
  holder: erase(holder),
  gate: erase(gate),
};

const unfused = (store: StateStore, names: readonly string[]): Transform<Item, Item> => {
  const stages = names.map((n) => keyedProcess(store, MEMBERS[n]!(store)));
  return (source) => stages.reduce((flow, stage) => flow.pipe(stage), source);
};
const fused = (store: StateStore, names: readonly string[], piece?: number): Transform<Item, Item> =>
  keyedChain(
    store,
    names.map((n) => chainMember(MEMBERS[n]!(store))),
    piece === undefined ? {} : { piece },
  );

/** An input described as plain values, built afresh for each run (the members never share objects). */
type Step =
  | { readonly batch: readonly { key: string; t: number; v: number; carry: boolean }[] }
  | { readonly advance: number };

function events(steps: readonly Step[]): FlowEvent<Item>[] {
  let watermark = 0;
  const out: FlowEvent<Item>[] = [];
  for (const s of steps) {
    if ('batch' in s) {
      out.push(
        dataEvent(
          s.batch.map((b) =>
            b.carry
              ? { key: b.key, t: b.t, v: b.v, n: 'abcd'.indexOf(b.key), trail: '' }
              : { ...b, trail: '' },
          ),
        ),
      );
    } else {
      watermark += s.advance;
      out.push(watermarkEvent(watermark));
    }
  }
  out.push(watermarkEvent(watermark + 10_000));
  return out;
}

/** The events as plain data, carry flags dropped: what the stages' consumers see. */
function run(transform: Transform<Item, Item>, input: readonly FlowEvent<Item>[]): unknown[] {
  const out: unknown[] = [];
  let failure: unknown;
  from(input)
    .pipe(transform)
    .subscribe({
      next: (e) => out.push(e.kind === 'data' ? { kind: 'data', items: e.items.map(plain) } : e),
      error: (err: unknown) => {
        failure = err;
      },
    });
  if (failure !== undefined) throw failure;
  return out;
}
const plain = (i: Item): unknown => ({ key: i.key, t: i.t, v: i.v, trail: i.trail });

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    batch: fc.array(
      fc.record({
        key: fc.constantFrom('a', 'b', 'c', 'd'),
        t: fc.integer({ min: 0, max: 600 }),
        v: fc.integer({ min: 0, max: 30 }),
        carry: fc.boolean(),
      }),
      { maxLength: 8 },
    ),
  }),
  fc.record({ advance: fc.integer({ min: 1, max: 120 }) }),
);
const memberOrder = fc.shuffledSubarray(Object.keys(MEMBERS), { minLength: 1 });

/** A fixed input that exercises every member: late items, timers of all kinds, cascades. */
const FIXED: Step[] = [];
for (let i = 0; i < 30; i++) {
  FIXED.push({
    batch: [
      { key: 'abcd'[i % 4]!, t: i * 17, v: i % 31, carry: i % 3 === 0 },
      { key: 'abcd'[(i * 3) % 4]!, t: i * 17 - 25, v: (i * 7) % 31, carry: false },
      { key: 'abcd'[(i + 1) % 4]!, t: i * 17 + 60, v: (i * 5) % 31, carry: true },
    ],
  });
  if (i % 3 === 2) FIXED.push({ advance: 45 });
}
const ALL = ['sorter', 'tally', 'holder', 'gate'];

describe('keyedChain', () => {
  it('emits what the members piped as separate stages emit, event for event, and keeps the same state', () => {
    const a = new StateStore();
    const b = new StateStore();
    const expected = run(unfused(a, ALL), events(FIXED));
    const actual = run(fused(b, ALL), events(FIXED));
    // The input exercises what the chain must compose: every member's tags, timers, cascades.
    const tagged = expected.filter((e) => (e as FlowEvent<Item>).kind === 'tagged') as { items: string[] }[];
    const texts = tagged.flatMap((e) => e.items).join('\n');
    for (const what of ['sorter late', 'sorter released late', 'tally quiet', 'holder', 'gate dropped'])
      expect(texts).toContain(what);
    expect(JSON.stringify(expected)).toContain('timer@');
    expect(actual).toEqual(expected);
    expect(deserializeSnapshot(serializeSnapshot(b.snapshot()))).toEqual(
      deserializeSnapshot(serializeSnapshot(a.snapshot())),
    );
  });

  it('on a watermark, hands what a member emits through the later members before they see it', () => {
    // The tally's timer fires at 40; its item reaches the gate, which stamps the watermark it sees: the
    // one before (10), since the gate has not had 50 yet.
    const input: FlowEvent<Item>[] = [
      watermarkEvent(10),
      dataEvent([{ key: 'a', t: 0, v: 1, trail: '' }]),
      watermarkEvent(50),
    ];
    const out = run(fused(new StateStore(), ['tally', 'gate']), input);
    expect(out).toEqual([
      watermarkEvent(10),
      { kind: 'data', items: [{ key: 'a', t: 0, v: 1, trail: ' g1@10' }] },
      { kind: 'tagged', tag: 'alerts', items: ['tally quiet a@40 wm=50'] },
      { kind: 'data', items: [{ key: 'a', t: 40, v: 8, trail: 'timer@50 g2@10' }] },
      watermarkEvent(50),
    ]);
    expect(out).toEqual(run(unfused(new StateStore(), ['tally', 'gate']), input));
  });

  it('equals the unfused composition on random keyed inputs with timers, for any members in any order', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), memberOrder, (steps, names) => {
        const a = new StateStore();
        const b = new StateStore();
        expect(run(fused(b, names), events(steps))).toEqual(run(unfused(a, names), events(steps)));
        expect(deserializeSnapshot(serializeSnapshot(b.snapshot()))).toEqual(
          deserializeSnapshot(serializeSnapshot(a.snapshot())),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('gives the same events taking each batch in pieces: one tagged event per member and tag, in order', () => {
    const expected = run(unfused(new StateStore(), ALL), events(FIXED));
    for (const piece of [1, 2, 3])
      expect(run(fused(new StateStore(), ALL, piece), events(FIXED))).toEqual(expected);
    // A batch of 40 through the gate in pieces of 3: its drops, spread over the pieces, are one event.
    const big: Step[] = [
      {
        batch: Array.from({ length: 40 }, (_, i) => ({
          key: 'abcd'[i % 4]!,
          t: i,
          v: i,
          carry: i % 2 === 0,
        })),
      },
    ];
    const out = run(fused(new StateStore(), ['tally', 'gate'], 3), events(big));
    expect(out).toEqual(run(unfused(new StateStore(), ['tally', 'gate']), events(big)));
    expect(out.filter((e) => (e as FlowEvent<Item>).kind === 'tagged').slice(0, 2)).toMatchObject([
      { tag: 'alerts', items: expect.arrayContaining(['tally a c=3 wm=-Infinity']) },
      { tag: 'alerts', items: expect.arrayContaining(['gate dropped a@0 #1', 'gate dropped b@25 #7']) },
    ]);
    expect(() => keyedChain(new StateStore(), [chainMember(tally())], { piece: 0 })).toThrow(RangeError);
  });

  it('equals the unfused composition taking batches in pieces of any size', () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 30 }),
        memberOrder,
        fc.integer({ min: 1, max: 4 }),
        (steps, names, piece) => {
          const a = new StateStore();
          const b = new StateStore();
          expect(run(fused(b, names, piece), events(steps))).toEqual(run(unfused(a, names), events(steps)));
          expect(deserializeSnapshot(serializeSnapshot(b.snapshot()))).toEqual(
            deserializeSnapshot(serializeSnapshot(a.snapshot())),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('resumes from a checkpoint taken mid-stream, its own or the unfused stages’, as an uninterrupted run', () => {
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 30 }),
        fc.nat(),
        fc.boolean(),
        (steps, at, fromUnfused) => {
          const input = events(steps);
          const cut = at % input.length;
          const uninterrupted = run(unfused(new StateStore(), ALL), events(steps));
          const first = new StateStore();
          const before = run((fromUnfused ? unfused : fused)(first, ALL), input.slice(0, cut));
          const resumed = new StateStore();
          resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
          const after = run(fused(resumed, ALL), input.slice(cut));
          expect([...before, ...after]).toEqual(uninterrupted);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('keeps each member stage’s counters in the graph as separate stages would', () => {
    const counters = (fuse: boolean) => {
      const store = new StateStore();
      const g = new PipelineGraph('chain-test');
      g.source('in');
      const specs = ALL.map((n) => MEMBERS[n]!(store));
      const transform = fuse
        ? g.fused(
            'chain',
            ALL.map((name) => ({ name, emits: [LATE, ALERTS] })),
            (c) =>
              keyedChain(
                store,
                specs.map((spec, i) => chainMember(spec, { counters: c[i]! })),
              ),
          )
        : (source: Parameters<Transform<Item, Item>>[0]) =>
            specs.reduce(
              (flow, spec) =>
                flow.pipe(g.stage(spec.name, keyedProcess(store, spec), { emits: [LATE, ALERTS] })),
              source,
            );
      run(transform, events(FIXED));
      return { counters: g.stageCounters(), graph: g.toMermaid() };
    };
    const expected = counters(false);
    expect(expected.counters.gate!.in).toBeGreaterThan(0);
    expect(counters(true)).toEqual(expected);
  });

  it('fails with the member that threw, in an element or a timer, named as its stage', () => {
    const bomb = (where: 'element' | 'timer'): Spec<unknown> => ({
      name: 'bomb',
      key: (i) => i.key,
      dense: byKey,
      onElement: (ctx, i) => {
        if (where === 'element' && i.v === 29) throw new RangeError('v 29 is out of range');
        ctx.setTimer('t', i.t + 1);
        ctx.emit(i);
      },
      onTimer: (_ctx, timer) => {
        if (where === 'timer' && timer.time > 100) throw new RangeError('late timer');
      },
    });
    for (const where of ['element', 'timer'] as const) {
      const store = new StateStore();
      const g = new PipelineGraph('chain-test');
      g.source('in');
      const members = [chainMember(tally()), chainMember(bomb(where)), chainMember(gate())];
      const transform = g.fused(
        'chain',
        members.map((m) => ({ name: `${m.spec.name}Stage` })),
        () =>
          keyedChain(
            store,
            members.map((m) => ({ ...m, stage: `${m.spec.name}Stage` })),
          ),
      );
      const input = new Subject<FlowEvent<Item>>();
      let failure: unknown;
      const seen: FlowEvent<Item>[] = [];
      input.pipe(transform).subscribe({ next: (e) => seen.push(e), error: (e: unknown) => (failure = e) });
      input.next(dataEvent([{ key: 'a', t: 5, v: 3, trail: '' }]));
      input.next(watermarkEvent(50));
      expect(failure).toBeUndefined();
      input.next(dataEvent([{ key: 'b', t: 200, v: 29, trail: '' }]));
      input.next(watermarkEvent(300));
      expect(failure).toBeInstanceOf(StageError);
      expect((failure as StageError).stage).toBe('bombStage');
      expect((failure as StageError).message).toBe(
        `stage "bombStage" of graph "chain-test" failed: RangeError: ${where === 'element' ? 'v 29 is out of range' : 'late timer'}`,
      );
      // Nothing of the failed event went on.
      expect(seen.some((e) => e.kind === 'watermark' && e.time === 300)).toBe(false);
    }
    // Outside a graph, the chain's own error names the member.
    let failure: unknown;
    from([dataEvent([{ key: 'a', t: 5, v: 29, trail: '' }])])
      .pipe(keyedChain(new StateStore(), [chainMember(gate()), chainMember(bomb('element'))]))
      .subscribe({ error: (e: unknown) => (failure = e) });
    expect(failure).toBeInstanceOf(MemberFailure);
    expect((failure as MemberFailure).stage).toBe('bomb');
    expect((failure as MemberFailure).cause).toBeInstanceOf(RangeError);
  });

  it('calls a member’s beforeBatch once per batch it is handed, before its first element', () => {
    const calls: string[] = [];
    const tallySpec = tally();
    const gateSpec = gate();
    const chain = keyedChain(new StateStore(), [
      chainMember(tallySpec, { beforeBatch: () => calls.push('tally') }),
      chainMember(
        {
          ...gateSpec,
          onElement: (ctx, i) => {
            calls.push(`gate ${i.t}`);
            gateSpec.onElement(ctx, i);
          },
        },
        { beforeBatch: () => calls.push('gate') },
      ),
    ]);
    run(chain, [
      dataEvent([
        { key: 'a', t: 1, v: 1, trail: '' },
        { key: 'b', t: 2, v: 1, trail: '' },
      ]),
      dataEvent([]),
      watermarkEvent(100),
    ]);
    // The watermark's timers (41, 42) reach the gate as one more batch.
    expect(calls).toEqual(['tally', 'gate', 'gate 1', 'gate 2', 'gate', 'gate 41', 'gate 42']);
  });

  it('calls beforeBatch once per batch also when the batch goes through in pieces', () => {
    const calls: string[] = [];
    const chain = keyedChain(
      new StateStore(),
      [
        chainMember(gate(), { beforeBatch: () => calls.push('gate') }),
        chainMember(tally(), { beforeBatch: () => calls.push('tally') }),
      ],
      { piece: 2 },
    );
    run(chain, [
      // The gate drops the first two (multiples of 5): the tally's first piece is the batch's second.
      dataEvent([0, 5, 1, 2, 3].map((v) => ({ key: 'abcd'[v % 4]!, t: v, v, trail: '' }))),
      dataEvent([{ key: 'a', t: 9, v: 9, trail: '' }]),
    ]);
    expect(calls).toEqual(['gate', 'tally', 'gate', 'tally']);
  });

  it('refuses members that do not share one dense key index', () => {
    expect(() =>
      keyedChain(new StateStore(), [
        chainMember(gate()),
        chainMember({ ...tally(), dense: { index: 'other', of: () => undefined } }),
      ]),
    ).toThrow(/dense index "keys"/);
  });
});
