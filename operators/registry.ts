import type { MeterInfo, MeterType } from '../schemas/reading.js';
import type { MeterRegistry } from './outputs.js';

export interface RegistryLineError {
  /** 1-based physical line of the CSV text (the header is line 1). */
  readonly line: number;
  readonly reason: string;
}

const REQUIRED = ['meter_id', 'region', 'neighborhood', 'meter_type', 'vacant', 'max_kw'] as const;

/** Optional registry column: the meter's interval in minutes, for energy values that do not carry one. */
const INTERVAL_COLUMN = 'interval_minutes';

/**
 * The meter registry CSV (`meter_id,region,neighborhood,meter_type,vacant,max_kw`, optionally
 * `interval_minutes`; columns in any order, other columns ignored) as a registry, with one error per line that could not be taken. Pure: the caller
 * reads the file. A bad line never spoils the good ones; a bad header yields an empty registry and a
 * line-1 error, because without it no column can be trusted.
 *
 * Fields: `meter_type` residential | commercial | unknown (no physical limit) and `vacant` true | false (any case, blanks trimmed);
 * `max_kw` empty (the profile's limit for the meter type applies) or a positive decimal number. Fields
 * may be double-quoted (`"Zone 7, North"`, `""` for a quote); a quoted field cannot span lines. A repeated
 * meter id keeps its first row. Blank lines and a UTF-8 byte order mark are skipped; CRLF is accepted.
 */
export function parseRegistryCsv(text: string): { registry: MeterRegistry; errors: RegistryLineError[] } {
  const registry = new Map<string, MeterInfo>();
  const errors: RegistryLineError[] = [];
  const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split('\n');
  let headerLine = 0;
  while (headerLine < lines.length && stripCr(lines[headerLine]!).trim() === '') headerLine++;
  if (headerLine === lines.length) {
    errors.push({ line: 1, reason: 'empty registry: no header' });
    return { registry, errors };
  }
  const header = splitCsvLine(stripCr(lines[headerLine]!));
  if (typeof header === 'string') {
    errors.push({ line: headerLine + 1, reason: `header: ${header}` });
    return { registry, errors };
  }
  const names = header.map((h) => h.trim().toLowerCase());
  const missing = REQUIRED.filter((c) => !names.includes(c));
  if (missing.length > 0) {
    errors.push({ line: headerLine + 1, reason: `header: missing column(s) ${missing.join(', ')}` });
    return { registry, errors };
  }
  const col = Object.fromEntries(REQUIRED.map((c) => [c, names.indexOf(c)])) as Record<
    (typeof REQUIRED)[number],
    number
  >;
  const intervalColumn = names.indexOf(INTERVAL_COLUMN);
  for (let i = headerLine + 1; i < lines.length; i++) {
    const text = stripCr(lines[i]!);
    if (text.trim() === '') continue;
    const line = i + 1;
    const fields = splitCsvLine(text);
    if (typeof fields === 'string') {
      errors.push({ line, reason: fields });
      continue;
    }
    if (fields.length !== names.length) {
      errors.push({ line, reason: `expected ${names.length} fields, got ${fields.length}` });
      continue;
    }
    const field = (c: (typeof REQUIRED)[number]): string => fields[col[c]]!.trim();
    const problems: string[] = [];
    const meterId = field('meter_id');
    if (meterId === '') problems.push('meter_id is empty');
    const meterType = field('meter_type').toLowerCase();
    if (meterType !== 'residential' && meterType !== 'commercial' && meterType !== 'unknown')
      problems.push(`meter_type must be residential, commercial or unknown, got "${field('meter_type')}"`);
    const vacant = field('vacant').toLowerCase();
    if (vacant !== 'true' && vacant !== 'false')
      problems.push(`vacant must be true or false, got "${field('vacant')}"`);
    const maxKwText = field('max_kw');
    const maxKw = maxKwText === '' ? null : positiveNumber(maxKwText);
    if (Number.isNaN(maxKw)) problems.push(`max_kw must be empty or a positive number, got "${maxKwText}"`);
    const intervalText = intervalColumn === -1 ? '' : fields[intervalColumn]!.trim();
    const intervalMinutes = intervalText === '' ? null : positiveNumber(intervalText);
    if (Number.isNaN(intervalMinutes))
      problems.push(`interval_minutes must be empty or a positive number, got "${intervalText}"`);
    if (problems.length === 0 && registry.has(meterId))
      problems.push(`duplicate meter_id ${meterId}: the first row is kept`);
    if (problems.length > 0) {
      errors.push({ line, reason: problems.join('; ') });
      continue;
    }
    registry.set(meterId, {
      meterId,
      region: field('region'),
      neighborhood: field('neighborhood'),
      meterType: meterType as MeterType,
      vacant: vacant === 'true',
      maxKw,
      ...(intervalMinutes === null ? {} : { intervalMinutes }),
    });
  }
  return { registry, errors };
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** A positive finite decimal number, else NaN. `Number()` alone would take `0x10`, `Infinity`, `1e999`. */
function positiveNumber(text: string): number {
  if (!/^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return Number.NaN;
  const v = Number(text);
  return Number.isFinite(v) && v > 0 ? v : Number.NaN;
}

/** Fields of one CSV line (RFC 4180 quoting within the line), or the reason it cannot be split. */
function splitCsvLine(line: string): string[] | string {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line.charCodeAt(i) === 34 /* " */) {
      let value = '';
      let j = i + 1;
      for (;;) {
        const q = line.indexOf('"', j);
        if (q < 0) return 'unterminated quoted field';
        value += line.slice(j, q);
        if (line.charCodeAt(q + 1) === 34) {
          value += '"';
          j = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      fields.push(value);
      if (i === line.length) return fields;
      if (line.charCodeAt(i) !== 44 /* , */) return 'text after a closing quote';
      i++;
    } else {
      const comma = line.indexOf(',', i);
      const end = comma < 0 ? line.length : comma;
      const value = line.slice(i, end);
      if (value.includes('"')) return 'quote inside an unquoted field';
      fields.push(value);
      if (comma < 0) return fields;
      i = comma + 1;
    }
  }
}
