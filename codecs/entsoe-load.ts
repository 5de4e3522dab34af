/**
 * The ENTSO-E Transparency Platform adapter for grid status: the only code that knows the shape of its
 * "Actual Total Load" document (documentType A65, processType A16; `GL_MarketDocument` XML with
 * `TimeSeries/Period/{timeInterval, resolution, Point[position, quantity]}` in MW), and of its
 * `Acknowledgement_MarketDocument` answer. Each control area (an EIC code such as `10YDE-VE-------2`,
 * 50Hertz) is mapped to the operator, registry region and capacity configured for it, so every operator's
 * area becomes the same `GridStatus` rows: hourly mean load, capacity, available capacity, load factor.
 * The document publishes neither frequency, voltage nor renewable share: those stay NULL.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { GridStatus } from '../schemas/external.js';

export interface GridArea {
  /** The control area's EIC code as ENTSO-E names it. */
  readonly eic: string;
  readonly operator: string;
  readonly region: string;
  /** The area's capacity in MW (configured: the load document does not carry it). */
  readonly capacityMw: number;
}

/** The query for one area and the UTC range [start, end) (whole hours, epoch ms); the token is added by the caller. */
export function entsoeLoadQuery(area: GridArea, start: number, end: number): URLSearchParams {
  return new URLSearchParams({
    documentType: 'A65',
    processType: 'A16',
    outBiddingZone_Domain: area.eic,
    periodStart: entsoeTime(start),
    periodEnd: entsoeTime(end),
  });
}

/** `yyyyMMddHHmm`, UTC, as the API's period parameters are written. */
function entsoeTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace(/[-T:]/g, '');
}

export type GridPageResult =
  | { readonly ok: true; readonly rows: GridStatus[] }
  | { readonly ok: false; readonly reason: string };

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => name === 'TimeSeries' || name === 'Period' || name === 'Point',
});

const RESOLUTION_MS: Readonly<Record<string, number>> = {
  PT15M: 900_000,
  PT30M: 1_800_000,
  PT60M: 3_600_000,
  PT1H: 3_600_000,
};
const HOUR = 3_600_000;

/** Decodes one response body for `area`; never throws. "No matching data" (Reason 999) is an empty page. */
export function decodeEntsoeLoad(body: string, area: GridArea, source: string): GridPageResult {
  const valid = XMLValidator.validate(body);
  if (valid !== true)
    return {
      ok: false,
      reason: `not well-formed XML (truncated?): ${valid.err.msg} at line ${valid.err.line}`,
    };
  const doc = parser.parse(body) as Record<string, unknown>;
  const ack = doc.Acknowledgement_MarketDocument as Record<string, unknown> | undefined;
  if (ack !== undefined) {
    const reason = (ack.Reason ?? {}) as Record<string, unknown>;
    if (String(reason.code) === '999') return { ok: true, rows: [] };
    return { ok: false, reason: `acknowledgement ${String(reason.code)}: ${String(reason.text ?? '')}` };
  }
  const market = doc.GL_MarketDocument as Record<string, unknown> | undefined;
  if (market === undefined) return { ok: false, reason: 'no GL_MarketDocument' };
  const sums = new Map<number, { total: number; minutes: number }>();
  for (const series of (market.TimeSeries ?? []) as Record<string, unknown>[]) {
    const domain = String(series['outBiddingZone_Domain.mRID'] ?? '');
    if (domain !== area.eic)
      return { ok: false, reason: `time series for area ${domain}, asked ${area.eic}` };
    const unit = String(series['quantity_Measure_Unit.name'] ?? '');
    if (unit !== 'MAW') return { ok: false, reason: `quantity unit ${unit}, expected MAW` };
    for (const period of (series.Period ?? []) as Record<string, unknown>[]) {
      const interval = (period.timeInterval ?? {}) as Record<string, unknown>;
      const start = Date.parse(String(interval.start ?? ''));
      const step = RESOLUTION_MS[String(period.resolution ?? '')];
      if (!Number.isFinite(start)) return { ok: false, reason: 'period without a valid timeInterval.start' };
      if (step === undefined) return { ok: false, reason: `resolution ${String(period.resolution)}` };
      for (const point of (period.Point ?? []) as Record<string, unknown>[]) {
        const position = Number(point.position);
        const quantity = Number(point.quantity);
        if (!Number.isInteger(position) || position < 1 || !Number.isFinite(quantity) || quantity < 0)
          return { ok: false, reason: `point ${JSON.stringify(point)} is not position ≥ 1 and quantity ≥ 0` };
        const at = start + (position - 1) * step;
        const hour = Math.floor(at / HOUR) * HOUR;
        const s = sums.get(hour) ?? { total: 0, minutes: 0 };
        s.total += quantity * step;
        s.minutes += step;
        sums.set(hour, s);
      }
    }
  }
  const rows: GridStatus[] = [];
  for (const [ts, s] of [...sums].sort((a, b) => a[0] - b[0])) {
    const loadMw = Math.round((s.total / s.minutes) * 100) / 100;
    rows.push({
      operator: area.operator,
      region: area.region,
      ts,
      totalCapacityMw: area.capacityMw,
      availableCapacityMw: Math.round((area.capacityMw - loadMw) * 100) / 100,
      loadMw,
      loadFactor: Math.round((loadMw / area.capacityMw) * 10_000) / 10_000,
      frequencyHz: null,
      voltageKv: null,
      renewablePct: null,
      source,
    });
  }
  return { ok: true, rows };
}
