/** Beam's stateful DoFn: per-key state and event-time timers kept in the state store. */
import { Observable } from 'rxjs';
import type { DenseKey } from './dense-keys.js';
import { type FlowEvent, OutputBuffer, type OutputTag, type Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';
import type { StateStore } from './state-store.js';

/** Not a key any element can have: forces the next element to look its state up. */
const NO_KEY = '\u0000no-key';

/** What a keyed function sees for the key it is called for. */
export interface KeyedContext<O, S> {
  readonly key: string;
  /** The key's number in the stage's dense key index (`KeyedProcessSpec.dense`); -1 without one. */
  readonly keyNumber: number;
  /** Per-key state, undefined until set. Mutating the object in place is allowed. */
  state: S | undefined;
  /** The input watermark when the element or timer is processed. */
  readonly watermark: number;
  emit(item: O): void;
  tag<T>(tag: OutputTag<T>, item: T): void;
  /** Sets (or moves) the event-time timer `name` of this key; it fires once the watermark reaches `time`. */
  setTimer(name: string, time: number): void;
  clearTimer(name: string): void;
  timerTime(name: string): number | undefined;
}

export interface KeyedProcessSpec<I, O, S> {
  /** Namespace of the state and timers in the store: the stage name. */
  readonly name: string;
  readonly key: (item: I) => string;
  /**
   * Numbers the keys with one of the store's dense key indexes: state and timers are then found by an
   * array access instead of a hash of the key string in each stage's own map.
   */
  readonly dense?: DenseKey<I>;
  readonly onElement: (ctx: KeyedContext<O, S>, item: I) => void;
  readonly onTimer?: (
    ctx: KeyedContext<O, S>,
    timer: { readonly name: string; readonly time: number },
  ) => void;
  /** Called once per input watermark after the due timers fired (e.g. to flush a sort buffer). */
  readonly onWatermark?: (watermark: number, out: OutputBuffer<O>) => void;
}

/**
 * Beam's stateful DoFn: per-key state and event-time timers held in the store, elements processed in
 * arrival order within a batch, timers fired in time order before the watermark is passed on, so every
 * output a timer makes precedes the watermark that caused it.
 */
export function keyedProcess<I, O, S>(store: StateStore, spec: KeyedProcessSpec<I, O, S>): Transform<I, O> {
  return spec.dense === undefined ? stringKeyed(store, spec) : denseKeyed(store, spec, spec.dense);
}

function stringKeyed<I, O, S>(store: StateStore, spec: KeyedProcessSpec<I, O, S>): Transform<I, O> {
  const states = store.keyed<S>(spec.name);
  const timers = store.timers(spec.name);
  const inputWatermark = store.value<number>(`${spec.name}/input-watermark`, Number.NEGATIVE_INFINITY);

  return (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      const out = new OutputBuffer<O>();
      let key = '';
      // The current key's state, looked up once per element: operators read `ctx.state` many times.
      let current: S | undefined;
      let watermark = inputWatermark.get();
      const ctx: KeyedContext<O, S> = {
        get key() {
          return key;
        },
        keyNumber: -1,
        get state() {
          return current;
        },
        set state(value: S | undefined) {
          current = value;
          if (value === undefined) states.delete(key);
          else states.set(key, value);
        },
        get watermark() {
          return watermark;
        },
        emit: (item) => out.emit(item),
        tag: (tag, item) => out.tag(tag, item),
        setTimer: (name, time) => timers.set(key, name, time),
        clearTimer: (name) => timers.delete(key, name),
        timerTime: (name) => timers.get(key, name),
      };
      const next = (e: FlowEvent<O>): void => subscriber.next(e);

      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            watermark = inputWatermark.get();
            key = NO_KEY;
            const items = event.items;
            out.startBatch(items);
            for (let i = 0; i < items.length; i++) {
              const item = items[i]!;
              const k = spec.key(item);
              if (k !== key) {
                key = k;
                current = states.get(k);
              }
              spec.onElement(ctx, item);
            }
            out.drainTo(next);
          } else if (event.kind === 'watermark') {
            watermark = event.time;
            inputWatermark.set(event.time);
            if (spec.onTimer !== undefined) {
              for (let t = timers.popDue(event.time); t !== undefined; t = timers.popDue(event.time)) {
                key = t.key;
                current = states.get(key);
                spec.onTimer(ctx, t);
              }
            }
            spec.onWatermark?.(event.time, out);
            // onWatermark may have touched any key's state directly.
            key = NO_KEY;
            current = undefined;
            out.drainTo(next);
            subscriber.next(event);
          } else {
            subscriber.next(event);
          }
        },
      });
    });
}

/** `keyedProcess` with state and timers by dense key number: the same semantics, other lookups. */
function denseKeyed<I, O, S>(
  store: StateStore,
  spec: KeyedProcessSpec<I, O, S>,
  dense: DenseKey<I>,
): Transform<I, O> {
  const states = store.denseKeyed<S>(spec.name, dense.index);
  const index = store.denseKeys(dense.index);
  const timers = store.timers(spec.name);
  const inputWatermark = store.value<number>(`${spec.name}/input-watermark`, Number.NEGATIVE_INFINITY);

  return (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      const out = new OutputBuffer<O>();
      let key = '';
      /** The current key's number; -1 before the first element of a batch. */
      let n = -1;
      let current: S | undefined;
      let watermark = inputWatermark.get();
      const ctx: KeyedContext<O, S> = {
        get key() {
          return key;
        },
        get keyNumber() {
          return n;
        },
        get state() {
          return current;
        },
        set state(value: S | undefined) {
          current = value;
          if (value === undefined) states.deleteAt(n, key);
          else states.setAt(n, key, value);
        },
        get watermark() {
          return watermark;
        },
        emit: (item) => out.emit(item),
        tag: (tag, item) => out.tag(tag, item),
        setTimer: (name, time) => timers.setAt(n, key, name, time),
        clearTimer: (name) => timers.delete(key, name),
        timerTime: (name) => timers.getAt(n, key, name),
      };
      const next = (e: FlowEvent<O>): void => subscriber.next(e);

      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            watermark = inputWatermark.get();
            n = -1;
            const items = event.items;
            out.startBatch(items);
            for (let i = 0; i < items.length; i++) {
              const item = items[i]!;
              const k = spec.key(item);
              let m = dense.of(item);
              // A carried number counts only if it names this key in this store's index; an element
              // without one, of the key before it, takes that key's number.
              if (m === undefined || index.keyOf(m) !== k) m = k === key && n >= 0 ? n : index.intern(k);
              if (m !== n) {
                n = m;
                key = k;
                current = states.getAt(m, k);
              }
              spec.onElement(ctx, item);
            }
            out.drainTo(next);
          } else if (event.kind === 'watermark') {
            watermark = event.time;
            inputWatermark.set(event.time);
            if (spec.onTimer !== undefined) {
              for (let t = timers.popDue(event.time); t !== undefined; t = timers.popDue(event.time)) {
                key = t.key;
                n = index.intern(key);
                current = states.getAt(n, key);
                spec.onTimer(ctx, t);
              }
            }
            spec.onWatermark?.(event.time, out);
            // onWatermark may have touched any key's state directly.
            n = -1;
            current = undefined;
            out.drainTo(next);
            subscriber.next(event);
          } else {
            subscriber.next(event);
          }
        },
      });
    });
}
