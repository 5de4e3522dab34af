import { parDo, type Transform } from '../core/index.js';
import type { PeakClass, Reading, Season } from '../schemas/reading.js';
import type { RuleProfile } from './rule-profile.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Seasons by quarter of the year counted from March, the order the calendar arithmetic below yields. */
const SEASONS: readonly Season[] = ['spring', 'summer', 'fall', 'winter'];

/**
 * Tags each reading with its tariff period and season (B5.1, B5.2) in the utility's local time, a fixed
 * offset from UTC. Peak is [peakFromHour, peakToHour) on weekdays; off-peak [offPeakFromHour,
 * offPeakToHour) every day, wrapping midnight when from > to; peak wins where a profile makes them overlap;
 * everything else is standard. The reading's `ts` is its interval start, so an interval starting 20:45 is
 * peak. Integer arithmetic on epoch ms: no Date per reading.
 */
export function classifyPeak(
  thresholds: Pick<
    RuleProfile['peaks'],
    'peakFromHour' | 'peakToHour' | 'offPeakFromHour' | 'offPeakToHour' | 'timeZoneOffsetMinutes'
  >,
): Transform<Reading, Reading> {
  const { peakFromHour, peakToHour, offPeakFromHour, offPeakToHour } = thresholds;
  const offsetMs = thresholds.timeZoneOffsetMinutes * 60_000;
  const offPeakWraps = offPeakFromHour > offPeakToHour;
  return parDo<Reading, Reading>((r, out) => {
    const local = r.ts + offsetMs;
    const day = Math.floor(local / DAY);
    const hour = Math.floor((local - day * DAY) / HOUR);
    r.peakClass = periodOf(day, hour);
    r.season = seasonOfDay(day);
    out.emit(r);
  });

  function periodOf(day: number, hour: number): PeakClass {
    // 1970-01-01 was a Thursday: day + 4 counts from a Sunday (0).
    const weekday = (((day + 4) % 7) + 7) % 7;
    if (weekday !== 0 && weekday !== 6 && hour >= peakFromHour && hour < peakToHour) return 'peak';
    const offPeak = offPeakWraps
      ? hour >= offPeakFromHour || hour < offPeakToHour
      : hour >= offPeakFromHour && hour < offPeakToHour;
    return offPeak ? 'off_peak' : 'standard';
  }
}

/**
 * Season of a day number (days since 1970-01-01), by H. Hinnant's civil-from-days algorithm: it counts
 * months from March, so quarters of that count are exactly spring, summer, fall and winter.
 */
function seasonOfDay(day: number): Season {
  const z = day + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra -
      Math.floor(dayOfEra / 1460) +
      Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) /
      365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  return SEASONS[Math.floor(monthFromMarch / 3)]!;
}
