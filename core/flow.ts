/** The events that flow through a graph (data, watermark, tick, tagged) and the transform type built on them. */
import type { Observable, OperatorFunction } from 'rxjs';

/**
 * What travels between stages. Elements move in batches because one RxJS emission per reading costs
 * ~100 ns per operator and cannot reach hundreds of thousands of readings a second; a batch may be an
 * array of records or, for columnar stages, an array holding Arrow record batches.
 */
export interface DataEvent<T> {
  readonly kind: 'data';
  readonly items: readonly T[];
}

/**
 * A watermark `time` asserts that no more elements with an event time below `time` are expected.
 * Elements that still arrive below it are late.
 */
export interface WatermarkEvent {
  readonly kind: 'watermark';
  readonly time: number;
}

/**
 * Records routed to a side output (quarantine, dead letter, late …). They ride the same stream so order
 * and checkpoint consistency hold, and every later stage passes them through untouched.
 */
export interface TaggedEvent {
  readonly kind: 'tagged';
  readonly tag: string;
  readonly items: readonly unknown[];
}

/**
 * Processing time passing with no data: the runner injects one between batches when its source is idle,
 * so the watermark stage can declare quiet partitions idle. The runner is the graph's only driver: no
 * stage keeps a timer of its own, so every state change happens inside a step the runner takes, and its
 * outputs fall in the same epoch as the change. Stages before the watermark stage pass it on; the
 * watermark stage consumes it.
 */
export interface TickEvent {
  readonly kind: 'tick';
  /** Processing time of the tick, epoch ms. */
  readonly now: number;
  /**
   * The input has ended: the watermark stage moves the watermark one bounded step toward its final value
   * (instead of in one jump that fires every pending timer at once) and sets `more` while it is not there.
   * The runner sends such ticks, writing the buffered outputs between them, until `more` stays false, and
   * only then completes the input: memory follows the write size, not the backlog of timers.
   */
  readonly drain?: DrainStep;
  /**
   * Set on a draining tick the watermark stage passes on once it is at its final watermark (this value):
   * a later stage that holds its outputs beyond the watermark until the end of input (an hour's fault
   * hold) moves its own end on by one bounded step per such tick, setting `drain.more`, likewise.
   */
  readonly finalWatermark?: number;
}

/** The reply of the watermark stage to a draining tick (set synchronously, while the tick is handled). */
export interface DrainStep {
  more: boolean;
}

export type FlowEvent<T> = DataEvent<T> | WatermarkEvent | TaggedEvent | TickEvent;
export type Flow<T> = Observable<FlowEvent<T>>;
export type Transform<I, O> = OperatorFunction<FlowEvent<I>, FlowEvent<O>>;

/** A named side output; the type parameter records what its records are. */
export interface OutputTag<T> {
  readonly name: string;
  /** Phantom field: never set, only carries `T` for the type checker. */
  readonly __type?: T;
}

export function outputTag<T>(name: string): OutputTag<T> {
  return { name };
}

export function dataEvent<T>(items: readonly T[]): DataEvent<T> {
  return { kind: 'data', items };
}

export function watermarkEvent(time: number): WatermarkEvent {
  return { kind: 'watermark', time };
}

export function tickEvent(now: number, drain?: DrainStep): TickEvent {
  return drain === undefined ? { kind: 'tick', now } : { kind: 'tick', now, drain };
}

export function taggedEvent<T>(tag: OutputTag<T>, items: readonly T[]): TaggedEvent {
  return { kind: 'tagged', tag: tag.name, items };
}

/** Collects a stage's output for one input event, so one input batch yields at most one batch per output. */
export class OutputBuffer<O> {
  private main: O[] = [];
  private tagged = new Map<string, unknown[]>();
  /**
   * The input batch, while the output so far repeats it item for item. Most stages pass every reading
   * on (flagging it in place): their output batch is then the input array itself, not a copy built
   * push by push — a 200,000-reading batch would otherwise cost every stage a new array.
   */
  private echo: readonly unknown[] | undefined;
  private echoed = 0;

  /** Declares the input batch a stage is about to process; call with an empty buffer. */
  startBatch(items: readonly unknown[]): void {
    this.echo = items;
    this.echoed = 0;
  }

  emit(item: O): void {
    const echo = this.echo;
    if (echo !== undefined) {
      if (this.echoed < echo.length && echo[this.echoed] === item) {
        this.echoed++;
        return;
      }
      this.stopEcho(echo);
    }
    this.main.push(item);
  }

  tag<T>(tag: OutputTag<T>, item: T): void {
    let list = this.tagged.get(tag.name);
    if (list === undefined) {
      list = [];
      this.tagged.set(tag.name, list);
    }
    list.push(item);
  }

  /** Hands the buffered output downstream: tagged first, so a side record never trails its watermark. */
  drainTo(next: (event: FlowEvent<O>) => void): void {
    if (this.tagged.size > 0) {
      for (const [tag, items] of this.tagged) next({ kind: 'tagged', tag, items });
      this.tagged = new Map();
    }
    const echo = this.echo;
    if (echo !== undefined) {
      if (this.echoed === echo.length) {
        this.echo = undefined;
        if (echo.length > 0) next({ kind: 'data', items: echo as readonly O[] });
        return;
      }
      this.stopEcho(echo);
    }
    if (this.main.length > 0) {
      const items = this.main;
      this.main = [];
      next({ kind: 'data', items });
    }
  }

  /** The output departs from the input: it becomes the prefix repeated so far, collected as usual. */
  private stopEcho(echo: readonly unknown[]): void {
    this.main = echo.slice(0, this.echoed) as O[];
    this.echo = undefined;
    this.echoed = 0;
  }
}
