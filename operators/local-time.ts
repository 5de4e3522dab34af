/**
 * Wall-clock time in an IANA time zone (`Europe/Berlin`), daylight saving included, through `Intl`: the
 * local calendar date and hour of an instant. A formatter per zone and a bounded cache per hour keep the
 * per-row cost to a map lookup.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();
const cache = new Map<string, LocalHour>();
const CACHE_LIMIT = 100_000;
const HOUR = 3_600_000;

export interface LocalHour {
  /** `YYYY-MM-DD` in the zone. */
  readonly date: string;
  /** 0–23 in the zone. */
  readonly hour: number;
}

/** Throws a RangeError for a zone `Intl` does not know. */
export function checkTimeZone(timeZone: string): void {
  formatterOf(timeZone);
}

function formatterOf(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The local date and hour of the instant `ms` (the hour's start for zones with whole-hour offsets). */
export function localHourOf(ms: number, timeZone: string): LocalHour {
  const hourStart = Math.floor(ms / HOUR) * HOUR;
  const key = `${timeZone}\u0000${hourStart}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const parts: Record<string, string> = {};
  for (const p of formatterOf(timeZone).formatToParts(hourStart)) parts[p.type] = p.value;
  const local = { date: `${parts.year}-${parts.month}-${parts.day}`, hour: Number(parts.hour) };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, local);
  return local;
}
