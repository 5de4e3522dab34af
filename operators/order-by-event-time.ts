import {
  type Emitter,
  keyedProcess,
  type OutputBuffer,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/** Width of a pending bucket. Readings of a bucket are sorted by `ts` when it is released. */
const BUCKET_MS = 60_000;

/** Per meter: the event time of its last released reading (an object, updated in place). */
interface MeterOrder {
  last: number;
}

/** Readings waiting for the watermark, grouped by the minute of their event time. */
interface PendingBucket<R extends Reading> {
  start: number;
  readings: R[];
}

/**
 * Holds readings back until the watermark passes their event time (`ts < watermark`) and releases them
 * sorted by `ts`, so every per-meter rule downstream sees each meter in event-time order. Keyed by meter:
 * the per-meter state is one number, the `ts` of the meter's last released reading.
 *
 * - A reading at or before its meter's last released `ts` can no longer be put in order: it goes to
 *   QUARANTINE with reason `late` (and `duplicate_timestamp` when it repeats that exact time, which
 *   `dedupeReadings` lets through beyond its horizon). Two pending readings of one meter with the same `ts`
 *   are resolved the same way: the first to arrive is kept, since every rule downstream needs strictly
 *   increasing times per meter.
 * - A reading behind the watermark but after its meter's last released one is still in order for its
 *   meter (nothing pending can be older than the watermark), so it passes straight through. Only the
 *   event-time windows downstream may count it as late.
 *
 * Pending readings are kept in minute buckets ordered by time and released in the watermark step, rather
 * than one event-time timer per meter: a timer costs a heap entry and string keys per reading (measured
 * ~1.1 µs a reading against ~0.23 µs for the buckets, 1 M readings of 10 k meters delivered gateway by
 * gateway), while appending to the newest bucket is a comparison and a push.
 */
export function orderByEventTime<R extends Reading>(
  store: StateStore,
  name = 'orderByEventTime',
): Transform<R, R> {
  const lastReleased = store.keyed<MeterOrder>(name);
  const initial: PendingBucket<R>[] = [];
  const pendingValue = store.value<PendingBucket<R>[]>(`${name}/pending`, initial);
  // A restore from a snapshot taken before this stage existed hands back the shared initial array.
  const pending = (): PendingBucket<R>[] => {
    let buckets = pendingValue.get();
    if (buckets === initial) {
      buckets = [];
      pendingValue.set(buckets);
    }
    return buckets;
  };

  const quarantine = (out: Pick<Emitter<R>, 'tag'>, r: R, reasons: string[]): void => {
    out.tag(QUARANTINE, {
      meterId: r.meterId,
      ts: r.ts,
      raw: reconstructedRaw(r),
      reasons,
      source: r.source,
      quarantinedAt: r.processedAt,
    });
  };

  const release = (watermark: number, out: OutputBuffer<R>): void => {
    const buckets = pending();
    if (buckets.length === 0 || buckets[0]!.start >= watermark) return;
    let due: R[] = [];
    let whole = 0;
    while (whole < buckets.length && buckets[whole]!.start + BUCKET_MS <= watermark) {
      const readings = buckets[whole]!.readings;
      due = due.length === 0 ? readings : due.concat(readings);
      whole++;
    }
    if (whole > 0) buckets.splice(0, whole);
    const straddling = buckets[0];
    if (straddling !== undefined && straddling.start < watermark) {
      const keep: R[] = [];
      for (const r of straddling.readings) (r.ts < watermark ? due : keep).push(r);
      straddling.readings = keep;
    }
    // Buckets come out in time order, so only readings within a bucket can be out of order: the stable
    // sort runs in near-linear time and keeps arrival order among equal times.
    due.sort(byTs);
    for (let i = 0; i < due.length; i++) {
      const r = due[i]!;
      const order = lastReleased.get(r.meterId);
      if (order === undefined) lastReleased.set(r.meterId, { last: r.ts });
      else if (r.ts <= order.last) {
        quarantine(out, r, ['late', 'duplicate_timestamp']);
        continue;
      } else order.last = r.ts;
      out.emit(r);
    }
  };

  return keyedProcess<R, R, MeterOrder>(store, {
    name,
    key: (r) => r.meterId,
    onElement: (ctx, r) => {
      const order = ctx.state;
      if (order !== undefined && r.ts <= order.last) {
        quarantine(ctx, r, r.ts === order.last ? ['late', 'duplicate_timestamp'] : ['late']);
        return;
      }
      if (r.ts < ctx.watermark) {
        if (order === undefined) ctx.state = { last: r.ts };
        else order.last = r.ts;
        ctx.emit(r);
        return;
      }
      const buckets = pending();
      const start = Math.floor(r.ts / BUCKET_MS) * BUCKET_MS;
      let i = buckets.length - 1;
      while (i >= 0 && buckets[i]!.start > start) i--;
      if (i >= 0 && buckets[i]!.start === start) buckets[i]!.readings.push(r);
      else buckets.splice(i + 1, 0, { start, readings: [r] });
    },
    onWatermark: release,
  });
}

function byTs(a: Reading, b: Reading): number {
  return a.ts - b.ts;
}
