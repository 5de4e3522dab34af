import { keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/**
 * Per meter: the event times seen within the horizon, ascending, and the kW each first arrived with
 * (null for a NULL reading). Parallel number arrays, so a checkpoint holds two small JSON arrays a meter.
 */
interface SeenReadings {
  maxTs: number;
  ts: number[];
  kw: (number | null)[];
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
    onElement: (ctx, r) => {
      const ts = r.ts;
      const seen = ctx.state;
      if (seen === undefined) {
        ctx.state = { maxTs: ts, ts: [ts], kw: [r.kw] };
        ctx.emit(r);
        return;
      }
      if (ts > seen.maxTs) {
        seen.maxTs = ts;
        evictBefore(seen, ts - horizonMs);
      } else if (ts < seen.maxTs - horizonMs) {
        ctx.emit(r);
        return;
      }
      const times = seen.ts;
      const at = lowerBound(times, ts);
      if (at < times.length && times[at] === ts) {
        const first = seen.kw[at];
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
        times.push(ts);
        seen.kw.push(r.kw);
      } else {
        times.splice(at, 0, ts);
        seen.kw.splice(at, 0, r.kw);
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

function evictBefore(seen: SeenReadings, cutoff: number): void {
  const times = seen.ts;
  if (times.length === 0 || times[0]! >= cutoff) return;
  const keep = lowerBound(times, cutoff);
  dropFirst(times, keep);
  dropFirst(seen.kw, keep);
}

/** `a.splice(0, n)` without the array of removed items it would allocate, once a reading. */
function dropFirst<T>(a: T[], n: number): void {
  const length = a.length - n;
  for (let i = 0; i < length; i++) a[i] = a[i + n]!;
  a.length = length;
}
