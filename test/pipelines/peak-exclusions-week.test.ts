/**
 * Peak exclusions on a simulated week holding a public holiday (1 May 2024, Germany, local Berlin date),
 * a heat wave (38 °C in every region for six hours) and a grid maintenance window (one region, four
 * hours): the graph's daily peaks must equal a ranking of the same hourly rows without exactly the
 * excluded meter-hours, and the exclusion report must name exactly those.
 */
import { BehaviorSubject } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { SideInput } from '../../core/index.js';
import { type WeatherLookup, weatherLookup } from '../../operators/peak-exclusions.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type CollectedOutputs, runGraphInMemoryAsync } from '../../pipelines/in-memory.js';
import type { MaintenanceWindow } from '../../schemas/external.js';
import type { DailyPeak, HourlyConsumption, RawReading } from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const START = Date.UTC(2024, 3, 29);
// 1 May in Berlin (CEST, UTC+2) runs from 30 April 22:00 UTC to 1 May 22:00 UTC.
const HOLIDAY = { from: Date.UTC(2024, 3, 30, 22), to: Date.UTC(2024, 4, 1, 22) };
const HEAT = { from: Date.UTC(2024, 4, 2, 12), to: Date.UTC(2024, 4, 2, 18) };
const MAINTENANCE: MaintenanceWindow = {
  region: 'north',
  start: Date.UTC(2024, 4, 3, 15),
  end: Date.UTC(2024, 4, 3, 19),
  reason: 'transformer swap',
};

let registry: ReturnType<typeof parseRegistryCsv>['registry'];
let baseline: CollectedOutputs;
let excluded: CollectedOutputs;

/** The reference ranking: per UTC day, hours by summed mean kW (4 decimals), ties to the earlier hour. */
function rank(rows: readonly HourlyConsumption[], top = 3): DailyPeak[] {
  const totals = new Map<number, number>();
  for (const r of rows) totals.set(r.hour, (totals.get(r.hour) ?? 0) + r.avgKw);
  const byDay = new Map<number, { hour: number; total: number }[]>();
  for (const [hour, t] of totals) {
    const day = Math.floor(hour / DAY) * DAY;
    const list = byDay.get(day) ?? [];
    list.push({ hour, total: Math.round(t * 10_000) / 10_000 });
    byDay.set(day, list);
  }
  const out: DailyPeak[] = [];
  for (const [day, list] of [...byDay].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => b.total - a.total || a.hour - b.hour);
    for (const [i, h] of list.slice(0, top).entries())
      out.push({ day, hour: h.hour, totalKw: h.total, rank: i + 1 });
  }
  return out;
}

const sortPeaks = (p: readonly DailyPeak[]) => [...p].sort((a, b) => a.day - b.day || a.rank - b.rank);

function reasonsOf(row: HourlyConsumption): string[] {
  const region = registry.get(row.meterId)!.region;
  const r: string[] = [];
  if (row.hour >= HOLIDAY.from && row.hour < HOLIDAY.to) r.push('excluded_holiday');
  if (row.hour >= HEAT.from && row.hour < HEAT.to) r.push('excluded_weather');
  if (region === MAINTENANCE.region && row.hour >= MAINTENANCE.start && row.hour < MAINTENANCE.end)
    r.push('excluded_maintenance');
  return r;
}

beforeAll(async () => {
  const sim = createSimulation({ meters: 60, days: 7, start: '2024-04-29', seed: 21 });
  const parsed = parseRegistryCsv(sim.registryCsv());
  registry = parsed.registry;
  const batches: RawReading[][] = [];
  for (const hour of sim.hours()) {
    const decoded = decodeReadings(Buffer.from(hour.csv), {
      source: hour.path,
      receivedAt: landingReceivedAt(hour.path) ?? 0,
    });
    if (!decoded.ok) throw new Error(`${hour.path} dead-lettered`);
    batches.push(decoded.readings);
  }
  const regions = [...new Set([...registry.values()].map((m) => m.region))];
  expect(regions).toContain('north');
  const weather = [];
  for (let t = START - DAY; t < START + 8 * DAY; t += HOUR)
    for (const region of regions)
      weather.push({ region, ts: t, temperatureC: t >= HEAT.from && t < HEAT.to ? 38 : 21 });
  const profile = resolveRuleProfile({ exclusions: { timeZone: 'Europe/Berlin', holidayCalendar: 'DE' } });
  baseline = await runGraphInMemoryAsync(batches, registry, profile);
  excluded = await runGraphInMemoryAsync(batches, registry, profile, {
    exclusions: {
      weather: new SideInput<WeatherLookup>('weather', new BehaviorSubject(weatherLookup(weather))),
      maintenance: new SideInput<readonly MaintenanceWindow[]>(
        'maintenance',
        new BehaviorSubject([MAINTENANCE]),
      ),
    },
  });
}, 120_000);

describe('daily peaks with holiday, weather and maintenance exclusions', () => {
  it('the reference ranking reproduces the graph without exclusions', () => {
    expect(baseline.hourly.length).toBeGreaterThan(60 * 24 * 5);
    expect(sortPeaks(baseline.dailyPeaks)).toEqual(rank(baseline.hourly));
    expect(excluded.hourly).toEqual(baseline.hourly);
  });

  it('peaks are ranked over exactly the hours not excluded', () => {
    const kept = baseline.hourly.filter((h) => reasonsOf(h).length === 0);
    expect(kept.length).toBeLessThan(baseline.hourly.length);
    expect(sortPeaks(excluded.dailyPeaks)).toEqual(rank(kept));
  });

  it('the peaks differ on the holiday, heat-wave and maintenance days only', () => {
    const days = (p: readonly DailyPeak[]) =>
      new Map(
        [...new Set(p.map((x) => x.day))].map((d) => [d, JSON.stringify(p.filter((x) => x.day === d))]),
      );
    const before = days(sortPeaks(baseline.dailyPeaks));
    const after = days(sortPeaks(excluded.dailyPeaks));
    const changed = [...before.keys()]
      .filter((d) => before.get(d) !== after.get(d))
      .map((d) => new Date(d).toISOString().slice(0, 10));
    // The holiday's first two local hours fall on 30 April UTC.
    expect(changed).toEqual(expect.arrayContaining(['2024-05-01', '2024-05-02', '2024-05-03']));
    expect(changed.every((d) => ['2024-04-30', '2024-05-01', '2024-05-02', '2024-05-03'].includes(d))).toBe(
      true,
    );
    // No excluded hour is ranked.
    for (const p of excluded.dailyPeaks) {
      expect(p.hour >= HOLIDAY.from && p.hour < HOLIDAY.to).toBe(false);
      expect(p.hour >= HEAT.from && p.hour < HEAT.to).toBe(false);
    }
  });

  it('reports exactly the excluded meter-hours, per hour, region and reason', () => {
    const expected = new Map<string, number>();
    for (const h of baseline.hourly)
      for (const reason of reasonsOf(h)) {
        const key = `${h.hour}|${registry.get(h.meterId)!.region}|${reason}`;
        expected.set(key, (expected.get(key) ?? 0) + 1);
      }
    const reported = new Map(
      excluded.peakExclusions.map((e) => [`${e.hour}|${e.region}|${e.reason}`, e.meters]),
    );
    expect(reported).toEqual(expected);
    const holiday = excluded.peakExclusions.find((e) => e.reason === 'excluded_holiday')!;
    expect(holiday.detail).toBe('Maifeiertag');
    expect(excluded.peakExclusions.find((e) => e.reason === 'excluded_weather')!.detail).toBe('38 °C');
    expect(excluded.peakExclusions.find((e) => e.reason === 'excluded_maintenance')!.detail).toBe(
      'transformer swap',
    );
  });
});
