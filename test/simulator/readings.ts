/**
 * A strict reader for the simulator's files, written from the input contract (not from the simulator's
 * code), so the tests check what a consumer of the files would see.
 */
import type { HourFile } from '../../simulator/index.js';

/** RFC 4180 fields of one line; null when the quoting is broken. */
export function splitCsvLine(line: string): string[] | null {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = '';
      i += 1;
      for (;;) {
        const quote = line.indexOf('"', i);
        if (quote < 0) return null;
        value += line.slice(i, quote);
        if (line[quote + 1] === '"') {
          value += '"';
          i = quote + 2;
          continue;
        }
        i = quote + 1;
        break;
      }
      fields.push(value);
      if (i === line.length) return fields;
      if (line[i] !== ',') return null;
      i += 1;
    } else {
      const comma = line.indexOf(',', i);
      const field = comma < 0 ? line.slice(i) : line.slice(i, comma);
      if (field.includes('"')) return null;
      fields.push(field);
      if (comma < 0) return fields;
      i = comma + 1;
    }
  }
}

const isoPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})?$/;

/** ISO-8601 with `Z`, an offset, or no zone (UTC by contract); null otherwise. */
export function parseTimestamp(text: string): number | null {
  const match = isoPattern.exec(text);
  if (!match) return null;
  const ms = Date.parse(match[2] ? text : `${text}Z`);
  return Number.isFinite(ms) ? ms : null;
}

const wattUnits = new Set(['w', 'watt', 'watts']);
const kilowattUnits = new Set(['kw', 'kilowatt', 'kilowatts', 'kwh']);
export const allowedUnits = new Set([...wattUnits, ...kilowattUnits]);

export type UnitResult = { kw: number } | { problem: 'bad_unit' | 'ambiguous_unit' };

/** The contract's unit rules: W → /1000, kW as is, missing inferred (< 10 kW, > 1000 W). */
export function toKw(value: number, unit: string): UnitResult {
  const key = unit.toLowerCase();
  if (wattUnits.has(key)) return { kw: value / 1000 };
  if (kilowattUnits.has(key)) return { kw: value };
  if (key !== '') return { problem: 'bad_unit' };
  if (value < 10) return { kw: value };
  if (value > 1000) return { kw: value / 1000 };
  return { problem: 'ambiguous_unit' };
}

const numberPattern = /^-?\d+(\.\d+)?$/;

export interface Fleet {
  readonly startMs: number;
  readonly slots: number;
  /** kW per meter and interval; NaN where no usable reading arrived (absent, NULL, rejected). */
  readonly kw: Map<string, Float64Array>;
  /** Intervals whose line had an empty value. */
  readonly nulls: Map<string, Set<number>>;
  /** Lines per meter per file: the layout check. */
  readonly linesPerFileAndMeter: Map<string, number>;
  /** How often each watched line occurs across all files. */
  readonly watched: Map<string, number>;
  /** Lines that do not parse under the contract (column count, quoting, number, timestamp). */
  readonly malformed: string[];
  /** Readings whose meter is not in the given registry. */
  readonly unknown: Map<string, number>;
  readonly units: Map<string, Set<string>>;
}

export function readFleet(
  files: Iterable<HourFile>,
  registryIds: ReadonlySet<string>,
  startMs: number,
  slots: number,
  watch: ReadonlySet<string> = new Set(),
): Fleet {
  const kw = new Map<string, Float64Array>();
  for (const id of registryIds) kw.set(id, new Float64Array(slots).fill(Number.NaN));
  const fleet: Fleet = {
    startMs,
    slots,
    kw,
    nulls: new Map(),
    linesPerFileAndMeter: new Map(),
    watched: new Map(),
    malformed: [],
    unknown: new Map(),
    units: new Map(),
  };
  for (const file of files) {
    const lines = file.csv.split(/\r?\n/);
    const header = lines[0].split(',');
    const columns = header.length;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if (line === '' && i === lines.length - 1) continue;
      if (watch.has(line)) fleet.watched.set(line, (fleet.watched.get(line) ?? 0) + 1);
      const fields = splitCsvLine(line);
      if (!fields || fields.length !== columns) {
        fleet.malformed.push(line);
        continue;
      }
      const [id, stamp, valueText, unit] = fields;
      const ts = parseTimestamp(stamp);
      if (ts === null || (valueText !== '' && !numberPattern.test(valueText))) {
        fleet.malformed.push(line);
        continue;
      }
      const key = `${file.path} ${id}`;
      fleet.linesPerFileAndMeter.set(key, (fleet.linesPerFileAndMeter.get(key) ?? 0) + 1);
      const series = kw.get(id);
      if (!series) {
        fleet.unknown.set(id, (fleet.unknown.get(id) ?? 0) + 1);
        continue;
      }
      const unitsSeen = fleet.units.get(id) ?? new Set<string>();
      unitsSeen.add(unit);
      fleet.units.set(id, unitsSeen);
      const slot = (ts - startMs) / 900_000;
      if (!Number.isInteger(slot) || slot < 0 || slot >= slots) continue; // future or clock-reset
      if (valueText === '') {
        const set = fleet.nulls.get(id) ?? new Set<number>();
        set.add(slot);
        fleet.nulls.set(id, set);
        continue;
      }
      const converted = toKw(Number(valueText), unit);
      if ('kw' in converted) series[slot] = converted.kw;
    }
  }
  return fleet;
}

export function meanAndSd(values: ArrayLike<number>): { mean: number; sd: number; n: number } {
  let n = 0;
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) continue;
    n += 1;
    sum += v;
    squares += v * v;
  }
  const mean = n > 0 ? sum / n : Number.NaN;
  return { mean, sd: Math.sqrt(Math.max(0, squares / n - mean * mean)), n };
}

export function hourlyMeans(series: Float64Array): Float64Array {
  const hours = series.length / 4;
  const out = new Float64Array(hours);
  for (let h = 0; h < hours; h++) {
    let sum = 0;
    let n = 0;
    for (let q = 0; q < 4; q++) {
      const v = series[h * 4 + q];
      if (!Number.isNaN(v)) {
        sum += v;
        n += 1;
      }
    }
    out[h] = n > 0 ? sum / n : Number.NaN;
  }
  return out;
}

export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) continue;
    n += 1;
    sa += a[i];
    sb += b[i];
  }
  const ma = sa / n;
  const mb = sb / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) continue;
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
