/**
 * The content-detection hook of `decodeReadings`: hands a NEM12 file or a Green Button feed to its codec
 * and adapts the codec's answer to the decoder's result, and reads the optional `interval_minutes` column
 * of a readings CSV. Pure.
 */

import type { RawReading } from '../schemas/reading.js';
import type { DecodedPayload, DecodeResult, MessageDecodeFailure, RecordDecodeFailure } from './decode.js';
import { decodeGreenButton, looksLikeGreenButton } from './green-button.js';
import { decodeNem12, looksLikeNem12 } from './nem12.js';
import { type CodecResult, GREEN_BUTTON_CONTENT_TYPE, NEM12_CONTENT_TYPE } from './types.js';

export interface UtilityDecodeOptions {
  readonly source: string;
  readonly receivedAt: number;
  readonly byteLength: number;
}

/**
 * The decoded NEM12 file or Green Button feed, when the declared type or the content says it is one;
 * `null` for anything else (the CSV and JSON decoders take it).
 */
export function decodeUtilityFormat(
  text: string,
  declared: string | null,
  options: UtilityDecodeOptions,
): DecodeResult | null {
  const { source, receivedAt } = options;
  if (
    declared === GREEN_BUTTON_CONTENT_TYPE ||
    (declared !== NEM12_CONTENT_TYPE && looksLikeGreenButton(text))
  ) {
    return adapt(decodeGreenButton(text, { source, receivedAt }), GREEN_BUTTON_CONTENT_TYPE, options);
  }
  if (declared === NEM12_CONTENT_TYPE || looksLikeNem12(text)) {
    return adapt(decodeNem12(text, { source, receivedAt }), NEM12_CONTENT_TYPE, options);
  }
  return null;
}

function adapt(
  result: CodecResult,
  contentType: typeof NEM12_CONTENT_TYPE | typeof GREEN_BUTTON_CONTENT_TYPE,
  options: UtilityDecodeOptions,
): DecodeResult {
  if (!result.ok) {
    const failure: MessageDecodeFailure = {
      level: 'message',
      code: result.code,
      reason: result.reason,
      source: options.source,
      byteLength: options.byteLength,
    };
    return { ok: false, failure };
  }
  const failures: RecordDecodeFailure[] = result.failures.map((f) => ({ level: 'record', ...f }));
  return {
    ok: true,
    contentType,
    readings: result.readings,
    failures,
    records: result.readings.length + failures.length,
    meters: result.meters,
  };
}

/** How much of a payload the format sniffing reads (a Green Button feed may open with a long comment). */
const SNIFF_BYTES = 64 * 1024;
const sniffDecoder = new TextDecoder('utf-8', { fatal: false });

/** `text/x-nem12` or `application/atom+xml` when the payload's opening says so; null otherwise. */
export function detectUtilityContentType(
  payload: Uint8Array,
): typeof NEM12_CONTENT_TYPE | typeof GREEN_BUTTON_CONTENT_TYPE | null {
  const opening = sniffDecoder.decode(payload.subarray(0, SNIFF_BYTES));
  if (looksLikeGreenButton(opening)) return GREEN_BUTTON_CONTENT_TYPE;
  if (looksLikeNem12(opening)) return NEM12_CONTENT_TYPE;
  return null;
}

/** The optional readings-CSV column giving each reading's interval (for energy units). */
export const INTERVAL_COLUMN = 'interval_minutes';

/**
 * Reads the `interval_minutes` column of a decoded readings CSV onto its readings: a positive number sets
 * the reading's interval, an empty field leaves it to the registry; anything else turns the reading into
 * a record failure (`interval_minutes`), so a typo cannot silently change a kW value. The decoder keeps
 * each record's text in `raw`, so the column is read back from it; payloads without the column pass
 * through untouched.
 */
export function withIntervalColumn(decoded: DecodedPayload, text: string): DecodedPayload {
  const headerEnd = text.indexOf('\n');
  const header = (headerEnd === -1 ? text : text.slice(0, headerEnd)).replace(/^\uFEFF/, '');
  if (!header.toLowerCase().includes(INTERVAL_COLUMN)) return decoded;
  const column = splitRecord(header.replace(/\r$/, '')).findIndex(
    (name) => name.trim().toLowerCase() === INTERVAL_COLUMN,
  );
  if (column === -1) return decoded;
  const readings: RawReading[] = [];
  const failures: RecordDecodeFailure[] = [...decoded.failures];
  for (const r of decoded.readings) {
    const field = (splitRecord(r.raw)[column] ?? '').trim();
    if (field === '') {
      readings.push(r);
      continue;
    }
    const minutes = /^\d+(\.\d+)?$/.test(field) ? Number(field) : Number.NaN;
    if (minutes > 0 && minutes <= 1440) {
      readings.push({ ...r, intervalMinutes: minutes });
      continue;
    }
    // With line references the reading's source already ends in `#<line>`, as a record failure's does.
    const lineRef = /#(\d+)$/.exec(r.source);
    failures.push({
      level: 'record',
      code: 'interval_minutes',
      reason: `interval_minutes ${JSON.stringify(field.slice(0, 32))} is not a number of minutes in (0, 1440]`,
      raw: r.raw,
      meterId: r.meterId,
      line: lineRef === null ? 0 : Number(lineRef[1]),
      source: r.source,
    });
  }
  return { ...decoded, readings, failures };
}

/** Fields of one CSV record (RFC-4180 quotes); the decoder has already checked the record's shape. */
export function splitRecord(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else field += c;
  }
  fields.push(field);
  return fields;
}
