/** A local day of three meters with weather, grid status and a fault, for the models and expectation tests. */
import type { HotStore } from '../../connectors/clickhouse.js';
import { insertModelRows } from '../../connectors/model-tables.js';
import type { GridStatus, WeatherObservation } from '../../schemas/external.js';
import type { FaultEvent, HourlyConsumption, MeterInfo, Reading } from '../../schemas/reading.js';

const HOUR = 3_600_000;
const QUARTER = 900_000;
/** Local midnight of 15 July 2024 in Berlin (CEST). */
export const DAY_START = Date.UTC(2024, 6, 14, 22);

export const meters: MeterInfo[] = [
  {
    meterId: 'M1',
    region: 'north',
    neighborhood: 'n1',
    meterType: 'residential',
    vacant: false,
    maxKw: null,
  },
  {
    meterId: 'M2',
    region: 'north',
    neighborhood: 'n1',
    meterType: 'residential',
    vacant: false,
    maxKw: null,
  },
  { meterId: 'M3', region: 'south', neighborhood: 's1', meterType: 'commercial', vacant: false, maxKw: 40 },
];

export const kwAt = (meter: string, hour: number) =>
  meter === 'M3' ? 5 : 1 + hour / 10 + (meter === 'M2' ? 0.5 : 0);
export const northTemperature = (hour: number) => 20 + hour / 2;

export interface Seed {
  /** Quarter-hours of M2 stored as `missing` (a completeness drop). */
  readonly missingM2?: number;
  /** M1's own temperature measurement minus the weather's, per reading. */
  readonly m1TemperatureOffset?: number;
}

export function readingsFor(seed: Seed = {}): Reading[] {
  const out: Reading[] = [];
  for (const m of meters) {
    for (let q = 0; q < 96; q++) {
      const ts = DAY_START + q * QUARTER;
      const hour = Math.floor(q / 4);
      const missing = m.meterId === 'M2' && q < (seed.missingM2 ?? 0);
      const kw = missing ? null : kwAt(m.meterId, hour);
      out.push({
        meterId: m.meterId,
        ts,
        kw,
        rawValue: kw === null ? '' : String(kw),
        rawUnit: kw === null ? '' : 'kW',
        status: missing ? 'missing' : 'measured',
        flags: missing ? ['missing_short'] : [],
        warnings: 0,
        qualityScore: missing ? 0 : 100,
        qualityTier: missing ? 'quarantine' : 'premium',
        grade: missing ? 'F' : 'A',
        peakClass: 'standard',
        season: 'summer',
        recordId: `${m.meterId}-${q}`,
        source: 'fixture',
        processedAt: DAY_START + 2 * 86_400_000,
        pipelineVersion: 'test',
        ...(m.meterId === 'M1'
          ? {
              measurements: {
                voltage: 231.5,
                current: 4.2,
                power_factor: 0.97,
                frequency: 50.01,
                temperature: northTemperature(hour) + (seed.m1TemperatureOffset ?? 0),
                humidity: 55,
              },
            }
          : {}),
      });
    }
  }
  return out;
}

export function hourlyFor(): HourlyConsumption[] {
  const out: HourlyConsumption[] = [];
  for (const m of meters)
    for (let h = 0; h < 24; h++) {
      const kw = kwAt(m.meterId, h);
      out.push({
        meterId: m.meterId,
        neighborhood: m.neighborhood,
        hour: DAY_START + h * HOUR,
        avgKw: kw,
        minKw: kw,
        maxKw: kw,
        stddevKw: 0,
        count: 4,
      });
    }
  return out;
}

export function weatherFor(): WeatherObservation[] {
  return Array.from({ length: 24 }, (_, h) => ({
    city: 'berlin',
    region: 'north',
    ts: DAY_START + h * HOUR,
    temperatureC: northTemperature(h),
    humidityPct: 55,
    pressureHpa: 1012,
    windSpeedMs: 3,
    windDirectionDeg: 250,
    cloudCoverPct: 20,
    visibilityKm: 24,
    heatIndexC: northTemperature(h),
    windChillC: northTemperature(h),
    source: 'fixture',
  }));
}

export function gridFor(): GridStatus[] {
  return Array.from({ length: 24 }, (_, h) => ({
    operator: '50hertz',
    region: 'north',
    ts: DAY_START + h * HOUR,
    totalCapacityMw: 20_000,
    availableCapacityMw: 10_000,
    loadMw: 10_000,
    loadFactor: 0.5,
    frequencyHz: null,
    voltageKv: null,
    renewablePct: null,
    source: 'fixture',
  }));
}

export const openFault: FaultEvent = {
  meterId: 'M2',
  faultType: 'stuck',
  windowStart: DAY_START + 12 * HOUR,
  windowEnd: DAY_START + 23 * HOUR,
  detectedAt: DAY_START + 23 * HOUR,
  evidence: '{}',
};

export async function seedStore(store: HotStore, seed: Seed = {}): Promise<void> {
  await store.insert('meters', meters);
  await store.insert('readings', readingsFor(seed));
  await store.insert('hourly_consumption', hourlyFor());
  await store.insert('faults', [openFault]);
  await insertModelRows(store, 'weather_observations', weatherFor());
  await insertModelRows(store, 'grid_status', gridFor());
}
