/**
 * Peak exclusions in the production job (`run --until-idle`, embedded chDB): four simulated days holding
 * 1 May 2024 (a German public holiday; the simulator's regions fall back to the `DE` calendar), weather
 * rows pre-loaded in the hot store with a heat wave (38 °C, two hours, every region) and a maintenance
 * window of one region in its table. With `exclusions.enabled` the stored daily peaks leave out exactly
 * those meter-hours and `peak_exclusions` holds them; with it off the peaks rank every hour. An empty
 * weather table does not hold the run back, and a refresh picks up rows written after the start.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { insertModelRows } from '../../connectors/model-tables.js';
import { weatherKey } from '../../operators/peak-exclusions.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { type RuleProfileOverrides, resolveRuleProfile } from '../../operators/rule-profile.js';
import { openStoredExclusionInputs } from '../../pipelines/exclusion-inputs.js';
import { runMeterQualityJob } from '../../pipelines/job.js';
import type { MaintenanceWindow, WeatherObservation } from '../../schemas/external.js';
import { simulate } from '../../simulator/index.js';
import { chdbDataDir, testDatabase } from '../connectors/clickhouse-fixtures.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const START = Date.UTC(2024, 3, 29);
const DAYS = 4;
// 1 May in Berlin (CEST, UTC+2) runs from 30 April 22:00 UTC to 1 May 22:00 UTC.
const HOLIDAY = { from: Date.UTC(2024, 3, 30, 22), to: Date.UTC(2024, 4, 1, 22) };
const HEAT = { from: Date.UTC(2024, 4, 2, 12), to: Date.UTC(2024, 4, 2, 14) };
const MAINTENANCE: MaintenanceWindow = {
  region: 'north',
  start: Date.UTC(2024, 4, 2, 17),
  end: Date.UTC(2024, 4, 2, 19),
  reason: 'transformer swap',
};

interface Hourly {
  meterId: string;
  hour: number;
  avgKw: number;
}
interface Peak {
  day: number;
  hour: number;
  rank: number;
  totalKw: number;
}
interface Stored {
  hourly: Hourly[];
  peaks: Peak[];
  exclusions: { hour: number; region: string; reason: string; meters: number; detail: string }[];
}

let dir: string;
let chdb: ReturnType<typeof chdbDataDir>;
let regionOf: Map<string, string>;
const stores: HotStore[] = [];
let on: Stored;
let off: Stored;
let noWeather: Stored;

function weatherRows(regions: readonly string[]): WeatherObservation[] {
  const rows: WeatherObservation[] = [];
  for (let ts = START; ts < START + DAYS * DAY; ts += HOUR)
    for (const region of regions) {
      const t = ts >= HEAT.from && ts < HEAT.to ? 38 : 21;
      rows.push({
        city: `${region}-city`,
        region,
        ts,
        temperatureC: t,
        humidityPct: 40,
        pressureHpa: 1013,
        windSpeedMs: 2,
        windDirectionDeg: 180,
        cloudCoverPct: 10,
        visibilityKm: 20,
        heatIndexC: t,
        windChillC: t,
        source: 'test',
      });
    }
  return rows;
}

async function storeFor(label: string): Promise<HotStore> {
  const store = openHotStore({ kind: 'chdb', path: chdb.path, database: testDatabase(label) });
  stores.push(store);
  await store.migrate();
  return store;
}

/** Runs the job over its own copy of the simulated days into `store`'s database and reads the outputs. */
async function run(label: string, store: HotStore, overrides: RuleProfileOverrides): Promise<Stored> {
  const landing = join(dir, label);
  await simulate({ out: landing, meters: 24, days: DAYS, start: '2024-04-29', seed: 21 });
  const result = await runMeterQualityJob({
    source: { kind: 'files', root: landing },
    registryPath: join(landing, 'registry.csv'),
    hot: { kind: 'chdb', path: chdb.path, database: store.database },
    checkpointPath: join(dir, `${label}-checkpoint.json`),
    untilIdle: true,
    replay: false,
    profile: resolveRuleProfile(overrides),
    workerId: label,
  });
  await result.hot.close();
  const db = (t: string) => sql.ident(store.database, t);
  const hourly = await store.query<{ meter_id: string; hour: number; avg_kw: number }>(
    sql`SELECT meter_id, toUInt32(hour) AS hour, avg_kw FROM ${db('hourly_consumption')} FINAL`,
  );
  const peaks = await store.query<{ day: number; hour: number; rank: number; total_kw: number }>(
    sql`SELECT toUInt32(day) AS day, toUInt32(hour) AS hour, rank, total_kw FROM ${db('daily_peaks')} FINAL`,
  );
  const exclusions = await store.query<{
    hour: number;
    region: string;
    reason: string;
    meters: number | string;
    detail: string;
  }>(sql`SELECT toUInt32(hour) AS hour, region, reason, meters, detail FROM ${db('peak_exclusions')} FINAL`);
  return {
    hourly: hourly.map((h) => ({ meterId: h.meter_id, hour: Number(h.hour) * 1000, avgKw: h.avg_kw })),
    peaks: peaks
      .map((p) => ({
        day: Number(p.day) * 1000,
        hour: Number(p.hour) * 1000,
        rank: Number(p.rank),
        totalKw: p.total_kw,
      }))
      .sort((a, b) => a.day - b.day || a.rank - b.rank),
    exclusions: exclusions.map((e) => ({ ...e, hour: Number(e.hour) * 1000, meters: Number(e.meters) })),
  };
}

/** The reference ranking: per UTC day, the top 3 hours by summed mean kW, ties to the earlier hour. */
function rank(rows: readonly Hourly[]): Peak[] {
  const totals = new Map<number, number>();
  for (const r of rows) totals.set(r.hour, (totals.get(r.hour) ?? 0) + r.avgKw);
  const byDay = new Map<number, { hour: number; total: number }[]>();
  for (const [hour, total] of totals) {
    const day = Math.floor(hour / DAY) * DAY;
    byDay.set(day, [...(byDay.get(day) ?? []), { hour, total }]);
  }
  const out: Peak[] = [];
  for (const [day, list] of [...byDay].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => b.total - a.total || a.hour - b.hour);
    for (const [i, h] of list.slice(0, 3).entries())
      out.push({ day, hour: h.hour, rank: i + 1, totalKw: h.total });
  }
  return out;
}

function expectPeaks(actual: readonly Peak[], expected: readonly Peak[]): void {
  expect(actual.map(({ day, hour, rank }) => ({ day, hour, rank }))).toEqual(
    expected.map(({ day, hour, rank }) => ({ day, hour, rank })),
  );
  for (const [i, p] of actual.entries()) expect(p.totalKw).toBeCloseTo(expected[i]!.totalKw, 3);
}

function reasonsOf(h: Hourly, weather: boolean): string[] {
  const r: string[] = [];
  if (h.hour >= HOLIDAY.from && h.hour < HOLIDAY.to) r.push('excluded_holiday');
  if (weather && h.hour >= HEAT.from && h.hour < HEAT.to) r.push('excluded_weather');
  if (
    regionOf.get(h.meterId) === MAINTENANCE.region &&
    h.hour >= MAINTENANCE.start &&
    h.hour < MAINTENANCE.end
  )
    r.push('excluded_maintenance');
  return r;
}

function expectedReport(hourly: readonly Hourly[], weather: boolean): Map<string, number> {
  const out = new Map<string, number>();
  for (const h of hourly)
    for (const reason of reasonsOf(h, weather)) {
      const key = `${h.hour}|${regionOf.get(h.meterId)}|${reason}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-exclusions-run-'));
  chdb = chdbDataDir();
  const registryDir = join(dir, 'registry');
  await simulate({ out: registryDir, meters: 24, days: 1, start: '2024-04-29', seed: 21 });
  const { readFile } = await import('node:fs/promises');
  const { registry } = parseRegistryCsv(await readFile(join(registryDir, 'registry.csv'), 'utf8'));
  regionOf = new Map([...registry].map(([id, m]) => [id, m.region]));
  const regions = [...new Set(regionOf.values())];
  expect(regions).toContain(MAINTENANCE.region);

  const withWeather = async (label: string) => {
    const store = await storeFor(label);
    await insertModelRows(store, 'weather_observations', weatherRows(regions));
    await insertModelRows(store, 'maintenance_windows', [MAINTENANCE]);
    return store;
  };
  on = await run('on', await withWeather('on'), { exclusions: { enabled: true } });
  off = await run('off', await withWeather('off'), { exclusions: { enabled: false } });
  const empty = await storeFor('noweather');
  await insertModelRows(empty, 'maintenance_windows', [MAINTENANCE]);
  noWeather = await run('noweather', empty, { exclusions: { enabled: true } });
}, 120_000);

afterAll(async () => {
  for (const s of stores) {
    await s.command(sql`DROP DATABASE IF EXISTS ${sql.ident(s.database)}`).catch(() => {});
    await s.close();
  }
  chdb?.remove();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('run with peak exclusions from the hot store (chDB)', () => {
  it('with the switch off, the stored peaks rank every hour and nothing is reported', () => {
    expect(off.hourly.length).toBeGreaterThan(24 * 24 * (DAYS - 1));
    expectPeaks(off.peaks, rank(off.hourly));
    expect(off.exclusions).toEqual([]);
  });

  it('with it on, the hourly aggregates are the same and the peaks rank exactly the hours not excluded', () => {
    const key = (h: Hourly) => `${h.meterId}|${h.hour}`;
    expect(new Set(on.hourly.map(key))).toEqual(new Set(off.hourly.map(key)));
    const kept = on.hourly.filter((h) => reasonsOf(h, true).length === 0);
    expect(kept.length).toBeLessThan(on.hourly.length);
    expectPeaks(on.peaks, rank(kept));
    expect(on.peaks).not.toEqual(off.peaks);
    for (const p of on.peaks) {
      expect(p.hour >= HOLIDAY.from && p.hour < HOLIDAY.to).toBe(false);
      expect(p.hour >= HEAT.from && p.hour < HEAT.to).toBe(false);
    }
  });

  it('peak_exclusions holds the holiday, heat-wave and maintenance meter-hours, per hour, region and reason', () => {
    const stored = new Map(on.exclusions.map((e) => [`${e.hour}|${e.region}|${e.reason}`, e.meters]));
    expect(stored).toEqual(expectedReport(on.hourly, true));
    const details = new Map(on.exclusions.map((e) => [e.reason, e.detail]));
    expect(details.get('excluded_holiday')).toBe('Maifeiertag');
    expect(details.get('excluded_weather')).toBe('38 °C');
    expect(details.get('excluded_maintenance')).toBe('transformer swap');
  });

  it('an empty weather table does not hold the run back: holidays and maintenance are still excluded', () => {
    expect(noWeather.hourly.length).toBe(on.hourly.length);
    const stored = new Map(noWeather.exclusions.map((e) => [`${e.hour}|${e.region}|${e.reason}`, e.meters]));
    expect(stored).toEqual(expectedReport(noWeather.hourly, false));
    expectPeaks(noWeather.peaks, rank(noWeather.hourly.filter((h) => reasonsOf(h, false).length === 0)));
  });
});

describe('stored exclusion inputs and report on clickhouse-server 18.16', () => {
  it('reads the weather and maintenance tables and stores the report rows', async () => {
    const store = openHotStore({
      kind: 'server',
      url: inject('clickhouseUrl'),
      database: testDatabase('exclusions'),
    });
    const inputs = await (async () => {
      await store.migrate();
      await insertModelRows(store, 'weather_observations', weatherRows(['north', 'south']));
      await insertModelRows(store, 'maintenance_windows', [MAINTENANCE]);
      await insertModelRows(store, 'peak_exclusions', [
        {
          day: START,
          hour: HEAT.from,
          region: 'north',
          reason: 'excluded_weather' as const,
          meters: 7,
          totalKw: 12.5,
          detail: '38 °C',
        },
      ]);
      return openStoredExclusionInputs(store, 3_600_000);
    })();
    try {
      inputs.inputs.weather.connect((e) => {
        throw e;
      });
      inputs.inputs.maintenance.connect((e) => {
        throw e;
      });
      expect(inputs.inputs.weather.value.size).toBe(2 * DAYS * 24);
      expect(inputs.inputs.weather.value.get(weatherKey('south', HEAT.from))).toBe(38);
      expect(inputs.inputs.maintenance.value).toEqual([MAINTENANCE]);
      const rows = await store.query(
        sql`SELECT toUInt32(hour) AS hour_s, region, reason, meters, total_kw, detail FROM ${sql.ident(store.database, 'peak_exclusions')} FINAL`,
      );
      expect(rows.map((r) => ({ ...r, hour_s: Number(r.hour_s), meters: Number(r.meters) }))).toEqual([
        {
          hour_s: HEAT.from / 1000,
          region: 'north',
          reason: 'excluded_weather',
          meters: 7,
          total_kw: 12.5,
          detail: '38 °C',
        },
      ]);
    } finally {
      inputs.close();
      await store.command(sql`DROP DATABASE IF EXISTS ${sql.ident(store.database)}`);
      await store.close();
    }
  });
});

describe('stored exclusion inputs', () => {
  it('a refresh picks up weather written after the start; a failed read keeps the last lookup', async () => {
    const store = await storeFor('refresh');
    const errors: string[] = [];
    const inputs = await openStoredExclusionInputs(store, 3_600_000, (table) => errors.push(table));
    try {
      const weather = inputs.inputs.weather;
      weather.connect((e) => {
        throw e;
      });
      expect(weather.value.size).toBe(0);
      await insertModelRows(store, 'weather_observations', weatherRows(['north']).slice(0, 3));
      await inputs.refresh();
      expect(weather.value.get(weatherKey('north', START))).toBe(21);
      expect(weather.value.size).toBe(3);
      await store.command(sql`DROP TABLE ${sql.ident(store.database, 'weather_observations')}`);
      await inputs.refresh();
      expect(errors).toEqual(['weather_observations']);
      expect(weather.value.size).toBe(3);
    } finally {
      inputs.close();
    }
  });
});
