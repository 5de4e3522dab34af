/**
 * Operator chaining for keyed stages (Flink's fused chain): several `KeyedProcessSpec`s that share one
 * dense key index run in one loop, an element looked up once and handed from member to member, with the
 * outputs, timers and watermarks of the same stages composed one after another.
 */
import { Observable } from 'rxjs';
import { type FlowEvent, OutputBuffer, type Transform } from './flow.js';
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
 * Every member must key by the same dense key index (the first member's `key` and `dense` are used).
 */
export function keyedChain<T>(store: StateStore, members: readonly ChainMember<T>[]): Transform<T, T> {
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
      /** Numbers each delivery of a batch to a member, for `beforeBatch`. */
      let delivery = 0;
      const final = new OutputBuffer<T>();
      const ctxs: MemberContext<T>[] = [];
      const onElements: ((ctx: KeyedContext<T, unknown>, item: T) => void)[] = [];

      /** Hands `item`, whose key and number are known, to member `k` (past the last: the chain's output). */
      const feed = (k: number, item: T, key: string, n: number): void => {
        if (k === count) {
          final.emit(item);
          return;
        }
        const ctx = ctxs[k]!;
        if (ctx.keyNumber !== n) {
          ctx.keyNumber = n;
          ctx.key = key;
          ctx.current = ctx.states.getAt(n, key);
        }
        ctx.item = item;
        ctx.counters.in++;
        active = k;
        onElements[k]!(ctx, item);
      };
      /** Hands on an element whose key is not known yet. */
      const feedKeyed = (k: number, item: T): void => {
        const key = keyOf(item);
        let n = numberOf(item);
        // A carried number counts only if it names this key in this store's index.
        if (n === undefined || index.keyOf(n) !== key) n = index.intern(key);
        feed(k, item, key, n);
      };
      const forward = (k: number, item: T, from: MemberContext<T>): void => {
        if (item === from.item) feed(k, item, from.key, from.keyNumber);
        else feedKeyed(k, item);
        active = k - 1;
      };

      for (let k = 0; k < count; k++) {
        const spec = members[k]!.spec;
        const h = handles[k]!;
        const ctx = new MemberContext<T>(
          k,
          h.states,
          h.timers,
          members[k]!.counters ?? newCounters(),
          forward,
        );
        ctx.watermark = h.inputWatermark.get();
        ctxs.push(ctx);
        const before = members[k]!.beforeBatch;
        if (before === undefined) onElements.push(spec.onElement);
        else {
          let seen = -1;
          onElements.push((c, item) => {
            if (seen !== delivery) {
              seen = delivery;
              before();
            }
            spec.onElement(c, item);
          });
        }
      }

      const next = (e: FlowEvent<T>): void => subscriber.next(e);
      /** Hands on member `k`'s tagged outputs, counting them. */
      const drainTagged = (k: number): void => {
        const ctx = ctxs[k]!;
        ctx.out.drainTo((e) => {
          if (e.kind === 'tagged') {
            const tagged = ctx.counters.tagged;
            tagged[e.tag] = (tagged[e.tag] ?? 0) + e.items.length;
          }
          next(e);
        });
      };
      /** Forgets each member's current key: state may have changed outside its context since. */
      const startEvent = (): void => {
        delivery++;
        for (let k = 0; k < count; k++) {
          const ctx = ctxs[k]!;
          ctx.keyNumber = -1;
          ctx.current = undefined;
          ctx.item = undefined;
          ctx.watermark = handles[k]!.inputWatermark.get();
        }
      };

      const onData = (items: readonly T[]): void => {
        startEvent();
        final.startBatch(items);
        for (let i = 0; i < items.length; i++) feedKeyed(0, items[i]!);
        active = -1;
        for (let k = 0; k < count; k++) drainTagged(k);
        final.drainTo(next);
      };

      const onWatermark = (time: number): void => {
        startEvent();
        for (let k = 0; k < count; k++) {
          const spec = members[k]!.spec;
          const ctx = ctxs[k]!;
          const h = handles[k]!;
          ctx.watermark = time;
          h.inputWatermark.set(time);
          ctx.buffering = true;
          active = k;
          if (spec.onTimer !== undefined) {
            for (let t = h.timers.popDue(time); t !== undefined; t = h.timers.popDue(time)) {
              ctx.key = t.key;
              ctx.keyNumber = index.intern(t.key);
              ctx.current = ctx.states.getAt(ctx.keyNumber, t.key);
              ctx.item = undefined;
              spec.onTimer(ctx, t);
            }
          }
          spec.onWatermark?.(time, ctx.out);
          ctx.buffering = false;
          // onWatermark may have touched any key's state directly.
          ctx.keyNumber = -1;
          ctx.current = undefined;
          active = -1;
          let emitted: readonly T[] = [];
          ctx.out.drainTo((e) => {
            if (e.kind === 'data') emitted = e.items;
            else if (e.kind === 'tagged') {
              const tagged = ctx.counters.tagged;
              tagged[e.tag] = (tagged[e.tag] ?? 0) + e.items.length;
              next(e);
            }
          });
          ctx.counters.out += emitted.length;
          if (emitted.length > 0) {
            delivery++;
            if (k + 1 < count) {
              for (let i = 0; i < emitted.length; i++) feedKeyed(k + 1, emitted[i]!);
              active = -1;
              for (let j = k + 1; j < count; j++) drainTagged(j);
            } else for (let i = 0; i < emitted.length; i++) final.emit(emitted[i]!);
            final.drainTo(next);
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

function newCounters(): StageCounters {
  return { in: 0, out: 0, tagged: {}, watermark: Number.NEGATIVE_INFINITY };
}

/** What a member's function sees: its own key, state, timers and watermark, one object per member. */
class MemberContext<T> implements KeyedContext<T, unknown> {
  key = '';
  keyNumber = -1;
  current: unknown;
  watermark = Number.NEGATIVE_INFINITY;
  /** The element being processed: emitting it again hands its key on without a lookup. */
  item: T | undefined = undefined;
  /** Firing timers and `onWatermark`: emitted elements wait in `out` until the member is done. */
  buffering = false;
  readonly out = new OutputBuffer<T>();

  constructor(
    private readonly k: number,
    readonly states: DenseKeyedState<unknown>,
    private readonly timers: TimerQueue,
    readonly counters: StageCounters,
    private readonly forward: (k: number, item: T, from: MemberContext<T>) => void,
  ) {}

  get state(): unknown {
    return this.current;
  }

  set state(value: unknown) {
    this.current = value;
    if (value === undefined) this.states.deleteAt(this.keyNumber, this.key);
    else this.states.setAt(this.keyNumber, this.key, value);
  }

  emit(item: T): void {
    if (this.buffering) {
      this.out.emit(item);
      return;
    }
    this.counters.out++;
    this.forward(this.k + 1, item, this);
  }

  tag<U>(tag: { readonly name: string; readonly __type?: U }, item: U): void {
    this.out.tag(tag, item);
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
