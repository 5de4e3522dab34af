/** Event-time windows (fixed, sliding, session) with allowed lateness and a `late` tagged output. */

import type { DenseKey } from './dense-keys.js';
import { type OutputTag, outputTag, type Transform } from './flow.js';
import { type KeyedContext, keyedProcess } from './keyed-process.js';
import type { StateStore } from './state-store.js';

export type WindowFn =
  | { readonly kind: 'fixed'; readonly sizeMs: number; readonly offsetMs: number }
  | { readonly kind: 'sliding'; readonly sizeMs: number; readonly periodMs: number }
  | { readonly kind: 'session'; readonly gapMs: number };

/** Tumbling windows `[k·size + offset, (k+1)·size + offset)`. */
export function fixedWindows(sizeMs: number, offsetMs = 0): WindowFn {
  if (!(sizeMs > 0)) throw new RangeError(`window size must be positive, got ${sizeMs}`);
  return { kind: 'fixed', sizeMs, offsetMs };
}

/** Overlapping windows of `sizeMs` starting every `periodMs`; an element lands in size/period windows. */
export function slidingWindows(sizeMs: number, periodMs: number): WindowFn {
  if (!(sizeMs > 0 && periodMs > 0 && periodMs <= sizeMs)) {
    throw new RangeError(`sliding windows need 0 < period <= size, got size ${sizeMs}, period ${periodMs}`);
  }
  return { kind: 'sliding', sizeMs, periodMs };
}

/** Per-key sessions that close after `gapMs` without data; sessions that come to overlap are merged. */
export function sessionWindows(gapMs: number): WindowFn {
  if (!(gapMs > 0)) throw new RangeError(`session gap must be positive, got ${gapMs}`);
  return { kind: 'session', gapMs };
}

/** A combine function; accumulators are plain JSON so they can be checkpointed. */
export interface Aggregator<I, A> {
  init(): A;
  add(acc: A, item: I): A;
  merge(a: A, b: A): A;
}

/** One firing of a window. `late` panes re-fire a window with data that came within the allowed lateness. */
export interface WindowPane<A> {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly acc: A;
  readonly late: boolean;
}

export interface WindowOptions<I, A, O> {
  readonly name: string;
  readonly store: StateStore;
  readonly key: (item: I) => string;
  /** Numbers the keys with a dense key index of the store; see `KeyedProcessSpec.dense`. */
  readonly dense?: DenseKey<I>;
  readonly eventTime: (item: I) => number;
  readonly windows: WindowFn;
  /** How long after the watermark passes a window's end its state is kept for late data. */
  readonly allowedLatenessMs: number;
  readonly aggregator: Aggregator<I, A>;
  readonly result: (pane: WindowPane<A>) => O;
  /** Where data later than the allowed lateness goes; defaults to {@link LATE}. */
  readonly lateTag?: OutputTag<I>;
}

/** Default side output for elements whose every window is past its allowed lateness. */
export const LATE: OutputTag<unknown> = outputTag<unknown>('late');

interface OpenWindow<A> {
  start: number;
  end: number;
  acc: A;
  fired: boolean;
}

type WindowState<A> = OpenWindow<A>[];

/**
 * Keyed event-time windows. A window `[start, end)` fires when the watermark reaches `end`; its state is
 * kept until `end + allowedLateness`, and elements arriving in between re-fire it as a late pane.
 */
export function windowAggregate<I, A, O>(options: WindowOptions<I, A, O>): Transform<I, O> {
  const { windows: fn, allowedLatenessMs: lateness, aggregator } = options;
  const lateTag = (options.lateTag ?? LATE) as OutputTag<I>;

  const fire = (ctx: KeyedContext<O, WindowState<A>>, w: OpenWindow<A>, late: boolean): void => {
    ctx.emit(options.result({ key: ctx.key, start: w.start, end: w.end, acc: w.acc, late }));
    w.fired = true;
  };

  const schedule = (ctx: KeyedContext<O, WindowState<A>>, w: OpenWindow<A>): void => {
    if (!w.fired) ctx.setTimer(timerName('end:', w.start), w.end);
    if (lateness > 0) ctx.setTimer(timerName('gc:', w.start), w.end + lateness);
  };

  /** Adds `item` to window `[start, end)` unless that window is already garbage-collected. */
  const admit = (
    ctx: KeyedContext<O, WindowState<A>>,
    state: WindowState<A>,
    start: number,
    end: number,
    item: I,
  ): boolean => {
    // Beam's rule: an element is dropped only when its window has already been garbage-collected.
    if (end + lateness <= ctx.watermark) return false;
    let w: OpenWindow<A> | undefined;
    let created = false;
    if (fn.kind === 'session') {
      w = mergeSessions(ctx, state, start, end, aggregator);
      created = true;
    } else {
      for (let i = 0; i < state.length; i++) {
        if (state[i]!.start === start) {
          w = state[i];
          break;
        }
      }
      if (w === undefined) {
        w = { start, end, acc: aggregator.init(), fired: false };
        state.push(w);
        created = true;
      }
    }
    w.acc = aggregator.add(w.acc, item);
    if (w.end <= ctx.watermark) fire(ctx, w, true);
    // A window's timers are set when it is created and never move (only a session merge makes a new
    // window): setting them again for every element would cost two timer-name strings an element.
    else if (created) schedule(ctx, w);
    return true;
  };

  return keyedProcess<I, O, WindowState<A>>(options.store, {
    name: options.name,
    key: options.key,
    ...(options.dense === undefined ? {} : { dense: options.dense }),
    onElement: (ctx, item) => {
      const t = options.eventTime(item);
      let state = ctx.state;
      if (state === undefined) {
        state = [];
        ctx.state = state;
      }
      if (fn.kind === 'fixed') {
        // The common case without the per-element arrays `assign` builds.
        const start = Math.floor((t - fn.offsetMs) / fn.sizeMs) * fn.sizeMs + fn.offsetMs;
        if (!admit(ctx, state, start, start + fn.sizeMs, item)) ctx.tag(lateTag, item);
        return;
      }
      let admitted = false;
      for (const [start, end] of assign(fn, t)) {
        if (admit(ctx, state, start, end, item)) admitted = true;
      }
      if (!admitted) ctx.tag(lateTag, item);
    },
    onTimer: (ctx, timer) => {
      const state = ctx.state;
      if (state === undefined) return;
      const start = Number(timer.name.slice(timer.name.indexOf(':') + 1));
      const i = state.findIndex((x) => x.start === start);
      if (i < 0) return;
      const w = state[i]!;
      if (timer.name.startsWith('end:')) {
        fire(ctx, w, false);
        if (lateness === 0) state.splice(i, 1);
      } else {
        state.splice(i, 1);
      }
      if (state.length === 0) ctx.state = undefined;
    },
  });
}

/**
 * The timer names of recent window starts, one string each: the timers of every key's window of an hour
 * then share one name object, and the timer heap, which orders equal times by name, compares pointers
 * instead of characters.
 */
const timerNames = new Map<string, Map<number, string>>();
const MAX_CACHED_NAMES = 4096;

function timerName(prefix: 'end:' | 'gc:', start: number): string {
  let names = timerNames.get(prefix);
  if (names === undefined) {
    names = new Map();
    timerNames.set(prefix, names);
  }
  let name = names.get(start);
  if (name === undefined) {
    if (names.size >= MAX_CACHED_NAMES) names.clear();
    name = `${prefix}${start}`;
    names.set(start, name);
  }
  return name;
}

function assign(fn: WindowFn, t: number): [number, number][] {
  switch (fn.kind) {
    case 'fixed': {
      const start = Math.floor((t - fn.offsetMs) / fn.sizeMs) * fn.sizeMs + fn.offsetMs;
      return [[start, start + fn.sizeMs]];
    }
    case 'sliding': {
      const result: [number, number][] = [];
      const last = Math.floor(t / fn.periodMs) * fn.periodMs;
      for (let start = last; start > t - fn.sizeMs; start -= fn.periodMs)
        result.push([start, start + fn.sizeMs]);
      return result.reverse();
    }
    case 'session':
      return [[t, t + fn.gapMs]];
  }
}

/** Merges the proto-session `[start, end)` with every session it overlaps and moves their timers. */
function mergeSessions<O, A>(
  ctx: KeyedContext<O, WindowState<A>>,
  state: WindowState<A>,
  start: number,
  end: number,
  aggregator: Aggregator<unknown, A>,
): OpenWindow<A> {
  let merged: OpenWindow<A> = { start, end, acc: aggregator.init(), fired: false };
  for (let i = state.length - 1; i >= 0; i--) {
    const w = state[i]!;
    if (w.start < merged.end && merged.start < w.end) {
      ctx.clearTimer(`end:${w.start}`);
      ctx.clearTimer(`gc:${w.start}`);
      merged = {
        start: Math.min(merged.start, w.start),
        end: Math.max(merged.end, w.end),
        acc: aggregator.merge(merged.acc, w.acc),
        // A merged session is a new window: it fires again when the watermark passes its new end.
        fired: false,
      };
      state.splice(i, 1);
    }
  }
  state.push(merged);
  return merged;
}
