/** Stateless per-element and per-batch transforms (Beam's ParDo), with tagged side outputs. */
import { Observable } from 'rxjs';
import { type FlowEvent, OutputBuffer, type OutputTag, type Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';

export interface Emitter<O> {
  emit(item: O): void;
  tag<T>(tag: OutputTag<T>, item: T): void;
}

/**
 * Beam's stateless ParDo: a function per element that may emit any number of outputs and route records to
 * tagged outputs instead of throwing. Watermarks and tagged events pass through unchanged.
 */
export function parDo<I, O>(fn: (item: I, out: Emitter<O>) => void): Transform<I, O> {
  return (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      const out = new OutputBuffer<O>();
      const next = (e: FlowEvent<O>): void => subscriber.next(e);
      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            const items = event.items;
            out.startBatch(items);
            for (let i = 0; i < items.length; i++) fn(items[i]!, out);
            out.drainTo(next);
          } else subscriber.next(event);
        },
      });
    });
}

/** Whole-batch transform, for columnar work where a batch is processed at once. */
export function mapBatch<I, O>(fn: (items: readonly I[], out: Emitter<O>) => void): Transform<I, O> {
  return (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      const out = new OutputBuffer<O>();
      const next = (e: FlowEvent<O>): void => subscriber.next(e);
      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            out.startBatch(event.items);
            fn(event.items, out);
            out.drainTo(next);
          } else subscriber.next(event);
        },
      });
    });
}
