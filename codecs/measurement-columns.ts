/**
 * Reads the optional measurement columns (voltage, current, power_factor, frequency, temperature,
 * humidity) of a decoded readings CSV or JSON onto its readings, as the strings sent: values are judged by
 * `validateMeasurements`, so a bad one is quarantined with its reason rather than refused here. Payloads
 * without any of the columns pass through untouched (one scan of the header or text).
 */
import { MEASUREMENT_NAMES, type MeasurementName, type RawReading } from '../schemas/reading.js';
import type { DecodedPayload } from './decode.js';
import { splitRecord } from './dispatch.js';

type Sent = Partial<Record<MeasurementName, string>>;

export function withMeasurementColumns(decoded: DecodedPayload, text: string, json: boolean): DecodedPayload {
  return json ? fromJson(decoded, text) : fromCsv(decoded, text);
}

function fromCsv(decoded: DecodedPayload, text: string): DecodedPayload {
  const headerEnd = text.indexOf('\n');
  const header = (headerEnd === -1 ? text : text.slice(0, headerEnd))
    .replace(/^\uFEFF/, '')
    .replace(/\r$/, '');
  const lower = header.toLowerCase();
  if (!MEASUREMENT_NAMES.some((n) => lower.includes(n))) return decoded;
  const names = splitRecord(header).map((h) => h.trim().toLowerCase());
  const columns = MEASUREMENT_NAMES.map((n) => [n, names.indexOf(n)] as const).filter(([, i]) => i !== -1);
  if (columns.length === 0) return decoded;
  const readings = decoded.readings.map((r): RawReading => {
    const fields = splitRecord(r.raw);
    const sent: Sent = {};
    let any = false;
    for (const [name, i] of columns) {
      const v = (fields[i] ?? '').trim();
      if (v !== '') {
        sent[name] = v;
        any = true;
      }
    }
    return any ? { ...r, measurements: sent } : r;
  });
  return { ...decoded, readings };
}

function fromJson(decoded: DecodedPayload, text: string): DecodedPayload {
  if (!MEASUREMENT_NAMES.some((n) => text.includes(`"${n}"`))) return decoded;
  const readings = decoded.readings.map((r): RawReading => {
    let object: unknown;
    try {
      object = JSON.parse(r.raw);
    } catch {
      return r;
    }
    if (typeof object !== 'object' || object === null) return r;
    const sent: Sent = {};
    let any = false;
    for (const name of MEASUREMENT_NAMES) {
      const v = (object as Record<string, unknown>)[name];
      if (v === undefined || v === null || v === '') continue;
      // A non-scalar is kept as its JSON text, which the validator refuses with the reason.
      sent[name] = typeof v === 'string' ? v.trim() : typeof v === 'number' ? String(v) : JSON.stringify(v);
      any = true;
    }
    return any ? { ...r, measurements: sent } : r;
  });
  return { ...decoded, readings };
}
