/** The Metrify models on ClickHouse 18.16 and chDB: migrations 30–31, measurements, staging, fact, dimension, daily. */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { chdbDataDir, testDatabase } from '../connectors/clickhouse-fixtures.js';
import { DAY_START, kwAt, northTemperature, seedStore } from './models-fixtures.js';

const ENGINES = [
  ['clickhouse-server 18.16', 'server'],
  ['chDB', 'chdb'],
] as const;

describe.each(ENGINES)('models on %s', (_name, engine) => {
  let dataDir: ReturnType<typeof chdbDataDir> | undefined;
  let store: HotStore;
  let applied: readonly number[];
  const rows = async <T = Record<string, unknown>>(query: string) =>
    store.query<T>(sql.raw(query.replaceAll('DB.', `${store.database}.`)));

  beforeAll(async () => {
    dataDir = engine === 'chdb' ? chdbDataDir() : undefined;
    const database = testDatabase('models');
    store = openHotStore(
      engine === 'server'
        ? { kind: 'server', url: inject('clickhouseUrl'), database }
        : { kind: 'chdb', path: dataDir!.path, database },
    );
    applied = (await store.migrate()).applied;
    await seedStore(store);
  });

  afterAll(async () => {
    await store?.command(sql`DROP DATABASE IF EXISTS ${sql.ident(store.database)}`);
    await store?.close();
    dataDir?.remove();
  });

  it('migrations 30 and 31 run once, after the core schema', async () => {
    expect(applied).toEqual(expect.arrayContaining([1, 2, 30, 31]));
    expect((await store.migrate()).applied).toEqual([]);
  });

  it('stores the measurements, NULL where none was sent', async () => {
    const r = await rows<Record<string, number | string | null>>(
      `SELECT meter_id, voltage, current, power_factor, frequency, temperature, humidity FROM DB.readings FINAL WHERE ts = toDateTime(${DAY_START / 1000}) ORDER BY meter_id`,
    );
    expect(r).toEqual([
      {
        meter_id: 'M1',
        voltage: 231.5,
        current: 4.2,
        power_factor: 0.97,
        frequency: 50.01,
        temperature: 20,
        humidity: 55,
      },
      {
        meter_id: 'M2',
        voltage: null,
        current: null,
        power_factor: null,
        frequency: null,
        temperature: null,
        humidity: null,
      },
      {
        meter_id: 'M3',
        voltage: null,
        current: null,
        power_factor: null,
        frequency: null,
        temperature: null,
        humidity: null,
      },
    ]);
  });

  it('staging views carry local time dimensions (Europe/Berlin, DST)', async () => {
    const [first] = await rows<{
      local_hour: number;
      local_date: string;
      weekday: number;
      season_local: string;
      date: string;
    }>(
      `SELECT local_hour, toString(local_date) AS local_date, weekday, season_local, toString(date) AS date FROM DB.stg_meter_readings WHERE meter_id = 'M1' ORDER BY ts LIMIT 1`,
    );
    expect(first).toMatchObject({
      local_hour: 0,
      local_date: '2024-07-15',
      weekday: 1,
      season_local: 'summer',
      date: '2024-07-14',
    });
    const [w] = await rows<{ n: string; cooling: number }>(
      `SELECT count() AS n, max(cooling_degrees) AS cooling FROM DB.stg_weather`,
    );
    expect(Number(w!.n)).toBe(24);
    expect(w!.cooling).toBeCloseTo(northTemperature(23) - 22, 6);
  });

  it('fact_meter_hourly joins meter, weather and grid by region and hour', async () => {
    const r = await rows<{
      meter_id: string;
      region: string;
      temperature_celsius: number | null;
      grid_load_factor: number | null;
      avg_kw: number;
    }>(
      `SELECT meter_id, region, temperature_celsius, grid_load_factor, avg_kw FROM DB.fact_meter_hourly WHERE hour = toDateTime(${(DAY_START + 12 * 3_600_000) / 1000}) ORDER BY meter_id`,
    );
    expect(r).toEqual([
      {
        meter_id: 'M1',
        region: 'north',
        temperature_celsius: northTemperature(12),
        grid_load_factor: 0.5,
        avg_kw: kwAt('M1', 12),
      },
      {
        meter_id: 'M2',
        region: 'north',
        temperature_celsius: northTemperature(12),
        grid_load_factor: 0.5,
        avg_kw: kwAt('M2', 12),
      },
      { meter_id: 'M3', region: 'south', temperature_celsius: null, grid_load_factor: null, avg_kw: 5 },
    ]);
  });

  it('dim_meters classes quality and flags open faults for maintenance', async () => {
    const r = await rows<{
      meter_id: string;
      quality_class: string;
      maintenance_status: string;
      readings_30d: string;
    }>(
      `SELECT meter_id, quality_class, maintenance_status, readings_30d FROM DB.dim_meters ORDER BY meter_id`,
    );
    expect(r.map((x) => [x.meter_id, x.quality_class, x.maintenance_status, Number(x.readings_30d)])).toEqual(
      [
        ['M1', 'premium', 'ok', 96],
        ['M2', 'premium', 'needs_maintenance', 96],
        ['M3', 'premium', 'ok', 96],
      ],
    );
  });

  it('daily metrics per meter and region, with weather correlation', async () => {
    const d = await rows<{
      meter_id: string;
      date: string;
      kwh: number;
      hours: string;
      weather_correlation: number | null;
      peak_local_hour: number;
    }>(
      `SELECT meter_id, toString(date) AS date, kwh, hours, weather_correlation, peak_local_hour FROM DB.daily_consumption_metrics ORDER BY meter_id`,
    );
    expect(d.map((x) => [x.meter_id, x.date, Number(x.hours)])).toEqual([
      ['M1', '2024-07-15', 24],
      ['M2', '2024-07-15', 24],
      ['M3', '2024-07-15', 24],
    ]);
    expect(d[0]!.kwh).toBeCloseTo(
      Array.from({ length: 24 }, (_, h) => kwAt('M1', h)).reduce((a, b) => a + b),
      6,
    );
    expect(d[0]!.weather_correlation).toBeCloseTo(1, 6);
    expect(d[0]!.peak_local_hour).toBe(23);
    const region = await rows<{ region: string; meters: string; weather_correlation: number | null }>(
      `SELECT region, meters, weather_correlation FROM DB.daily_region_metrics ORDER BY region`,
    );
    expect(region.map((x) => [x.region, Number(x.meters)])).toEqual([
      ['north', 2],
      ['south', 1],
    ]);
    expect(region[0]!.weather_correlation).toBeCloseTo(1, 6);
  });
});
