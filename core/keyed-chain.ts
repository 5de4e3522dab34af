/**
 * Operator chaining for keyed stages (Flink's fused chain): several `KeyedProcessSpec`s that share one
 * dense key index run in one loop, an element looked up once and handed from member to member, with the
 * outputs, timers and watermarks of the same stages composed one after another.
 */
import { Observable } from 'rxjs';
import { type FlowEvent, OutputBuffer, type TaggedEvent, type Transform } from './flow.js';
import { MemberFailure, type StageCounters } from './graph.js';
import { subscribeGuarded } from './guarded.js';
import type { KeyedContext, KeyedProcessSpec } from './keyed-process.js';
import type { DenseKeyedState, StateStore, TimerQueue } from './state-store.js';

/** One stage of a chain: its spec (state and timers under its own name, as alone) and how it is shown. */
export interface ChainMember<T> {
  readonly spec: KeyedProcessSpec<T, T, unknown>;
  /** The member's stage name in the graph (failures, counters); default the spec's name. */
  readonly stage?: string;
  /** Kept as the graph keeps a stage's: elements in and out, tagged outputs, watermark passed on. */
  readonly counters?: StageCounters;
  /**
   * Called before the member takes the first element of each batch it receives: the batch the chain
   * received, or what the member before it emitted on a watermark. A throw there fails the member.
   */
  readonly beforeBatch?: () => void;
}

/** A member of a chain from a spec of any state type: the chain never looks into the state. */
export function chainMember<T, S>(
  spec: KeyedProcessSpec<T, T, S>,
  options: Omit<ChainMember<T>, 'spec'> = {},
): ChainMember<T> {
  return { ...options, spec: spec as unknown as KeyedProcessSpec<T, T, unknown> };
}

/**
 * Runs the members as `keyedProcess(store, m1)`, `keyedProcess(store, m2)`, … piped one after another
 * would, with the same state and timers in the store (so checkpoints are interchangeable), but with one
 * key lookup per element and each member's output handed straight to the next member:
 *
 * - a data batch yields the tagged outputs of member 1, then of member 2, …, then the data of the last;
 * - on a watermark, each member in turn fires its due timers and `onWatermark`; what it emits goes
 *   through the later members as a batch before they see the watermark (their `ctx.watermark` still the
 *   one before), and its tagged outputs precede theirs;
 * - a throw in a member leaves as a `MemberFailure` naming the member's stage.
 *
 * A batch goes through the members in pieces (`options.piece`, default `PIECE`), each piece through every member before the next,
 * which each member's outputs do not show: it sees its elements in the same order, and its outputs are
 * gathered per batch as above.
 *
 * Every member must key by the same dense key index (the first member's `key` and `dense` are used).
 */
export function keyedChain<T>(
  store: StateStore,
  members: readonly ChainMember<T>[],
  options: { readonly piece?: number } = {},
): Transform<T, T> {
  const piece = options.piece ?? PIECE;
  if (!(Number.isInteger(piece) && piece >= 1))
    throw new RangeError(`keyed chain: piece must be ≥ 1, got ${piece}`);
  if (members.length === 0) throw new Error('a keyed chain needs at least one member');
  const first = members[0]!.spec;
  const dense = first.dense;
  if (dense === undefined) throw new Error(`keyed chain: member "${first.name}" has no dense key`);
  for (const m of members) {
    if (m.spec.dense?.index !== dense.index)
      throw new Error(
        `keyed chain: member "${m.spec.name}" does not key by the dense index "${dense.index}"`,
      );
  }
  const keyOf = first.key;
  const numberOf = dense.of;
  const index = store.denseKeys(dense.index);
  const handles = members.map((m) => ({
    states: store.denseKeyed<unknown>(m.spec.name, dense.index),
    timers: store.timers(m.spec.name),
    inputWatermark: store.value<number>(`${m.spec.name}/input-watermark`, Number.NEGATIVE_INFINITY),
  }));
  const stageNames = members.map((m) => m.stage ?? m.spec.name);

  return (source) =>
    new Observable<FlowEvent<T>>((subscriber) => {
      const count = members.length;
      /** The member running now, for naming a failure; -1 while the chain hands its output on. */
      let active = -1;
      const ctxs = members.map(
        (m, k) => new MemberContext<T>(handles[k]!.states, handles[k]!.timers, m.counters ?? newCounters()),
      );
      // Each element's key number, for the batch a member is given, and for its output when that is not the
      // batch itself: most members pass every element on, and their successor reuses the numbers.
      let numbers = new Int32Array(1024);
      let spare = new Int32Array(1024);
      const numberAll = (items: readonly T[]): void => {
        if (spare.length < items.length) spare = new Int32Array(Math.max(items.length, 2 * spare.length));
        for (let i = 0; i < items.length; i++) {
          const item = items[i]!;
          const key = keyOf(item);
          const n = numberOf(item);
          // A carried number counts only if it names this key in this store's index.
          spare[i] = n !== undefined && index.keyOf(n) === key ? n : index.intern(key);
        }
        const t = numbers;
        numbers = spare;
        spare = t;
      };

      /** Per member: it has taken a piece of the batch at hand (`beforeBatch` is called once a batch). */
      const started: boolean[] = members.map(() => false);
      /** Member `k` processes `items` (numbered in `numbers`) as a data batch; returns its main output. */
      const pass = (k: number, items: readonly T[]): readonly T[] => {
        const ctx = ctxs[k]!;
        const spec = members[k]!.spec;
        const onElement = spec.onElement;
        active = k;
        if (!started[k]) {
          started[k] = true;
          members[k]!.beforeBatch?.();
        }
        ctx.watermark = handles[k]!.inputWatermark.get();
        ctx.keyNumber = -1;
        ctx.forget();
        ctx.counters.in += items.length;
        const main = ctx.main;
        main.startBatch(items);
        const nums = numbers;
        for (let i = 0; i < items.length; i++) {
          const n = nums[i]!;
          if (n !== ctx.keyNumber) {
            ctx.keyNumber = n;
            ctx.key = index.keyOf(n)!;
          }
          onElement(ctx, items[i]!);
        }
        active = -1;
        return takeMain(ctx);
      };
      const takeMain = (ctx: MemberContext<T>): readonly T[] => {
        let out: readonly T[] = EMPTY;
        ctx.main.drainTo((e) => {
          if (e.kind === 'data') out = e.items;
          else if (e.kind === 'tagged') addTagged(ctx.tagged, e);
        });
        ctx.counters.out += out.length;
        return out;
      };
      /** Runs one piece of a batch, numbered in `numbers`, through members `k …`; returns the chain's output. */
      const run = (k: number, input: readonly T[]): readonly T[] => {
        let items = input;
        for (let j = k; j < count && items.length > 0; j++) {
          const out = pass(j, items);
          if (out !== items && out.length > 0 && j + 1 < count) numberAll(out);
          items = out;
        }
        return items;
      };
      /**
       * Runs `input`, a batch or the output of member `k - 1`, through members `k …` a piece of
       * `piece` elements at a time; returns the chain's output (the input itself when every member
       * passed every element on).
       */
      const through = (k: number, input: readonly T[]): readonly T[] => {
        if (k >= count) return input;
        started.fill(false);
        if (input.length <= piece) {
          numberAll(input);
          return run(k, input);
        }
        let out: T[] | undefined;
        for (let from = 0; from < input.length; from += piece) {
          const part = input.slice(from, from + piece);
          numberAll(part);
          const done = run(k, part);
          if (out === undefined) {
            if (done === part) continue;
            out = input.slice(0, from);
          }
          for (let i = 0; i < done.length; i++) out.push(done[i]!);
        }
        return out ?? input;
      };

      const next = (e: FlowEvent<T>): void => subscriber.next(e);
      /** Hands on member `k`'s tagged outputs, counting them. */
      const drainTagged = (k: number): void => {
        const ctx = ctxs[k]!;
        if (ctx.tagged.length === 0) return;
        const counts = ctx.counters.tagged;
        for (const e of ctx.tagged) {
          counts[e.tag] = (counts[e.tag] ?? 0) + e.items.length;
          next(e);
        }
        ctx.tagged = [];
      };
      const emitData = (items: readonly T[]): void => {
        if (items.length > 0) next({ kind: 'data', items });
      };

      const onData = (items: readonly T[]): void => {
        if (items.length === 0) return;
        const out = through(0, items);
        for (let k = 0; k < count; k++) drainTagged(k);
        emitData(out);
      };

      const onWatermark = (time: number): void => {
        for (let k = 0; k < count; k++) {
          const spec = members[k]!.spec;
          const ctx = ctxs[k]!;
          const h = handles[k]!;
          ctx.watermark = time;
          ctx.forget();
          h.inputWatermark.set(time);
          active = k;
          if (spec.onTimer !== undefined) {
            for (let t = h.timers.popDue(time); t !== undefined; t = h.timers.popDue(time)) {
              ctx.key = t.key;
              ctx.keyNumber = index.intern(t.key);
              spec.onTimer(ctx, t);
            }
          }
          spec.onWatermark?.(time, ctx.main);
          // onWatermark may have touched any key's state directly.
          ctx.keyNumber = -1;
          ctx.forget();
          active = -1;
          const emitted = takeMain(ctx);
          drainTagged(k);
          if (emitted.length > 0) {
            const out = through(k + 1, emitted);
            for (let j = k + 1; j < count; j++) drainTagged(j);
            emitData(out);
          }
          ctx.counters.watermark = time;
        }
      };

      const fail = (err: unknown): never => {
        if (active < 0) throw err;
        const stage = stageNames[active]!;
        active = -1;
        throw new MemberFailure(stage, err);
      };

      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            try {
              onData(event.items);
            } catch (err) {
              fail(err);
            }
          } else if (event.kind === 'watermark') {
            try {
              onWatermark(event.time);
            } catch (err) {
              fail(err);
            }
            next(event);
          } else next(event);
        },
      });
    });
}

const EMPTY: readonly never[] = [];

/**
 * Elements a member takes before the next member takes its output: a batch of a 50,000-meter fleet is
 * ~200,000 readings, and run member by member over the whole of it, every member read each reading (and
 * its state) back from memory; a piece of this size and the members' states for its keys stay in the
 * cache from one member to the next. Outputs are the same either way (see `addTagged`).
 */
const PIECE = 2048;

/**
 * Adds a member's tagged output of one piece to what it tagged earlier in the same batch: one event per
 * tag, in the order the tags first occurred, as if the member had taken the batch whole. The lists a
 * drain hands over are no longer the buffer's: the earlier one is extended in place.
 */
function addTagged(tagged: TaggedEvent[], e: TaggedEvent): void {
  for (let i = 0; i < tagged.length; i++) {
    const t = tagged[i]!;
    if (t.tag !== e.tag) continue;
    const items = t.items as unknown[];
    for (let j = 0; j < e.items.length; j++) items.push(e.items[j]);
    return;
  }
  tagged.push(e);
}

function newCounters(): StageCounters {
  return { in: 0, out: 0, tagged: {}, watermark: Number.NEGATIVE_INFINITY };
}

/**
 * What a member's function sees: its own key, state, timers and watermark, one object per member. The
 * key's state is looked up when the member first reads it: most members keep their state in dense rows
 * and read their keyed entry (an open fault) for few readings or none, and a lookup marks the entry
 * read for the checkpoint's copy-on-write (`DenseKeyedState.getAt`).
 */
class MemberContext<T> implements KeyedContext<T, unknown> {
  key = '';
  keyNumber = -1;
  /** The state of key number `lookedUp` (of none while that is -1). */
  private current: unknown;
  private lookedUp = -1;
  watermark = Number.NEGATIVE_INFINITY;
  /** The member's main output for the batch (or watermark) at hand; the input batch while it echoes it. */
  readonly main = new OutputBuffer<T>();
  /** Its tagged outputs, handed on in member order once the chain's batch is through. */
  tagged: TaggedEvent[] = [];

  constructor(
    readonly states: DenseKeyedState<unknown>,
    private readonly timers: TimerQueue,
    readonly counters: StageCounters,
  ) {}

  get state(): unknown {
    const n = this.keyNumber;
    if (n !== this.lookedUp) {
      this.current = n < 0 ? undefined : this.states.getAt(n, this.key);
      this.lookedUp = n;
    }
    return this.current;
  }

  set state(value: unknown) {
    this.current = value;
    this.lookedUp = this.keyNumber;
    if (value === undefined) this.states.deleteAt(this.keyNumber, this.key);
    else this.states.setAt(this.keyNumber, this.key, value);
  }

  /** Drops the state looked up: another path (a watermark's, a restore) may have changed the entries. */
  forget(): void {
    this.current = undefined;
    this.lookedUp = -1;
  }

  emit(item: T): void {
    this.main.emit(item);
  }

  tag<U>(tag: { readonly name: string; readonly __type?: U }, item: U): void {
    this.main.tag(tag, item);
  }

  setTimer(name: string, time: number): void {
    this.timers.setAt(this.keyNumber, this.key, name, time);
  }

  clearTimer(name: string): void {
    this.timers.delete(this.key, name);
  }

  timerTime(name: string): number | undefined {
    return this.timers.getAt(this.keyNumber, this.key, name);
  }
}
