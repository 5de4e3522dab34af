/**
 * The Open-Meteo adapter: the only code that knows the shape of Open-Meteo's hourly JSON (forecast
 * `/v1/forecast` and archive `/v1/archive`, `hourly=` the variables of `OPEN_METEO_HOURLY`). It builds
 * the request's query and turns a response body into `WeatherObservation`s, or says why it cannot.
 *
 * Shape: `{ utc_offset_seconds, hourly_units: { <var>: unit }, hourly: { time: [...], <var>: [...] } }`,
 * every array as long as `time`; times ISO-8601 local to `utc_offset_seconds` (or epoch seconds with
 * `timeformat=unixtime`); a value not (yet) known is `null`. Hours without a temperature are skipped
 * (the archive's not-yet-published tail); any other break of the shape refuses the whole page.
 */
import type { WeatherObservation } from '../schemas/external.js';
import { heatIndexC, windChillC } from './apparent-temperature.js';

/** The hourly variables requested, in Open-Meteo's names. */
export const OPEN_METEO_HOURLY = [
  'temperature_2m',
  'relative_humidity_2m',
  'surface_pressure',
  'wind_speed_10m',
  'wind_direction_10m',
  'cloud_cover',
  'visibility',
] as const;

export interface OpenMeteoPlace {
  readonly city: string;
  readonly region: string;
  readonly latitude: number;
  readonly longitude: number;
}

/** The query string for one place and the UTC days [startDay, endDay] (`YYYY-MM-DD`), in metric units. */
export function openMeteoQuery(place: OpenMeteoPlace, startDay: string, endDay: string): URLSearchParams {
  return new URLSearchParams({
    latitude: String(place.latitude),
    longitude: String(place.longitude),
    hourly: OPEN_METEO_HOURLY.join(','),
    start_date: startDay,
    end_date: endDay,
    timezone: 'GMT',
    wind_speed_unit: 'ms',
  });
}

export type WeatherPageResult =
  | { readonly ok: true; readonly rows: WeatherObservation[] }
  | { readonly ok: false; readonly reason: string };

const WIND_TO_MS: Readonly<Record<string, number>> = {
  'm/s': 1,
  'km/h': 1 / 3.6,
  'mp/h': 0.44704,
  kn: 0.514444,
};
const VISIBILITY_TO_KM: Readonly<Record<string, number>> = { m: 0.001, ft: 0.0003048 };

/** Decodes one response body for `place`; never throws. */
export function decodeOpenMeteo(body: string, place: OpenMeteoPlace, source: string): WeatherPageResult {
  let root: unknown;
  try {
    root = JSON.parse(body);
  } catch (err) {
    return { ok: false, reason: `not JSON (truncated?): ${(err as Error).message}` };
  }
  if (!isObject(root)) return { ok: false, reason: 'root is not an object' };
  if (root.error === true) return { ok: false, reason: `provider error: ${String(root.reason ?? '')}` };
  const hourly = root.hourly;
  const units = isObject(root.hourly_units) ? root.hourly_units : {};
  if (!isObject(hourly)) return { ok: false, reason: 'no "hourly" object' };
  const offset = root.utc_offset_seconds ?? 0;
  if (typeof offset !== 'number' || !Number.isInteger(offset))
    return { ok: false, reason: '"utc_offset_seconds" is not an integer' };
  const time = hourly.time;
  if (!Array.isArray(time)) return { ok: false, reason: '"hourly.time" is not an array' };
  const series: Record<string, readonly (number | null)[]> = {};
  for (const name of OPEN_METEO_HOURLY) {
    const values = hourly[name];
    if (values === undefined && name !== 'temperature_2m') {
      series[name] = new Array<null>(time.length).fill(null);
      continue;
    }
    if (!Array.isArray(values)) return { ok: false, reason: `"hourly.${name}" is not an array` };
    if (values.length !== time.length)
      return { ok: false, reason: `"hourly.${name}" has ${values.length} values for ${time.length} times` };
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v !== null && (typeof v !== 'number' || !Number.isFinite(v)))
        return { ok: false, reason: `"hourly.${name}[${i}]" is not a number: ${JSON.stringify(v)}` };
    }
    series[name] = values as (number | null)[];
  }
  const tempUnit = String(units.temperature_2m ?? '°C');
  if (tempUnit !== '°C' && tempUnit !== '°F') return { ok: false, reason: `temperature unit ${tempUnit}` };
  const windFactor = WIND_TO_MS[String(units.wind_speed_10m ?? 'm/s')];
  if (windFactor === undefined)
    return { ok: false, reason: `wind speed unit ${String(units.wind_speed_10m)}` };
  const visFactor = VISIBILITY_TO_KM[String(units.visibility ?? 'm')];
  if (visFactor === undefined) return { ok: false, reason: `visibility unit ${String(units.visibility)}` };

  const rows: WeatherObservation[] = [];
  for (let i = 0; i < time.length; i++) {
    const ts = hourStart(time[i], offset);
    if (ts === null)
      return { ok: false, reason: `"hourly.time[${i}]" is not a time: ${JSON.stringify(time[i])}` };
    const raw = series.temperature_2m![i] ?? null;
    if (raw === null) continue;
    const temperatureC = tempUnit === '°F' ? ((raw - 32) * 5) / 9 : raw;
    const humidityPct = series.relative_humidity_2m![i] ?? null;
    const wind = series.wind_speed_10m![i] ?? null;
    const windSpeedMs = wind === null ? null : wind * windFactor;
    const visibility = series.visibility![i] ?? null;
    rows.push({
      city: place.city,
      region: place.region,
      ts,
      temperatureC: round(temperatureC),
      humidityPct,
      pressureHpa: series.surface_pressure![i] ?? null,
      windSpeedMs: windSpeedMs === null ? null : round(windSpeedMs),
      windDirectionDeg: series.wind_direction_10m![i] ?? null,
      cloudCoverPct: series.cloud_cover![i] ?? null,
      visibilityKm: visibility === null ? null : round(visibility * visFactor),
      heatIndexC: round(heatIndexC(temperatureC, humidityPct)),
      windChillC: round(windChillC(temperatureC, windSpeedMs)),
      source,
    });
  }
  return { ok: true, rows };
}

function hourStart(t: unknown, offsetSeconds: number): number | null {
  let ms: number;
  if (typeof t === 'number') ms = t * 1000;
  else if (typeof t === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(t))
    ms = Date.parse(`${t}:00Z`) - offsetSeconds * 1000;
  else return null;
  if (!Number.isFinite(ms) || ms % 3_600_000 !== 0) return null;
  return ms;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
