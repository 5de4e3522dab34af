/**
 * The lake's spool format: rows of a lake table encoded as CSV lines that DuckDB's built-in `read_csv`
 * parses back into exactly the values the rows held, and the `read_csv` arguments and column
 * expressions that do so. Encoding validates each value as the appender path does and refuses what it
 * would refuse.
 *
 * The format: comma-separated, `"`-quoted with `""` for a quote, `\N` unquoted for NULL (quoted
 * `"\N"` is the two characters), strings quoted when they hold a quote, comma, backslash or control
 * character (newlines, tabs and NUL survive inside quotes), numbers in JavaScript's shortest round-trip
 * form (`-0`, `NaN` and `Infinity` spelled out), times as epoch milliseconds, string lists as JSON
 * arrays. Text is written as UTF-8, which turns a lone surrogate into U+FFFD, as the appender does.
 */
import { floatText } from '../codecs/float-text.js';
import { hasLoneSurrogate, wellFormed } from '../codecs/unicode.js';
import { type CellValue, isNullableColumnType } from '../schemas/arrow.js';
import { duckdbTypeOf } from '../schemas/parquet.js';
import type { Column } from '../schemas/reading.js';

/** A value the column cannot hold; the caller adds its context (table, row). */
export class SpoolValueError extends Error {
  override readonly name = 'SpoolValueError';
  constructor(
    readonly column: string,
    readonly expected: string,
  ) {
    super(`Expected ${expected}`);
  }
}

/** Encodes one value of a row as its CSV field. */
type FieldEncoder = (value: CellValue) => string;

export interface SpoolColumns {
  /**
   * Appends a row's CSV line, with its newline, to `text` and returns the result; throws
   * {@link SpoolValueError}. Lines are appended to a caller's piece of text rather than made one by
   * one, so that no line is a string of its own.
   */
  readonly appendLine: (text: string, row: unknown) => string;
  /** The CSV line of a row, with its newline; throws {@link SpoolValueError}. */
  readonly encode: (row: unknown) => string;
  /** `read_csv`'s `columns` argument: each column's name and the type its text is parsed as. */
  readonly readTypes: readonly (readonly [name: string, duckdbType: string])[];
}

const NULL_FIELD = '\\N';

/**
 * The encoder of a column list. Each column's encoder remembers its last value and field: rows come
 * time-ordered in batches, so times, statuses, sources and versions repeat from row to row, and a
 * repeated value costs a comparison instead of its formatting and quoting check.
 */
export function spoolColumnsOf(columns: readonly Column<unknown>[]): SpoolColumns {
  const gets = columns.map((column) => column.get);
  const fields = columns.map((column) => fieldEncoderOf(column));
  const count = columns.length;
  // One flat string a row from a reused array: appending field by field made two string nodes per
  // field, garbage the collector had to sweep for every row.
  const line = new Array<string>(count).fill('');
  const appendLine = (text: string, row: unknown): string => {
    for (let c = 0; c < count; c++) {
      line[c] = (fields[c] as FieldEncoder)((gets[c] as (row: unknown) => CellValue)(row));
    }
    return `${text}${line.join(',')}\n`;
  };
  return {
    appendLine,
    encode: (row) => appendLine('', row),
    readTypes: columns.map((c) => [c.name, readTypeOf(c)] as const),
  };
}

/** The type `read_csv` parses a column's text as; {@link spoolOutputExpression} makes the stored type. */
function readTypeOf(column: Column<unknown>): string {
  // Times travel as epoch ms and lists as JSON text; the COPY's SELECT converts them to the lake's types.
  switch (column.type) {
    case 'DateTime':
    case 'NullableDateTime':
      return 'DOUBLE';
    case 'ArrayString':
      return 'VARCHAR';
    default:
      return duckdbTypeOf(column.type);
  }
}

/**
 * The SQL expression of a spooled column as stored in Parquet (`ident` is its quoted name), the same
 * as the appender path's: times through epoch milliseconds, lists from their JSON text.
 */
export function spoolOutputExpression(column: Column<unknown>, ident: string, storedType: string): string {
  switch (column.type) {
    case 'DateTime':
    case 'NullableDateTime':
      return `timezone('UTC', epoch_ms(CAST(${ident} AS BIGINT)))`;
    case 'ArrayString':
      return `from_json(${ident}, '["VARCHAR"]')`;
    default:
      return `CAST(${ident} AS ${storedType})`;
  }
}

function fieldEncoderOf(column: Column<unknown>): FieldEncoder {
  const name = column.name;
  const nullable = isNullableColumnType(column.type);
  const reject = (expected: string): never => {
    throw new SpoolValueError(name, expected);
  };
  switch (column.type) {
    case 'String':
    case 'LowCardinalityString':
      return remembering((value) => (typeof value === 'string' ? stringField(value) : reject('a string')));
    case 'DateTime':
    case 'NullableDateTime':
      return remembering((value) =>
        typeof value === 'number' && Number.isFinite(value)
          ? numberField(value)
          : value === null && nullable
            ? NULL_FIELD
            : reject('epoch milliseconds'),
      );
    case 'Float64':
    case 'NullableFloat64':
      return (value) =>
        typeof value === 'number'
          ? numberField(value)
          : value === null && nullable
            ? NULL_FIELD
            : reject('a number');
    case 'UInt8':
    case 'UInt32': {
      const max = column.type === 'UInt8' ? 0xff : 0xffff_ffff;
      return remembering((value) => {
        const n = typeof value === 'boolean' ? Number(value) : value;
        return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
          ? String(n)
          : reject(`an integer in 0..${max}`);
      });
    }
    case 'UInt64':
    case 'Int64': {
      const min = column.type === 'UInt64' ? 0 : Number.MIN_SAFE_INTEGER;
      // -0 passes as 0, as BigInt(-0) does on the appender path.
      return remembering((value) =>
        typeof value === 'number' && Number.isSafeInteger(value) && value >= min
          ? String(value)
          : reject('a safe integer'),
      );
    }
    case 'ArrayString':
      return listFieldEncoder(reject);
  }
}

/**
 * `encode` that hands back the previous field when a value is the previous value (`Object.is`, so -0
 * and 0 differ and NaN repeats). A value that is refused is never remembered.
 */
function remembering(encode: FieldEncoder): FieldEncoder {
  let last: CellValue | undefined;
  let lastField = '';
  let primed = false;
  return (value) => {
    if (primed && Object.is(value, last)) return lastField;
    lastField = encode(value);
    last = value;
    primed = true;
    return lastField;
  };
}

/** Single-item lists remembered (flags and reasons come from a small vocabulary) before this many. */
const MAX_REMEMBERED_ITEMS = 1024;

function listFieldEncoder(reject: (expected: string) => never): FieldEncoder {
  const single = new Map<string, string>();
  return (value) => {
    if (!Array.isArray(value)) return reject('an array of strings');
    const items = value as readonly unknown[];
    if (items.length === 0) return '[]';
    if (items.length === 1) {
      const item = items[0];
      if (typeof item !== 'string') return reject('an array of strings');
      let field = single.get(item);
      if (field === undefined) {
        field = stringField(listJson([item]));
        if (single.size === MAX_REMEMBERED_ITEMS) single.clear();
        single.set(item, field);
      }
      return field;
    }
    for (const item of items) {
      if (typeof item !== 'string') return reject('an array of strings');
    }
    return stringField(listJson(items as readonly string[]));
  };
}

/** A string's field: as it is, unless it holds a quote, comma, backslash or control character. */
function stringField(value: string): string {
  if (value === NULL_FIELD) return '"\\N"';
  return needsQuotes(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** Whether a string holds `"`, `,`, `\\`, a C0 control character or DEL (a scan: cheaper than a RegExp call). */
function needsQuotes(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x22 || code === 0x2c || code === 0x5c || code === 0x7f) return true;
  }
  return false;
}

/** A number as DuckDB reads it back exactly: JavaScript's shortest round-trip text, `-0` kept. */
export function numberField(value: number): string {
  // String(-0) is "0"; NaN and ±Infinity print as DuckDB reads them.
  return value === 0 && 1 / value < 0 ? '-0' : floatText(value);
}

/**
 * A string list as a JSON array. JSON.stringify escapes a lone surrogate as `\udXXX`, which the JSON
 * reader would not turn into U+FFFD as UTF-8 text does: such items are made well-formed first.
 */
function listJson(items: readonly string[]): string {
  for (const item of items) {
    if (hasLoneSurrogate(item)) return JSON.stringify(items.map(wellFormed));
  }
  return JSON.stringify(items);
}
