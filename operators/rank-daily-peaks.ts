import { keyedProcess, LATE, type StateStore, type Transform } from '../core/index.js';
import type { DailyPeak, HourlyConsumption } from '../schemas/reading.js';
import type { RuleProfile } from './rule-profile.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const END_OF_DAY = 'end-of-day';

/** One open day: the summed hourly means per hour of the day, and a bit per hour that received data. */
interface DayTotals {
  totals: number[];
  present: number;
}

/** The ranking's day of an hour: the local midnight (epoch ms) of the day `hour` falls in. */
export function peakDayOf(timeZoneOffsetMinutes: number): (hour: number) => number {
  const offsetMs = timeZoneOffsetMinutes * 60_000;
  return (hour) => Math.floor((hour + offsetMs) / DAY) * DAY - offsetMs;
}

/**
 * The top consumption hours of each day across all meters (first seed, "Peak Period Identification"):
 * per hour, the sum over meters of their hourly mean kW; when the watermark passes the end of the day,
 * the `topHoursPerDay` largest hours with rank 1..N, ties going to the earlier hour, hours without any data
 * left out. Keyed by day so it can run on another worker after a repartition of the hourly aggregates;
 * the state is 24 numbers and a bit mask per open day.
 *
 * Days are the utility's local days (`timeZoneOffsetMinutes`); `day` is the local midnight as epoch ms,
 * which is the UTC day start with the default offset 0. Totals are rounded to 4 decimals, so the ranking
 * does not depend on the order the meters' hours arrived in.
 *
 * Each hourly row counts once: feed it hourly aggregates without late panes (aggregateHourly with
 * `allowedLatenessMs: 0`), since a re-fired hour would be added again. A row for a day already ranked goes
 * to the core's `late` output.
 */
export function rankDailyPeaks(
  store: StateStore,
  thresholds: Pick<RuleProfile['peaks'], 'topHoursPerDay' | 'timeZoneOffsetMinutes'>,
  name = 'rankDailyPeaks',
): Transform<HourlyConsumption, DailyPeak> {
  const top = thresholds.topHoursPerDay;
  const dayOf = peakDayOf(thresholds.timeZoneOffsetMinutes);
  const dayKey = dayKeys(dayOf);
  // The first whole UTC hour of a local day: with a half-hour offset the day starts mid-hour.
  const firstHourOf = (day: number): number => Math.ceil(day / HOUR) * HOUR;

  return keyedProcess<HourlyConsumption, DailyPeak, DayTotals>(store, {
    name,
    key: (h) => dayKey(h.hour),
    onElement: (ctx, h) => {
      const day = dayOf(h.hour);
      if (day + DAY <= ctx.watermark) {
        ctx.tag(LATE, h);
        return;
      }
      let s = ctx.state;
      if (s === undefined) {
        s = { totals: new Array<number>(24).fill(0), present: 0 };
        ctx.state = s;
        ctx.setTimer(END_OF_DAY, day + DAY);
      }
      const index = (h.hour - firstHourOf(day)) / HOUR;
      s.totals[index] = s.totals[index]! + h.avgKw;
      s.present |= 1 << index;
    },
    onTimer: (ctx) => {
      const s = ctx.state;
      ctx.state = undefined;
      if (s === undefined) return;
      const day = Number(ctx.key);
      const first = firstHourOf(day);
      const ranked: { index: number; total: number }[] = [];
      for (let i = 0; i < 24; i++) {
        if ((s.present & (1 << i)) !== 0)
          ranked.push({ index: i, total: Math.round(s.totals[i]! * 10_000) / 10_000 });
      }
      ranked.sort((a, b) => b.total - a.total || a.index - b.index);
      for (let r = 0; r < Math.min(top, ranked.length); r++) {
        ctx.emit({ day, hour: first + ranked[r]!.index * HOUR, totalKw: ranked[r]!.total, rank: r + 1 });
      }
    },
  });
}

/**
 * The state key of a day, `String(dayOf(hour))`, kept for the last hour: rows of the same hour follow one
 * another, and the text was a new string per row.
 */
export function dayKeys(dayOf: (hour: number) => number): (hour: number) => string {
  let lastHour = Number.NaN;
  let lastKey = '';
  return (hour) => {
    if (hour !== lastHour) {
      lastHour = hour;
      lastKey = String(dayOf(hour));
    }
    return lastKey;
  };
}
