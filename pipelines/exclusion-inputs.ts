/**
 * The peak exclusions' side inputs for a job, read from the hot store: the weather lookup (mean
 * temperature of a region's places per hour, from `weather_observations`, which `greenstream poll`
 * fills) and the maintenance windows (`maintenance_windows`), re-read every `refreshMs`. A table that is
 * empty, or a read that fails, gives an empty lookup (the previous one after a failed refresh): the
 * ranking must never wait on the weather feed, it only excludes fewer hours.
 */
import { BehaviorSubject } from 'rxjs';
import { sql } from '../codecs/sql.js';
import type { HotStore } from '../connectors/clickhouse.js';
import { SideInput } from '../core/index.js';
import type { ExclusionInputs, WeatherLookup } from '../operators/peak-exclusions.js';
import { weatherLookup } from '../operators/peak-exclusions.js';
import type { MaintenanceWindow } from '../schemas/external.js';

export interface StoredExclusionInputs {
  readonly inputs: Omit<ExclusionInputs, 'registry'>;
  /** Re-reads both tables now (also run every `refreshMs`). */
  refresh(): Promise<void>;
  /** Stops the refresh timer. */
  close(): void;
}

/** Reads the weather lookup from the hot store (64-bit-free columns, so numbers arrive as numbers). */
export async function loadWeatherLookup(hot: HotStore): Promise<WeatherLookup> {
  // Aliases differ from the columns: 18.16 calls `toUInt32(ts) AS ts` a cyclic alias.
  const rows = await hot.query<{ region: string; hour_s: number | string; t: number }>(
    sql`SELECT region, toUInt32(ts) AS hour_s, avg(temperature_celsius) AS t
FROM ${sql.ident(hot.database, 'weather_observations')} FINAL
GROUP BY region, ts`,
  );
  return weatherLookup(
    rows.map((r) => ({ region: r.region, ts: Number(r.hour_s) * 1000, temperatureC: Number(r.t) })),
  );
}

export async function loadMaintenanceWindows(hot: HotStore): Promise<MaintenanceWindow[]> {
  const rows = await hot.query<{ region: string; s: number | string; e: number | string; reason: string }>(
    sql`SELECT region, toUInt32(window_start) AS s, toUInt32(window_end) AS e, reason
FROM ${sql.ident(hot.database, 'maintenance_windows')} FINAL`,
  );
  return rows.map((r) => ({
    region: r.region,
    start: Number(r.s) * 1000,
    end: Number(r.e) * 1000,
    reason: r.reason,
  }));
}

/**
 * Loads both side inputs once (so they are ready before the first hour is judged) and keeps them fresh.
 * `onError` hears each failed read; the run goes on with what it had.
 */
export async function openStoredExclusionInputs(
  hot: HotStore,
  refreshMs: number,
  onError: (table: string, error: unknown) => void = () => {},
): Promise<StoredExclusionInputs> {
  const weather = new BehaviorSubject<WeatherLookup>(new Map());
  const maintenance = new BehaviorSubject<readonly MaintenanceWindow[]>([]);
  let closed = false;
  const refresh = async (): Promise<void> => {
    const [w, m] = await Promise.allSettled([loadWeatherLookup(hot), loadMaintenanceWindows(hot)]);
    if (closed) return;
    if (w.status === 'fulfilled') weather.next(w.value);
    else onError('weather_observations', w.reason);
    if (m.status === 'fulfilled') maintenance.next(m.value);
    else onError('maintenance_windows', m.reason);
  };
  await refresh();
  // A read slower than the period is not stacked up behind itself.
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    void refresh().finally(() => {
      reading = false;
    });
  }, refreshMs);
  timer.unref();
  return {
    inputs: {
      weather: new SideInput<WeatherLookup>('weather', weather),
      maintenance: new SideInput<readonly MaintenanceWindow[]>('maintenance', maintenance),
    },
    refresh,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
