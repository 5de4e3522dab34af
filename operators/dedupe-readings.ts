import { keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { byMeter } from './meter-key.js';
import { QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/**
 * Per meter: the event times seen within the horizon, ascending, and the kW each first arrived with
 * (null for a NULL reading). Parallel number arrays, so a checkpoint holds two small JSON arrays a meter.
 * Times are kept as offsets from a base time, re-based on the oldest kept time whenever old times are
 * dropped (the arrays are shifted then anyway): within a 3-hour horizon an offset is ~7 digits of JSON
 * where an epoch time is 13.
 */
interface SeenReadings {
  /** Base time of the offsets. */
  b: number;
  /** Event times as `ts − b`; the last is the meter's newest event time. */
  t: number[];
  /** kW, one per time. */
  k: (number | null)[];
}

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
  return keyedProcess<R, R, SeenReadings>(store, {
    name,
    key: (r) => r.meterId,
    dense: byMeter,
    onElement: (ctx, r) => {
      const ts = r.ts;
      const seen = ctx.state;
      if (seen === undefined) {
        ctx.state = { b: ts, t: [0], k: [r.kw] };
        ctx.emit(r);
        return;
      }
      const times = seen.t;
      // Offsets and bases are integer milliseconds: the sums and differences below are exact.
      const maxTs = seen.b + times[times.length - 1]!;
      if (ts > maxTs) evictBefore(seen, ts - horizonMs, ts);
      else if (ts < maxTs - horizonMs) {
        ctx.emit(r);
        return;
      }
      const offset = ts - seen.b;
      const at = lowerBound(times, offset);
      if (at < times.length && times[at] === offset) {
        const first = seen.k[at];
        ctx.tag(QUARANTINE, {
          meterId: r.meterId,
          ts,
          raw: reconstructedRaw(r),
          reasons: [first === r.kw ? 'duplicate' : 'conflicting_duplicate'],
          source: r.source,
          quarantinedAt: r.processedAt,
        });
        return;
      }
      if (at === times.length) {
        times.push(offset);
        seen.k.push(r.kw);
      } else {
        times.splice(at, 0, offset);
        seen.k.splice(at, 0, r.kw);
      }
      ctx.emit(r);
    },
  });
}

/** First index whose time is ≥ `t` (the arrays are short and sorted). */
function lowerBound(times: readonly number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Drops the times before `cutoff` and re-bases the rest on the oldest kept one (on `newest`, the time
 * about to be added, when none is kept).
 */
function evictBefore(seen: SeenReadings, cutoff: number, newest: number): void {
  const times = seen.t;
  const base = seen.b;
  if (times[0]! >= cutoff - base) return;
  const drop = lowerBound(times, cutoff - base);
  const length = times.length - drop;
  const shift = drop < times.length ? times[drop]! : newest - base;
  for (let i = 0; i < length; i++) times[i] = times[i + drop]! - shift;
  times.length = length;
  dropFirst(seen.k, drop);
  seen.b = base + shift;
}

/** `a.splice(0, n)` without the array of removed items it would allocate, once a reading. */
function dropFirst<T>(a: T[], n: number): void {
  const length = a.length - n;
  for (let i = 0; i < length; i++) a[i] = a[i + n]!;
  a.length = length;
}
