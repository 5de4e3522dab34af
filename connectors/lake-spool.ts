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
  /** The CSV line of a row, with its newline; throws {@link SpoolValueError}. */
  readonly encode: (row: unknown) => string;
  /** `read_csv`'s `columns` argument: each column's name and the type its text is parsed as. */
  readonly readTypes: readonly (readonly [name: string, duckdbType: string])[];
}

// A string is quoted when it holds any of these; the rest go as they are.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must be quoted
const NEEDS_QUOTES = /[",\\\u0000-\u001f\u007f]/;
const NULL_FIELD = '\\N';

export function spoolColumnsOf(columns: readonly Column<unknown>[]): SpoolColumns {
  const encoders = columns.map((column) => ({ get: column.get, field: fieldEncoderOf(column) }));
  const count = encoders.length;
  return {
    encode(row: unknown): string {
      let line = '';
      for (let c = 0; c < count; c++) {
        const e = encoders[c] as { get: (row: unknown) => CellValue; field: FieldEncoder };
        line += c === 0 ? e.field(e.get(row)) : `,${e.field(e.get(row))}`;
      }
      return `${line}\n`;
    },
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
      return (value) => (typeof value === 'string' ? stringField(value) : reject('a string'));
    case 'DateTime':
    case 'NullableDateTime':
      return (value) =>
        typeof value === 'number' && Number.isFinite(value)
          ? numberField(value)
          : value === null && nullable
            ? NULL_FIELD
            : reject('epoch milliseconds');
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
      return (value) => {
        const n = typeof value === 'boolean' ? Number(value) : value;
        return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
          ? String(n)
          : reject(`an integer in 0..${max}`);
      };
    }
    case 'UInt64':
    case 'Int64': {
      const min = column.type === 'UInt64' ? 0 : Number.MIN_SAFE_INTEGER;
      // -0 passes as 0, as BigInt(-0) does on the appender path.
      return (value) =>
        typeof value === 'number' && Number.isSafeInteger(value) && value >= min
          ? String(value)
          : reject('a safe integer');
    }
    case 'ArrayString':
      return (value) => {
        if (!Array.isArray(value)) return reject('an array of strings');
        if (value.length === 0) return '[]';
        for (const item of value as readonly unknown[]) {
          if (typeof item !== 'string') return reject('an array of strings');
        }
        return stringField(listJson(value as readonly string[]));
      };
  }
}

function stringField(value: string): string {
  if (value === NULL_FIELD) return '"\\N"';
  return NEEDS_QUOTES.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

function numberField(value: number): string {
  // String(-0) is "0"; NaN and ±Infinity print as DuckDB reads them.
  return value === 0 && 1 / value < 0 ? '-0' : String(value);
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
