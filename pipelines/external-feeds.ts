/**
 * The polled feeds as configured: one Open-Meteo feed per place (a UTC day a page) and one ENTSO-E load
 * feed per control area (a UTC day a page), each bound to its adapter in `codecs/`.
 */
import { decodeEntsoeLoad, entsoeLoadQuery, type GridArea } from '../codecs/entsoe-load.js';
import { decodeOpenMeteo, type OpenMeteoPlace, openMeteoQuery } from '../codecs/open-meteo.js';
import type { PolledFeed } from './polling-source.js';

const DAY = 86_400_000;

export const OPEN_METEO_ARCHIVE_URL = 'https://archive-api.open-meteo.com/v1/archive';
export const ENTSOE_API_URL = 'https://web-api.tp.entsoe.eu/api';

/** Days are whole UTC days: the first page starts at the UTC midnight at or before `startAt`. */
export function weatherFeed(
  place: OpenMeteoPlace,
  startAt: number,
  baseUrl = OPEN_METEO_ARCHIVE_URL,
): PolledFeed {
  return {
    kind: 'weather',
    key: `weather:${place.city}`,
    startAt: Math.floor(startAt / DAY) * DAY,
    pageMs: DAY,
    url: (start) => {
      const day = new Date(start).toISOString().slice(0, 10);
      return `${baseUrl}?${openMeteoQuery(place, day, day)}`;
    },
    decode: (body, source) => decodeOpenMeteo(body, place, source),
  };
}

/** `token` is the API's security token (from the environment; redacted in dead letters and errors). */
export function gridFeed(
  area: GridArea,
  startAt: number,
  token: string,
  baseUrl = ENTSOE_API_URL,
): PolledFeed {
  return {
    kind: 'grid',
    key: `grid:${area.operator}`,
    startAt: Math.floor(startAt / DAY) * DAY,
    pageMs: DAY,
    url: (start, end) => {
      const q = entsoeLoadQuery(area, start, end);
      q.set('securityToken', token);
      return `${baseUrl}?${q}`;
    },
    decode: (body, source) => decodeEntsoeLoad(body, area, source),
  };
}
