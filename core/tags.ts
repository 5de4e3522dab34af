import { filter, map, type Observable } from 'rxjs';
import { dataEvent, type FlowEvent, type OutputTag, type Transform } from './flow.js';

/** The main output's batches. */
export function mainOutput<T>(flow: Observable<FlowEvent<T>>): Observable<readonly T[]> {
  return flow.pipe(
    filter((e): e is { kind: 'data'; items: readonly T[] } => e.kind === 'data'),
    map((e) => e.items),
  );
}

/** Batches routed to `tag` anywhere upstream. */
export function taggedOutput<T>(
  flow: Observable<FlowEvent<unknown>>,
  tag: OutputTag<T>,
): Observable<readonly T[]> {
  return flow.pipe(
    filter((e) => e.kind === 'tagged' && e.tag === tag.name),
    map((e) => (e as { items: readonly T[] }).items),
  );
}

/** Drops tagged events: for a branch fed from a trunk whose side outputs are already collected. */
export function untagged<T>(): Transform<T, T> {
  return (source) => source.pipe(filter((e) => e.kind !== 'tagged'));
}

/**
 * Turns the records of a tagged output back into main-input elements at this point of the graph, in
 * stream order; for records that must leave the stored output but still be seen by a later rule.
 */
export function rejoinTag<T>(tag: OutputTag<T>, toMain: (item: T) => T): Transform<T, T> {
  return (source) =>
    source.pipe(
      map(
        (e): FlowEvent<T> =>
          e.kind === 'tagged' && e.tag === tag.name ? dataEvent((e.items as T[]).map(toMain)) : e,
      ),
    );
}
