import { keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { byMeter, METER_KEYS } from './meter-key.js';
import { QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/**
 * Step 5: one reading per meter and timestamp (the "duplicates collapse to one record" rule, keyed by
 * meter). The first reading of a (meter, ts) wins; a later one within `horizonMs` of the meter's newest
 * event time is quarantined — as `duplicate` when it carries the same kW (or is NULL again), as
 * `conflicting_duplicate` when the value differs. So every reading still lands exactly once.
 *
 * Same-ness is judged on the standardized kW rather than on the record id: the id hashes the value text
 * without its unit, so `1 W` and `1 kW` share an id though they disagree, while `1000 W` and `1 kW` differ
 * in id though they agree.
 *
 * A reading older than the horizon is passed through unchecked: the state is bounded by the horizon, and
 * a re-delivery that late is caught by the storage's record-id idempotency instead. Choose the horizon
 * at least as long as the longest re-delivery delay you want collapsed in-stream.
 */
export function dedupeReadings<R extends Reading>(
  store: StateStore,
  thresholds: { horizonMs: number },
  name = 'dedupeReadings',
): Transform<R, R> {
  const horizonMs = thresholds.horizonMs;
  // By meter number: the event times seen within the horizon, ascending, each with the kW it first arrived
  // with, as `[ts, kw, ts, kw, …]` (a NULL reading's kW as NaN: parsing quarantines a NaN value, so no
  // reading reaches this stage with one). Typed lists: unboxed, and copied, not printed, at a checkpoint.
  const seen = store.vectors(`${name}/seen`, METER_KEYS);
  return keyedProcess<R, R, never>(store, {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const n = ctx.keyNumber;
      const ts = r.ts;
      const kw = r.kw === null ? Number.NaN : r.kw;
      let length = seen.length(n);
      if (length === 0) {
        seen.push2(n, ts, kw);
        ctx.emit(r);
        return;
      }
      let times = seen.array(n);
      const maxTs = times[length - 2]!;
      if (ts > maxTs) {
        const cutoff = ts - horizonMs;
        if (times[0]! < cutoff) {
          seen.dropFirst(n, lowerBound(times, length, cutoff));
          length = seen.length(n);
          times = seen.array(n);
        }
      } else if (ts < maxTs - horizonMs) {
        ctx.emit(r);
        return;
      }
      const at = lowerBound(times, length, ts);
      if (at < length && times[at] === ts) {
        const first = times[at + 1]!;
        const same = r.kw === null ? Number.isNaN(first) : first === r.kw;
        ctx.tag(QUARANTINE, {
          meterId: r.meterId,
          ts,
          raw: reconstructedRaw(r),
          reasons: [same ? 'duplicate' : 'conflicting_duplicate'],
          source: r.source,
          quarantinedAt: r.processedAt,
        });
        return;
      }
      if (at === length) seen.push2(n, ts, kw);
      else {
        seen.extend(n, 2);
        const list = seen.array(n);
        list.copyWithin(at + 2, at, length);
        list[at] = ts;
        list[at + 1] = kw;
      }
      ctx.emit(r);
    },
  });
}

/** First even index of `[ts, kw, …]` (its first `length` numbers) whose time is ≥ `t`: the lists are short and sorted. */
function lowerBound(list: Float64Array, length: number, t: number): number {
  let lo = 0;
  let hi = length >> 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[2 * mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return 2 * lo;
}
