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

/** The quoted names a JSON payload carrying measurements contains, built once. */
const QUOTED_NAMES = MEASUREMENT_NAMES.map((n) => `"${n}"`);

/**
 * Re-reads each reading's `raw` for its measurement fields. `decodeReadings` no longer needs this for JSON
 * (it reads them off each element as it decodes, see {@link measurementsOfJson}); kept for a caller with
 * decoded readings only.
 */
function fromJson(decoded: DecodedPayload, text: string): DecodedPayload {
  if (!QUOTED_NAMES.some((quoted) => text.includes(quoted))) return decoded;
  const readings = decoded.readings.map((r): RawReading => {
    let object: unknown;
    try {
      object = JSON.parse(r.raw);
    } catch {
      return r;
    }
    if (typeof object !== 'object' || object === null) return r;
    const sent = measurementsOfJson(object as Record<string, unknown>);
    return sent === undefined ? r : { ...r, measurements: sent };
  });
  return { ...decoded, readings };
}

/**
 * The measurement fields of a decoded JSON reading object (top level only) as the strings sent, undefined
 * when it has none: a string trimmed, a number in its JSON form (a non-finite one, which JSON text can
 * only spell as a huge literal, as `Infinity`), anything else as its JSON text, which the validator
 * refuses with the reason. Null, absent and `""` count as not sent. Read off the element `JSON.parse`
 * made, so one-reading messages are not parsed twice; the same as reading them from `raw` (the element
 * re-serialized with non-finite numbers as strings).
 */
export function measurementsOfJson(object: Readonly<Record<string, unknown>>): Sent | undefined {
  let sent: Sent | undefined;
  for (const name of MEASUREMENT_NAMES) {
    const v = object[name];
    if (v === undefined || v === null || v === '') continue;
    sent ??= {};
    sent[name] =
      typeof v === 'string'
        ? v.trim()
        : typeof v === 'number'
          ? String(v)
          : JSON.stringify(v, nonFiniteAsString);
  }
  return sent;
}

/** As the element's `raw` carries them: `JSON.stringify` would turn them into null. */
function nonFiniteAsString(_key: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;
}
