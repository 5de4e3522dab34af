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

export type FlowEvent<T> = DataEvent<T> | WatermarkEvent | TaggedEvent;
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

export function taggedEvent<T>(tag: OutputTag<T>, items: readonly T[]): TaggedEvent {
  return { kind: 'tagged', tag: tag.name, items };
}

/** Collects a stage's output for one input event, so one input batch yields at most one batch per output. */
export class OutputBuffer<O> {
  private main: O[] = [];
  private tagged = new Map<string, unknown[]>();

  emit(item: O): void {
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
    if (this.main.length > 0) {
      const items = this.main;
      this.main = [];
      next({ kind: 'data', items });
    }
  }
}
