/**
 * Decoding an AEMO NEM12 (MDFF) file into readings: pure, never throws.
 *
 * - `100` header first (else the whole file is refused), `900` end; `500` (B2B details) accepted and ignored.
 * - `200` opens a data stream: meter id `<NMI>-<NMI suffix>` (e.g. `NEM1201002-E1`), unit of measure, interval
 *   length (a divisor of a day, 1–60 min). Active energy (KWH, WH, MWH) is read; reactive or apparent
 *   energy (KVARH, KVAH …) is not power and its `300` records are quarantined (reason `nem12_unit`), as is
 *   any other unit: nothing is stored apart.
 * - `300` is one day of the stream: value *i* covers [00:00 + i·length, +length) of its date in NEM time
 *   (UTC+10 all year) and becomes a reading at that interval's UTC start, carrying the interval length
 *   (energy becomes power in `standardizeUnits`). Its quality method flags every value: `A` none, `E`
 *   `source_estimated`, `S`/`F` `source_substituted`, `N` a missing interval (a NULL reading), `V` per
 *   interval from the `400` records that follow. A `300` whose number of values contradicts its `200`'s
 *   interval length is quarantined whole with both numbers in the reason.
 * - A later `300` for the same stream and date replaces the earlier one; the earlier one is quarantined
 *   as superseded, so `records = readings + failures` still accounts for every record.
 * - Any record that cannot be read (unknown indicator, bad date, `300` without a valid `200`, bad `400`, a
 *   `400` after a day that is not `V`) is quarantined with its line; the `400` records of a quarantined
 *   `300` go with it. The rest of the file still decodes.
 */
import type { RawReading, SourceQualityFlag } from '../schemas/reading.js';
import {
  type CodecOptions,
  type CodecRecordFailure,
  type CodecResult,
  type FileMeter,
  isoSeconds,
} from './types.js';

/** NEM time is UTC+10 all year (no daylight saving in the market's clock). */
const NEM_OFFSET_MS = 10 * 3_600_000;
const DAY_MINUTES = 1440;
const ENERGY_UNITS: ReadonlySet<string> = new Set(['KWH', 'WH', 'MWH']);
const REACTIVE_UNITS: ReadonlySet<string> = new Set([
  'KVARH',
  'VARH',
  'MVARH',
  'KVAH',
  'VAH',
  'MVAH',
  'KVAR',
  'KVA',
]);
const METHOD = /^([AESFNV])\d*$/;
const INTERVAL_METHOD = /^([AESFN])\d*$/;

const ESTIMATED: readonly SourceQualityFlag[] = Object.freeze(['source_estimated'] as SourceQualityFlag[]);
const SUBSTITUTED: readonly SourceQualityFlag[] = Object.freeze([
  'source_substituted',
] as SourceQualityFlag[]);

/** `null` for a missing interval (`N`), else the flags of the method letter. */
type IntervalQuality = readonly SourceQualityFlag[] | null | undefined;

function qualityOf(letter: string): IntervalQuality {
  switch (letter) {
    case 'E':
      return ESTIMATED;
    case 'S':
    case 'F':
      return SUBSTITUTED;
    case 'N':
      return null;
    default:
      return undefined;
  }
}

interface Stream {
  readonly meterId: string;
  readonly nmi: string;
  readonly unit: string;
  readonly intervalMinutes: number;
  readonly line: number;
  /** Why its `300` records cannot be read (unit not active energy), or null. */
  readonly refusal: string | null;
}

interface Day {
  readonly stream: Stream;
  readonly date: string;
  readonly dayStartUtc: number;
  readonly values: readonly string[];
  readonly method: string;
  /** Per interval for a `V` day, filled by `400` records; unset entries are intervals no `400` covered. */
  readonly perInterval: IntervalQuality[] | null;
  readonly line: number;
  readonly raw: string;
  superseded: boolean;
}

/** True when the text looks like NEM12: its first record is a `100,NEM12` header (or a headerless `200`/`300`). */
export function looksLikeNem12(text: string): boolean {
  const start = firstRecordStart(text);
  return /^(100,NEM12|200,|300,)/.test(text.slice(start, start + 9));
}

function firstRecordStart(text: string): number {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length && text.charCodeAt(i) <= 32) i++;
  return i;
}

export function decodeNem12(text: string, options: CodecOptions): CodecResult {
  const { source, receivedAt } = options;
  const lines = text.split('\n');
  const failures: CodecRecordFailure[] = [];
  const meters = new Map<string, FileMeter>();
  const days: Day[] = [];
  const dayIndex = new Map<string, Day>();
  let stream: Stream | null = null;
  let streamError: string | null = null;
  let pending: Day | null = null;
  let sawHeader = false;
  let sawData = false;
  let afterRejected300 = false;

  const fail = (
    code: CodecRecordFailure['code'],
    reason: string,
    raw: string,
    line: number,
    meterId = '',
  ): void => {
    failures.push({ code, reason, raw, meterId, line, source: `${source}#${line}` });
  };

  const settle = (): void => {
    if (pending === null) return;
    const day = pending;
    pending = null;
    if (day.perInterval !== null) {
      const uncovered: number[] = [];
      for (let i = 0; i < day.values.length; i++) if (day.perInterval[i] === undefined) uncovered.push(i + 1);
      if (uncovered.length > 0) {
        fail(
          'nem12_record',
          `300 record for ${day.stream.meterId} on ${day.date} has quality V but no 400 record for interval(s) ${ranges(uncovered)}`,
          day.raw,
          day.line,
          day.stream.meterId,
        );
        return;
      }
    }
    const key = `${day.stream.meterId}|${day.date}`;
    const earlier = dayIndex.get(key);
    if (earlier !== undefined) {
      earlier.superseded = true;
      fail(
        'nem12_superseded',
        `300 record for ${day.stream.meterId} on ${day.date} replaced by the later one at line ${day.line}`,
        earlier.raw,
        earlier.line,
        day.stream.meterId,
      );
    }
    dayIndex.set(key, day);
    days.push(day);
  };

  for (let index = 0; index < lines.length; index++) {
    const lineNo = index + 1;
    let line = lines[index]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (index === 0 && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    if (line.trim() === '') continue;
    const fields = line.split(',');
    const indicator = fields[0]!.trim();
    if (!sawHeader) {
      if (indicator === '100' && fields[1]?.trim().toUpperCase() === 'NEM12') {
        sawHeader = true;
        continue;
      }
      return {
        ok: false,
        code: 'nem12_file',
        reason: `NEM12 file lacks its 100,NEM12 header: the first record (line ${lineNo}) is ${JSON.stringify(excerpt(line))}`,
      };
    }
    if (indicator !== '400') {
      settle();
      afterRejected300 = false;
    }
    switch (indicator) {
      case '100':
        fail('nem12_record', 'a second 100 header record', line, lineNo);
        break;
      case '200': {
        sawData = true;
        const parsed = parseStream(fields, lineNo);
        if (typeof parsed === 'string') {
          stream = null;
          streamError = `200 record at line ${lineNo} is invalid: ${parsed}`;
          fail('nem12_record', parsed, line, lineNo, fields[1] ?? '');
        } else {
          stream = parsed;
          streamError = null;
        }
        break;
      }
      case '300': {
        sawData = true;
        afterRejected300 = true;
        if (stream === null) {
          fail('nem12_record', streamError ?? '300 record without a preceding 200 record', line, lineNo);
          break;
        }
        if (stream.refusal !== null) {
          fail('nem12_unit', stream.refusal, line, lineNo, stream.meterId);
          break;
        }
        const day = parseDay(stream, fields, line, lineNo);
        if (typeof day === 'string') {
          fail(
            day.startsWith('300 record has') ? 'nem12_interval_count' : 'nem12_record',
            day,
            line,
            lineNo,
            stream.meterId,
          );
          break;
        }
        pending = day;
        afterRejected300 = false;
        break;
      }
      case '400': {
        const day = pending as Day | null;
        if (day === null) {
          // A 400 after a quarantined 300 is part of that record's quarantine; after nothing it stands alone.
          if (!afterRejected300)
            fail('nem12_record', '400 record without a preceding 300 record', line, lineNo);
          break;
        }
        const problem = applyIntervalQuality(day, fields);
        if (problem !== null) fail('nem12_record', problem, line, lineNo, day.stream.meterId);
        break;
      }
      case '500':
      case '900':
        break;
      default:
        fail('nem12_record', `unknown record indicator ${JSON.stringify(excerpt(indicator))}`, line, lineNo);
    }
  }
  settle();
  if (!sawData) {
    return {
      ok: false,
      code: 'nem12_file',
      reason: 'NEM12 file holds no 200 or 300 record: no interval data',
    };
  }

  const readings: RawReading[] = [];
  for (const day of days) {
    if (day.superseded) continue;
    const { stream: s, values, dayStartUtc } = day;
    const stepMs = s.intervalMinutes * 60_000;
    const dayQuality = day.perInterval === null ? qualityOf(day.method) : undefined;
    const readingSource = `${source}#${day.line}`;
    if (!meters.has(s.meterId)) {
      // Only streams with readings are described: a stream whose every day was rejected names no meter.
      meters.set(s.meterId, {
        meterId: s.meterId,
        format: 'nem12',
        group: s.nmi,
        intervalMinutes: s.intervalMinutes,
        unit: s.unit,
      });
    }
    for (let i = 0; i < values.length; i++) {
      const quality = day.perInterval === null ? dayQuality : day.perInterval[i];
      const timestamp = isoSeconds(dayStartUtc + i * stepMs);
      const value = quality === null ? '' : values[i]!.trim();
      const reading: RawReading = {
        meterId: s.meterId,
        timestamp,
        value,
        unit: s.unit,
        raw: `${s.meterId},${timestamp},${values[i]!.trim()},${s.unit}`,
        source: readingSource,
        receivedAt,
        intervalMinutes: s.intervalMinutes,
        ...(quality === null || quality === undefined || quality.length === 0
          ? {}
          : { sourceFlags: quality }),
      };
      readings.push(reading);
    }
  }
  return { ok: true, readings, failures, meters: [...meters.values()] };
}

function parseStream(fields: readonly string[], lineNo: number): Stream | string {
  const nmi = (fields[1] ?? '').trim();
  const suffix = (fields[4] ?? '').trim();
  const unitField = (fields[7] ?? '').trim();
  const unit = unitField.toUpperCase();
  const intervalText = (fields[8] ?? '').trim();
  const intervalMinutes = Number(intervalText);
  const problems: string[] = [];
  if (nmi === '') problems.push('no NMI');
  if (suffix === '') problems.push('no NMI suffix');
  if (
    !/^\d+$/.test(intervalText) ||
    intervalMinutes < 1 ||
    intervalMinutes > 60 ||
    DAY_MINUTES % intervalMinutes !== 0
  ) {
    problems.push(
      `interval length ${JSON.stringify(intervalText)} is not a whole number of minutes dividing a day (1–60)`,
    );
  }
  if (problems.length > 0) return problems.join('; ');
  const meterId = `${nmi}-${suffix}`;
  let refusal: string | null = null;
  if (unit === '') refusal = `data stream ${meterId} (200 record at line ${lineNo}) has no unit of measure`;
  else if (REACTIVE_UNITS.has(unit)) {
    refusal = `data stream ${meterId} is in ${unitField}: reactive or apparent energy, not active energy, so it has no kW; not stored`;
  } else if (!ENERGY_UNITS.has(unit)) {
    refusal = `data stream ${meterId} is in ${unitField}: not an active-energy unit (KWH, WH, MWH); not stored`;
  }
  return { meterId, nmi, unit: unitField, intervalMinutes, line: lineNo, refusal };
}

function parseDay(stream: Stream, fields: readonly string[], raw: string, lineNo: number): Day | string {
  const date = (fields[1] ?? '').trim();
  const dayStart = nemDateUtc(date);
  if (Number.isNaN(dayStart))
    return `300 record has an invalid interval date ${JSON.stringify(excerpt(date))}`;
  const expected = DAY_MINUTES / stream.intervalMinutes;
  // Values run from field 2 up to the quality method: find where the first non-number field sits.
  let count = 0;
  while (2 + count < fields.length && /^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/.test(fields[2 + count]!)) count++;
  const method = (fields[2 + count] ?? '').trim();
  if (count !== expected) {
    return `300 record has ${count} interval values where the 200 record's ${stream.intervalMinutes}-minute interval (line ${stream.line}) needs ${expected}`;
  }
  const match = METHOD.exec(method);
  if (match === null)
    return `300 record's quality method ${JSON.stringify(excerpt(method))} is not one of A, E, S, F, N, V`;
  const letter = match[1]!;
  return {
    stream,
    date,
    dayStartUtc: dayStart,
    values: fields.slice(2, 2 + count),
    method: letter,
    perInterval: letter === 'V' ? new Array<IntervalQuality>(count) : null,
    line: lineNo,
    raw,
    superseded: false,
  };
}

/** Applies a `400,<first>,<last>,<method>,…` record to the pending day; a problem text when it cannot. */
function applyIntervalQuality(day: Day, fields: readonly string[]): string | null {
  const first = Number((fields[1] ?? '').trim());
  const last = Number((fields[2] ?? '').trim());
  const method = (fields[3] ?? '').trim();
  const n = day.values.length;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last < first || last > n) {
    return `400 record's intervals ${fields[1] ?? ''}–${fields[2] ?? ''} are not a range within 1–${n}`;
  }
  const match = INTERVAL_METHOD.exec(method);
  if (match === null)
    return `400 record's quality method ${JSON.stringify(excerpt(method))} is not one of A, E, S, F, N`;
  const quality = qualityOf(match[1]!);
  const perInterval = day.perInterval;
  if (perInterval === null) return `400 record for a 300 record whose quality method is ${day.method}, not V`;
  for (let i = first - 1; i < last; i++) perInterval[i] = quality === undefined ? NO_FLAGS : quality;
  return null;
}

const NO_FLAGS: readonly SourceQualityFlag[] = Object.freeze([] as SourceQualityFlag[]);

/** Epoch ms of 00:00 NEM time (UTC+10) on a `YYYYMMDD` date, or NaN. */
function nemDateUtc(date: string): number {
  if (!/^\d{8}$/.test(date)) return Number.NaN;
  const y = Number(date.slice(0, 4));
  const m = Number(date.slice(4, 6));
  const d = Number(date.slice(6, 8));
  const utc = Date.UTC(y, m - 1, d);
  const check = new Date(utc);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d)
    return Number.NaN;
  return utc - NEM_OFFSET_MS;
}

function ranges(numbers: readonly number[]): string {
  const parts: string[] = [];
  let start = numbers[0]!;
  let prev = start;
  for (let i = 1; i <= numbers.length; i++) {
    const n = numbers[i];
    if (n === prev + 1) {
      prev = n;
      continue;
    }
    parts.push(start === prev ? `${start}` : `${start}–${prev}`);
    if (n !== undefined) start = prev = n;
  }
  return parts.join(', ');
}

function excerpt(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
