/** Beam's stateful DoFn: per-key state and event-time timers kept in the state store. */
import { type LinkFactory, type LinkOutput, linkTransform } from './chain.js';
import type { DenseKey } from './dense-keys.js';
import type { OutputTag, Transform } from './flow.js';
import type { StateStore } from './state-store.js';

/** Not a key any element can have: forces the next element to look its state up. */
const NO_KEY = '\u0000no-key';

/** What a keyed function sees for the key it is called for. */
export interface KeyedContext<O, S> {
  readonly key: string;
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
  readonly onWatermark?: (watermark: number, out: LinkOutput<O>) => void;
}

/**
 * Beam's stateful DoFn: per-key state and event-time timers held in the store, elements processed in
 * arrival order within a batch, timers fired in time order before the watermark is passed on, so every
 * output a timer makes precedes the watermark that caused it. The transform can be chained with the
 * stages around it (`PipelineGraph.chain`).
 */
export function keyedProcess<I, O, S>(store: StateStore, spec: KeyedProcessSpec<I, O, S>): Transform<I, O> {
  return linkTransform(
    spec.dense === undefined ? stringKeyed(store, spec) : denseKeyed(store, spec, spec.dense),
  );
}

function stringKeyed<I, O, S>(store: StateStore, spec: KeyedProcessSpec<I, O, S>): LinkFactory<I, O> {
  const states = store.keyed<S>(spec.name);
  const timers = store.timers(spec.name);
  const inputWatermark = store.value<number>(`${spec.name}/input-watermark`, Number.NEGATIVE_INFINITY);

  return (out) => {
    let key = '';
    // The current key's state, looked up once per element: operators read `ctx.state` many times.
    let current: S | undefined;
    let watermark = inputWatermark.get();
    const ctx: KeyedContext<O, S> = {
      get key() {
        return key;
      },
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
      emit: out.emit,
      tag: out.tag,
      setTimer: (name, time) => timers.set(key, name, time),
      clearTimer: (name) => timers.delete(key, name),
      timerTime: (name) => timers.get(key, name),
    };
    return {
      start: () => {
        watermark = inputWatermark.get();
        key = NO_KEY;
      },
      element: (item) => {
        const k = spec.key(item);
        if (k !== key) {
          key = k;
          current = states.get(k);
        }
        spec.onElement(ctx, item);
      },
      watermark: (time) => {
        watermark = time;
        inputWatermark.set(time);
        if (spec.onTimer !== undefined) {
          for (let t = timers.popDue(time); t !== undefined; t = timers.popDue(time)) {
            key = t.key;
            current = states.get(key);
            spec.onTimer(ctx, t);
          }
        }
        spec.onWatermark?.(time, out);
        // onWatermark may have touched any key's state directly.
        key = NO_KEY;
        current = undefined;
      },
    };
  };
}

/** `keyedProcess` with state and timers by dense key number: the same semantics, other lookups. */
function denseKeyed<I, O, S>(
  store: StateStore,
  spec: KeyedProcessSpec<I, O, S>,
  dense: DenseKey<I>,
): LinkFactory<I, O> {
  const states = store.denseKeyed<S>(spec.name, dense.index);
  const index = store.denseKeys(dense.index);
  const timers = store.timers(spec.name);
  const inputWatermark = store.value<number>(`${spec.name}/input-watermark`, Number.NEGATIVE_INFINITY);

  return (out) => {
    let key = '';
    /** The current key's number; -1 before the first element of an event. */
    let n = -1;
    let current: S | undefined;
    let watermark = inputWatermark.get();
    const ctx: KeyedContext<O, S> = {
      get key() {
        return key;
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
      emit: out.emit,
      tag: out.tag,
      setTimer: (name, time) => timers.setAt(n, key, name, time),
      clearTimer: (name) => timers.delete(key, name),
      timerTime: (name) => timers.getAt(n, key, name),
    };
    return {
      start: () => {
        // A snapshot may have begun since the last event: the next element looks its state up again.
        watermark = inputWatermark.get();
        n = -1;
      },
      element: (item) => {
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
      },
      watermark: (time) => {
        watermark = time;
        inputWatermark.set(time);
        if (spec.onTimer !== undefined) {
          for (let t = timers.popDue(time); t !== undefined; t = timers.popDue(time)) {
            key = t.key;
            n = index.intern(key);
            current = states.getAt(n, key);
            spec.onTimer(ctx, t);
          }
        }
        spec.onWatermark?.(time, out);
        // onWatermark may have touched any key's state directly.
        n = -1;
        current = undefined;
      },
    };
  };
}
