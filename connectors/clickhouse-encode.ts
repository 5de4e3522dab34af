/**
 * Row encoding for ClickHouse inserts, driven by the column lists of `schemas/reading.ts`.
 *
 * Rows become one text body in a line-oriented format that both the HTTP server and chDB's raw
 * insert parse natively. Each column gets a precompiled cell encoder (a closure over its getter
 * and type), so the per-row loop does no type dispatch. The encoders validate as they go —
 * NaN, ±Infinity, out-of-range integers and times outside DateTime's 1970–2106 range are
 * refused with the row and column named, because the engines would otherwise store `nan`,
 * wrap integers or clamp times without a word.
 */

import type { Column, ColumnType } from '../schemas/reading.js';
import { quoteString } from './sql.js';

/**
 * Insert formats accepted by both engines and by chDB's raw insert. (JSONCompactEachRow would
 * be cheaper than JSONEachRow, but 18.16 has no such input format.)
 */
export type RowFormat = 'TabSeparated' | 'JSONEachRow';

/** A row could not be encoded; nothing of the batch was sent. */
export class RowEncodingError extends TypeError {
  override readonly name = 'RowEncodingError';
  readonly rowIndex: number;
  readonly column: string;
  readonly columnType: ColumnType;

  constructor(reason: string, rowIndex: number, column: string, columnType: ColumnType) {
    super(`Row ${rowIndex}, column ${column} (${columnType}): ${reason}`);
    this.rowIndex = rowIndex;
    this.column = column;
    this.columnType = columnType;
  }
}

type CellValue = ReturnType<Column<unknown>['get']>;

/** Thrown inside cell encoders; the row loop adds the row index. */
class CellError extends Error {}

const MAX_DATETIME_SECONDS = 2 ** 32;

function epochSeconds(value: CellValue): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new CellError(`expected epoch milliseconds, got ${describe(value)}`);
  }
  const seconds = Math.floor(value / 1000);
  if (seconds < 0 || seconds >= MAX_DATETIME_SECONDS) {
    throw new CellError(`time ${value} ms is outside the DateTime range 1970–2106`);
  }
  return seconds;
}

const dateTimeCache = new Map<number, string>();

/**
 * `YYYY-MM-DD hh:mm:ss` (UTC) rather than epoch digits: ClickHouse 26 reads a number of fewer than ten
 * digits in a DateTime field as a date-time pattern, not as seconds (times before 2001-09-09, such as the
 * clock-reset dates a quarantine row keeps). Readings repeat a few interval starts, so a cache keeps
 * formatting off the profile.
 */
function dateTimeText(seconds: number): string {
  let text = dateTimeCache.get(seconds);
  if (text === undefined) {
    const iso = new Date(seconds * 1000).toISOString();
    text = `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
    if (dateTimeCache.size > 200_000) dateTimeCache.clear();
    dateTimeCache.set(seconds, text);
  }
  return text;
}

function finiteFloat(value: CellValue): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new CellError(`expected a finite number, got ${describe(value)}`);
  }
  return value;
}

const INTEGER_RANGES: Readonly<Record<'UInt8' | 'UInt32' | 'UInt64' | 'Int64', readonly [number, number]>> = {
  UInt8: [0, 255],
  UInt32: [0, 4_294_967_295],
  // Beyond 2^53 a JavaScript number is no longer an exact integer; refuse rather than round.
  UInt64: [0, Number.MAX_SAFE_INTEGER],
  Int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function integerIn(range: readonly [number, number], value: CellValue): number {
  const n = typeof value === 'boolean' ? (value ? 1 : 0) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < range[0] || n > range[1]) {
    throw new CellError(`expected an integer in [${range[0]}, ${range[1]}], got ${describe(value)}`);
  }
  return n;
}

function text(value: CellValue): string {
  if (typeof value !== 'string') throw new CellError(`expected a string, got ${describe(value)}`);
  return value;
}

function stringArray(value: CellValue): readonly string[] {
  if (!Array.isArray(value)) throw new CellError(`expected an array of strings, got ${describe(value)}`);
  for (const item of value as readonly unknown[]) {
    if (typeof item !== 'string')
      throw new CellError(`expected an array of strings, got an item ${typeof item}`);
  }
  return value as readonly string[];
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'number') return `number ${value}`;
  return typeof value;
}

function isNullable(type: ColumnType): boolean {
  return type === 'NullableFloat64' || type === 'NullableDateTime';
}

// ---------------------------------------------------------------------------------------------
// TabSeparated

const TSV_SPECIAL = /[\\\t\n\r\0]/;
const TSV_SPECIAL_ALL = /[\\\t\n\r\0]/g;
const TSV_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '\0': '\\0',
};

function tsvEscapeChar(ch: string): string {
  return TSV_ESCAPES[ch] as string;
}

/** Escapes a string for a TabSeparated field: only the separators, the backslash and NUL. */
export function tsvEscape(value: string): string {
  return TSV_SPECIAL.test(value) ? value.replace(TSV_SPECIAL_ALL, tsvEscapeChar) : value;
}

function tsvArray(items: readonly string[]): string {
  // An Array(String) field in TabSeparated is the quoted literal form, parsed in place (no second
  // level of TSV escaping): `['a\'b','c\td']`. quoteString escapes every tab and newline.
  if (items.length === 0) return '[]';
  let out = `[${quoteString(items[0] as string)}`;
  for (let i = 1; i < items.length; i++) out += `,${quoteString(items[i] as string)}`;
  return `${out}]`;
}

type TsvCell<Row> = (row: Row) => string;

function tsvCell<Row>(column: Column<Row>): TsvCell<Row> {
  const get = column.get;
  const nonNull = tsvNonNull(column.type);
  if (isNullable(column.type)) {
    return (row) => {
      const v = get(row);
      return v === null ? '\\N' : nonNull(v);
    };
  }
  return (row) => nonNull(get(row));
}

function tsvNonNull(type: ColumnType): (value: CellValue) => string {
  switch (type) {
    case 'String':
    case 'LowCardinalityString':
      return (v) => tsvEscape(text(v));
    case 'DateTime':
    case 'NullableDateTime':
      return (v) => dateTimeText(epochSeconds(v));
    case 'Float64':
    case 'NullableFloat64':
      return (v) => String(finiteFloat(v));
    case 'UInt8':
    case 'UInt32':
    case 'UInt64':
    case 'Int64': {
      const range = INTEGER_RANGES[type];
      return (v) => String(integerIn(range, v));
    }
    case 'ArrayString':
      return (v) => tsvArray(stringArray(v));
  }
}

// ---------------------------------------------------------------------------------------------
// JSON formats

type JsonCell<Row> = (row: Row) => string | number | null | readonly string[];

function jsonCell<Row>(column: Column<Row>): JsonCell<Row> {
  const get = column.get;
  const nonNull = jsonNonNull(column.type);
  if (isNullable(column.type)) {
    return (row) => {
      const v = get(row);
      return v === null ? null : nonNull(v);
    };
  }
  return (row) => nonNull(get(row));
}

function jsonNonNull(type: ColumnType): (value: CellValue) => string | number | readonly string[] {
  switch (type) {
    case 'String':
    case 'LowCardinalityString':
      return text;
    case 'DateTime':
    case 'NullableDateTime':
      return epochSeconds;
    case 'Float64':
    case 'NullableFloat64':
      return finiteFloat;
    case 'UInt8':
    case 'UInt32':
    case 'UInt64':
    case 'Int64': {
      const range = INTEGER_RANGES[type];
      return (v) => integerIn(range, v);
    }
    case 'ArrayString':
      return stringArray;
  }
}

// ---------------------------------------------------------------------------------------------

/** Encodes rows `[from, to)` as one text body (every row ends with `\n`). */
export type RowEncoder<Row> = (rows: readonly Row[], from?: number, to?: number) => string;

function wrap<Row>(
  columns: readonly Column<Row>[],
  rowIndex: number,
  error: unknown,
  columnIndex: number,
): never {
  const column = columns[columnIndex];
  if (error instanceof CellError && column) {
    throw new RowEncodingError(error.message, rowIndex, column.name, column.type);
  }
  throw error;
}

/** Builds an encoder for one column list and format; build once per table, reuse per batch. */
export function rowEncoder<Row>(columns: readonly Column<Row>[], format: RowFormat): RowEncoder<Row> {
  const n = columns.length;
  if (format === 'TabSeparated') {
    const cells = columns.map(tsvCell);
    return (rows, from = 0, to = rows.length) => {
      let out = '';
      let r = from;
      let c = 0;
      // One reused array per batch, joined natively: a flat string per row is much cheaper to
      // flatten into the body later than a rope of 2 pieces per cell.
      const fields: string[] = new Array(n);
      try {
        for (; r < to; r++) {
          const row = rows[r] as Row;
          for (c = 0; c < n; c++) fields[c] = (cells[c] as TsvCell<Row>)(row);
          out += `${fields.join('\t')}\n`;
        }
      } catch (error) {
        wrap(columns, r, error, c);
      }
      return out;
    };
  }
  const cells = columns.map(jsonCell);
  const names = columns.map((c) => c.name);
  return (rows, from = 0, to = rows.length) => {
    let out = '';
    let r = from;
    let c = 0;
    try {
      for (; r < to; r++) {
        const row = rows[r] as Row;
        const record: Record<string, string | number | null | readonly string[]> = {};
        for (c = 0; c < n; c++) record[names[c] as string] = (cells[c] as JsonCell<Row>)(row);
        out += `${JSON.stringify(record)}\n`;
      }
    } catch (error) {
      wrap(columns, r, error, c);
    }
    return out;
  };
}
