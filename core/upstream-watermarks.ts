/**
 * The watermark after a repartition: elements from several upstream workers, each of which reports the
 * watermark of the partitions it owns, released downstream only once every upstream partition's
 * watermark has passed them (Beam's watermark hold across a shuffle).
 */
import { Observable } from 'rxjs';
import { type FlowEvent, type Transform, watermarkEvent } from './flow.js';
import { subscribeGuarded } from './guarded.js';
import type { StateStore } from './state-store.js';

/** What arrives from upstream: an element, or an upstream worker's watermark over its partitions. */
export type UpstreamRecord<T> =
  | { readonly kind: 'element'; readonly item: T }
  | { readonly kind: 'watermark'; readonly partitions: readonly number[]; readonly time: number };

export interface UpstreamWatermarkOptions<T> {
  /** Namespace of the state in the store: the stage name. */
  readonly name: string;
  /** Every upstream partition: nothing is released before each of them reported a watermark. */
  readonly partitions: readonly number[];
  /**
   * The time the element is complete at: an upstream worker emits it before its watermark passes this
   * time (for an hourly window, the window's end).
   */
  readonly completeAt: (item: T) => number;
  /** Identity of an element: an upstream worker replaying after a crash sends the same one again. */
  readonly identity: (item: T) => string;
}

/**
 * Holds elements until the minimum of the upstream partitions' watermarks reaches their `completeAt`, then
 * emits them in `completeAt` order (ties by identity, so the order does not depend on arrival) followed by
 * that minimum as the watermark. An element arriving again while held replaces itself; one arriving after
 * its time was released is a replayed duplicate and is dropped (an upstream worker publishes its
 * elements before the watermark that passes them). A partition's watermark only moves forward: a worker
 * restarted from an older checkpoint reports an older one again. Ticks are consumed; tagged events pass.
 */
export function holdForUpstreamWatermarks<T>(
  store: StateStore,
  options: UpstreamWatermarkOptions<T>,
): Transform<UpstreamRecord<T>, T> {
  const held = store.value<Record<string, T>>(`${options.name}/held`, {});
  const marks = store.value<Record<string, number>>(`${options.name}/partitions`, {});
  // null until the first release: -Infinity does not survive the checkpoint's JSON.
  const released = store.value<number | null>(`${options.name}/released`, null);
  const required = [...new Set(options.partitions)].map(String);

  const combined = (): number | undefined => {
    const m = marks.get();
    let min = Number.POSITIVE_INFINITY;
    for (const p of required) {
      const t = m[p];
      if (t === undefined) return undefined;
      if (t < min) min = t;
    }
    return min;
  };

  return (source) =>
    new Observable<FlowEvent<T>>((subscriber) =>
      subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'tagged') {
            subscriber.next(event);
            return;
          }
          if (event.kind !== 'data') return;
          const h = held.get();
          const m = marks.get();
          const before = released.get();
          for (const record of event.items) {
            if (record.kind === 'element') {
              if (before !== null && options.completeAt(record.item) <= before) continue;
              h[options.identity(record.item)] = record.item;
            } else {
              const time = Number.isFinite(record.time) ? record.time : Number.MAX_SAFE_INTEGER;
              for (const p of record.partitions) {
                const key = String(p);
                if (m[key] === undefined || time > m[key]!) m[key] = time;
              }
            }
          }
          held.set(h);
          marks.set(m);
          const now = combined();
          if (now === undefined || (before !== null && now <= before)) return;
          const out: { key: string; at: number; item: T }[] = [];
          for (const [key, item] of Object.entries(h)) {
            const at = options.completeAt(item);
            if (at <= now) out.push({ key, at, item });
          }
          out.sort((a, b) => a.at - b.at || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
          for (const o of out) delete h[o.key];
          released.set(now);
          if (out.length > 0) subscriber.next({ kind: 'data', items: out.map((o) => o.item) });
          subscriber.next(watermarkEvent(now));
        },
      }),
    );
}
