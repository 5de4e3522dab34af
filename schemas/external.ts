/**
 * The records of the external sources beside the meters (Metrify seed, "Raw Data Models"): hourly weather
 * observations per city and grid status per operator and region, as every adapter normalises them, with
 * their column lists (the single source of the ClickHouse tables in `schemas/models.ts`).
 */
import type { Column } from './reading.js';

/** One hour of weather at one place (seed "Weather Data"), units fixed whatever the provider sent. */
export interface WeatherObservation {
  /** The place as configured (a city or a grid cell name). */
  city: string;
  /** The registry region the place stands for: weather joins meters on it. */
  region: string;
  /** Start of the hour, epoch ms UTC. */
  ts: number;
  temperatureC: number;
  humidityPct: number | null;
  pressureHpa: number | null;
  windSpeedMs: number | null;
  windDirectionDeg: number | null;
  cloudCoverPct: number | null;
  visibilityKm: number | null;
  /** Apparent temperature in heat (NWS Rothfusz regression); the temperature where it does not apply. */
  heatIndexC: number;
  /** Apparent temperature in wind (Environment Canada / NWS 2001); the temperature where it does not apply. */
  windChillC: number;
  /** The provider and request the row came from, e.g. `open-meteo:berlin`. */
  source: string;
}

/** Grid status of one operator's control area for one hour (seed "Grid Status"), normalised across operators. */
export interface GridStatus {
  operator: string;
  region: string;
  /** Start of the hour, epoch ms UTC. */
  ts: number;
  totalCapacityMw: number;
  availableCapacityMw: number;
  /** Mean load over the hour. */
  loadMw: number;
  /** loadMw / totalCapacityMw. */
  loadFactor: number;
  /** NULL when the operator's feed does not publish it. */
  frequencyHz: number | null;
  voltageKv: number | null;
  renewablePct: number | null;
  source: string;
}

/** A planned grid maintenance window: peak hours inside it are `excluded_maintenance`. */
export interface MaintenanceWindow {
  region: string;
  /** Epoch ms UTC, start inclusive, end exclusive. */
  start: number;
  end: number;
  reason: string;
}

/** A page of a polled source that could not be used, kept whole with why. */
export interface SourceDeadLetter {
  /** The feed key, e.g. `weather:berlin`. */
  feed: string;
  /** The request without credentials. */
  url: string;
  /** HTTP status of the response (0: no response). */
  status: number;
  reason: string;
  /** The first characters of the body. */
  excerpt: string;
  /** Epoch ms. */
  at: number;
}

export const weatherColumns: readonly Column<WeatherObservation>[] = [
  { name: 'city', type: 'String', get: (r) => r.city, doc: 'Place as configured (city or grid cell)' },
  { name: 'region', type: 'String', get: (r) => r.region, doc: 'Registry region the place stands for' },
  { name: 'ts', type: 'DateTime', get: (r) => r.ts, doc: 'Hour start, UTC' },
  { name: 'temperature_celsius', type: 'Float64', get: (r) => r.temperatureC, doc: 'Air temperature, °C' },
  {
    name: 'humidity_percent',
    type: 'NullableFloat64',
    get: (r) => r.humidityPct,
    doc: 'Relative humidity, %',
  },
  { name: 'pressure_hpa', type: 'NullableFloat64', get: (r) => r.pressureHpa, doc: 'Surface pressure, hPa' },
  { name: 'wind_speed_ms', type: 'NullableFloat64', get: (r) => r.windSpeedMs, doc: 'Wind speed, m/s' },
  {
    name: 'wind_direction_degrees',
    type: 'NullableFloat64',
    get: (r) => r.windDirectionDeg,
    doc: 'Wind direction, degrees from north',
  },
  {
    name: 'cloud_cover_percent',
    type: 'NullableFloat64',
    get: (r) => r.cloudCoverPct,
    doc: 'Cloud cover, %',
  },
  { name: 'visibility_km', type: 'NullableFloat64', get: (r) => r.visibilityKm, doc: 'Visibility, km' },
  { name: 'heat_index_celsius', type: 'Float64', get: (r) => r.heatIndexC, doc: 'Heat index, °C' },
  { name: 'wind_chill_celsius', type: 'Float64', get: (r) => r.windChillC, doc: 'Wind chill, °C' },
  { name: 'source', type: 'String', get: (r) => r.source, doc: 'Provider and feed' },
];

export const gridColumns: readonly Column<GridStatus>[] = [
  { name: 'operator_name', type: 'String', get: (r) => r.operator, doc: 'Grid operator' },
  { name: 'region', type: 'String', get: (r) => r.region, doc: 'Registry region of the control area' },
  { name: 'ts', type: 'DateTime', get: (r) => r.ts, doc: 'Hour start, UTC' },
  { name: 'total_capacity_mw', type: 'Float64', get: (r) => r.totalCapacityMw, doc: 'Capacity, MW' },
  {
    name: 'available_capacity_mw',
    type: 'Float64',
    get: (r) => r.availableCapacityMw,
    doc: 'Capacity minus load, MW',
  },
  { name: 'load_mw', type: 'Float64', get: (r) => r.loadMw, doc: 'Mean load over the hour, MW' },
  { name: 'load_factor', type: 'Float64', get: (r) => r.loadFactor, doc: 'Load / capacity' },
  { name: 'frequency_hz', type: 'NullableFloat64', get: (r) => r.frequencyHz, doc: 'NULL: not published' },
  { name: 'voltage_kv', type: 'NullableFloat64', get: (r) => r.voltageKv, doc: 'NULL: not published' },
  {
    name: 'renewable_percentage',
    type: 'NullableFloat64',
    get: (r) => r.renewablePct,
    doc: 'NULL: not published',
  },
  { name: 'source', type: 'String', get: (r) => r.source, doc: 'Provider and feed' },
];

export const maintenanceColumns: readonly Column<MaintenanceWindow>[] = [
  { name: 'region', type: 'String', get: (r) => r.region, doc: 'Region under maintenance' },
  { name: 'window_start', type: 'DateTime', get: (r) => r.start, doc: 'Start, UTC (inclusive)' },
  { name: 'window_end', type: 'DateTime', get: (r) => r.end, doc: 'End, UTC (exclusive)' },
  { name: 'reason', type: 'String', get: (r) => r.reason, doc: 'Why' },
];

export const deadLetterColumns: readonly Column<SourceDeadLetter>[] = [
  { name: 'feed', type: 'String', get: (r) => r.feed, doc: 'Feed key, e.g. weather:berlin' },
  { name: 'url', type: 'String', get: (r) => r.url, doc: 'Request, credentials redacted' },
  { name: 'status', type: 'UInt32', get: (r) => r.status, doc: 'HTTP status (0: no response)' },
  { name: 'reason', type: 'String', get: (r) => r.reason, doc: 'Why the page was refused' },
  { name: 'excerpt', type: 'String', get: (r) => r.excerpt, doc: 'First 512 characters of the body' },
  { name: 'at', type: 'DateTime', get: (r) => r.at, doc: 'When it was fetched' },
];
