/**
 * Which meter-hours the daily peak ranking leaves out, and the stage that leaves them out (architecture
 * doc: peaks exclude holidays, extreme weather and grid maintenance). An hourly row is excluded when, for
 * its meter's registry region,
 * - its local date (IANA zone of the profile, daylight saving included) is a public holiday of the
 *   region's calendar (`date-holidays`: the region itself when it is a calendar code such as `DE-BY`, else
 *   the profile's `holidayCalendar`): `excluded_holiday`;
 * - the weather side input has that region and hour above `hotAboveC` or below `coldBelowC`:
 *   `excluded_weather` (an hour without weather is not excluded);
 * - a maintenance window of the region overlaps the hour: `excluded_maintenance`.
 * Excluded rows leave the stream before `rankDailyPeaks`, so the peaks are ranked over the remaining
 * hours; at the end of each day (the ranking's day) the stage reports what it excluded, per hour, region
 * and reason, on the `peak_exclusions` output. A row excluded for two reasons is reported under both.
 */
import Holidays from 'date-holidays';
import {
  keyedProcess,
  LATE,
  outputTag,
  type SideInput,
  type StateStore,
  type Transform,
} from '../core/index.js';
import type { MaintenanceWindow } from '../schemas/external.js';
import type { HourlyConsumption } from '../schemas/reading.js';
import { localHourOf } from './local-time.js';
import type { MeterRegistry } from './outputs.js';
import { dayKeys } from './rank-daily-peaks.js';
import type { RuleProfile } from './rule-profile.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const END_OF_DAY = 'end-of-day';

export type ExclusionReason = 'excluded_holiday' | 'excluded_weather' | 'excluded_maintenance';

/** What one day's ranking left out for one hour, region and reason. */
export interface PeakExclusion {
  /** The ranking's day (as `DailyPeak.day`). */
  day: number;
  /** Start of the hour, epoch ms UTC. */
  hour: number;
  region: string;
  reason: ExclusionReason;
  /** Hourly rows (meters) left out. */
  meters: number;
  /** Their summed mean kW. */
  totalKw: number;
  /** The holiday's name, the temperature, or the maintenance window's reason. */
  detail: string;
}

export const PEAK_EXCLUSIONS = outputTag<PeakExclusion>('peak_exclusions');

/** Temperature (°C) per region and hour start; built with `weatherLookup`. */
export type WeatherLookup = ReadonlyMap<string, number>;

export function weatherKey(region: string, hour: number): string {
  return `${region}\u0000${hour}`;
}

export function weatherLookup(
  rows: readonly { region: string; ts: number; temperatureC: number }[],
): WeatherLookup {
  const m = new Map<string, number>();
  for (const r of rows) m.set(weatherKey(r.region, Math.floor(r.ts / HOUR) * HOUR), r.temperatureC);
  return m;
}

export interface ExclusionInputs {
  readonly registry: SideInput<MeterRegistry>;
  readonly weather: SideInput<WeatherLookup>;
  readonly maintenance: SideInput<readonly MaintenanceWindow[]>;
}

export type ExclusionThresholds = RuleProfile['exclusions'];

/**
 * The reasons (with their detail) an hour of a region is excluded for; empty when it counts. Pure given
 * its lookups; holiday calendars are built once per calendar and year.
 */
export function exclusionJudge(
  thresholds: ExclusionThresholds,
): (
  region: string,
  hour: number,
  weather: WeatherLookup,
  maintenance: readonly MaintenanceWindow[],
) => { reason: ExclusionReason; detail: string }[] {
  const calendars = new Map<string, Map<string, string>>();
  const holidayOn = (region: string, date: string): string | undefined => {
    const code = /^[A-Z]{2}(-[A-Z0-9]{1,3})?$/.test(region) ? region : thresholds.holidayCalendar;
    const year = Number(date.slice(0, 4));
    const key = `${code}|${year}`;
    let days = calendars.get(key);
    if (days === undefined) {
      days = new Map();
      const [country, state] = code.split('-');
      const hd = state === undefined ? new Holidays(country!) : new Holidays(country!, state);
      for (const h of hd.getHolidays(year) || [])
        if (h.type === 'public') days.set(h.date.slice(0, 10), h.name);
      calendars.set(key, days);
    }
    return days.get(date);
  };
  return (region, hour, weather, maintenance) => {
    const out: { reason: ExclusionReason; detail: string }[] = [];
    const holiday =
      thresholds.holidayCalendar === ''
        ? undefined
        : holidayOn(region, localHourOf(hour, thresholds.timeZone).date);
    if (holiday !== undefined) out.push({ reason: 'excluded_holiday', detail: holiday });
    const t = weather.get(weatherKey(region, hour));
    if (t !== undefined && (t > thresholds.hotAboveC || t < thresholds.coldBelowC))
      out.push({ reason: 'excluded_weather', detail: `${t} °C` });
    const w = maintenance.find((m) => m.region === region && m.start < hour + HOUR && m.end > hour);
    if (w !== undefined) out.push({ reason: 'excluded_maintenance', detail: w.reason });
    return out;
  };
}

interface DayExclusions {
  /** `<hour>|<region>|<reason>` → [meters, kW, detail]. */
  excluded: Record<string, [number, number, string]>;
}

/**
 * The stage in front of `rankDailyPeaks`: passes the hours that count, holds back the excluded ones and
 * reports them when the watermark passes the day's end. `dayOf` must be the ranking's own day function.
 */
export function excludePeakHours(
  store: StateStore,
  inputs: ExclusionInputs,
  thresholds: ExclusionThresholds,
  dayOf: (hour: number) => number,
  name = 'excludePeakHours',
): Transform<HourlyConsumption, HourlyConsumption> {
  const judge = cachedJudge(exclusionJudge(thresholds), inputs);
  const dayKey = dayKeys(dayOf);
  return keyedProcess<HourlyConsumption, HourlyConsumption, DayExclusions>(store, {
    name,
    key: (h) => dayKey(h.hour),
    onElement: (ctx, h) => {
      const day = dayOf(h.hour);
      // Late for the day: the ranking tags it late; nothing to judge.
      if (day + DAY <= ctx.watermark) {
        ctx.tag(LATE, h);
        return;
      }
      const region = inputs.registry.value.get(h.meterId)?.region ?? '';
      const reasons = judge(region, h.hour);
      if (reasons.length === 0) {
        ctx.emit(h);
        return;
      }
      let s = ctx.state;
      if (s === undefined) {
        s = { excluded: {} };
        ctx.state = s;
        ctx.setTimer(END_OF_DAY, day + DAY);
      }
      for (const { key, detail } of reasons) {
        const e = s.excluded[key] ?? [0, 0, detail];
        e[0] += 1;
        e[1] += h.avgKw;
        s.excluded[key] = e;
      }
    },
    onTimer: (ctx) => {
      const s = ctx.state;
      ctx.state = undefined;
      if (s === undefined) return;
      const day = Number(ctx.key);
      for (const key of Object.keys(s.excluded).sort()) {
        const [hour, region, reason] = key.split('|') as [string, string, ExclusionReason];
        const [meters, kw, detail] = s.excluded[key]!;
        ctx.tag(PEAK_EXCLUSIONS, {
          day,
          hour: Number(hour),
          region,
          reason,
          meters,
          totalKw: Math.round(kw * 10_000) / 10_000,
          detail,
        });
      }
    },
  });
}

/** A judged reason with the key its day's tally counts it under (`<hour>|<region>|<reason>`). */
interface KeyedReason {
  readonly key: string;
  readonly detail: string;
}

const NO_REASONS: readonly KeyedReason[] = [];

/**
 * `judge` remembered per region for the hour being judged: the hourly rows of an hour come together, one
 * per meter, and the regions are few, so the judgement (a holiday lookup, a weather key, a scan of the
 * maintenance windows) is made once per region and hour instead of once per meter. Forgotten when the
 * hour changes or a side input is replaced, so a row is judged on the side inputs it meets, as before.
 */
function cachedJudge(
  judge: ReturnType<typeof exclusionJudge>,
  inputs: ExclusionInputs,
): (region: string, hour: number) => readonly KeyedReason[] {
  let hour = Number.NaN;
  let weather: WeatherLookup | undefined;
  let maintenance: readonly MaintenanceWindow[] | undefined;
  const byRegion = new Map<string, readonly KeyedReason[]>();
  return (region, h) => {
    const w = inputs.weather.value;
    const m = inputs.maintenance.value;
    if (h !== hour || w !== weather || m !== maintenance) {
      hour = h;
      weather = w;
      maintenance = m;
      byRegion.clear();
    }
    let reasons = byRegion.get(region);
    if (reasons === undefined) {
      const judged = judge(region, h, w, m);
      reasons =
        judged.length === 0
          ? NO_REASONS
          : judged.map(({ reason, detail }) => ({ key: `${h}|${region}|${reason}`, detail }));
      byRegion.set(region, reasons);
    }
    return reasons;
  };
}
