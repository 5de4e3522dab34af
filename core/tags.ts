/** Reading a graph's main and tagged outputs apart. */
import { filter, map, type Observable } from 'rxjs';
import type { FlowEvent, OutputTag, Transform } from './flow.js';

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
