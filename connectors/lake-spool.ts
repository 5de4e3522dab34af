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

/**
 * Where encoded lines go: `bytes[0, at)` holds what is not yet handed on; {@link reserve} hands it to
 * `drain` (a file, in order) when more is asked for than fits. Lines are written into it byte by byte:
 * a string a line, joined and then converted to UTF-8, cost more than the encoding of the values.
 */
export class SpoolBuffer {
  readonly bytes: Buffer;
  /** Bytes of {@link bytes} in use. */
  at = 0;
  /** Bytes handed to `drain` so far. */
  drained = 0;
  private readonly drainTo: (bytes: Uint8Array) => void;

  constructor(size: number, drain: (bytes: Uint8Array) => void) {
    if (!(Number.isSafeInteger(size) && size >= MIN_SPOOL_BUFFER_BYTES)) {
      throw new RangeError(`A spool buffer takes at least ${MIN_SPOOL_BUFFER_BYTES} bytes, got ${size}`);
    }
    this.bytes = Buffer.allocUnsafe(size);
    this.drainTo = drain;
  }

  /** Bytes written so far, drained or not. */
  get length(): number {
    return this.drained + this.at;
  }

  /** Makes room for `n` more bytes, draining what the buffer holds when they would not fit. */
  reserve(n: number): void {
    if (this.at + n > this.bytes.length) this.drain();
  }

  /** Hands what the buffer holds to `drain`. */
  drain(): void {
    if (this.at === 0) return;
    this.drainTo(this.bytes.subarray(0, this.at));
    this.drained += this.at;
    this.at = 0;
  }

  /** Writes `text` as UTF-8 (a lone surrogate becomes U+FFFD); text larger than the buffer goes straight on. */
  writeText(text: string): void {
    // A UTF-16 code unit takes at most 3 bytes of UTF-8.
    const most = text.length * 3;
    if (most > this.bytes.length) {
      this.drain();
      const bytes = Buffer.from(text, 'utf8');
      this.drainTo(bytes);
      this.drained += bytes.length;
      return;
    }
    this.reserve(most);
    this.at += this.bytes.write(text, this.at, 'utf8');
  }
}

/** The smallest spool buffer. */
export const MIN_SPOOL_BUFFER_BYTES = 64 * 1024;

/**
 * Bytes reserved before each field: its comma and the most a field that is not a string takes (a
 * double's shortest text is at most 24 characters, `-1.2345678901234567e-308`).
 */
const FIXED_FIELD_BYTES = 32;

/** Writes one value of a row as its CSV field; throws {@link SpoolValueError}. */
type FieldWriter = (value: CellValue, out: SpoolBuffer) => void;

export interface SpoolColumns {
  /**
   * Writes a row's CSV line, with its newline, into `out`; throws {@link SpoolValueError} having
   * written part of the line (the caller takes it back out).
   */
  readonly writeLine: (row: unknown, out: SpoolBuffer) => void;
  /** The CSV line of a row, with its newline; throws {@link SpoolValueError}. */
  readonly encode: (row: unknown) => string;
  /** `read_csv`'s `columns` argument: each column's name and the type its text is parsed as. */
  readonly readTypes: readonly (readonly [name: string, duckdbType: string])[];
}

const NULL_FIELD = '\\N';
const COMMA = 0x2c;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;

/** The encoder of a column list: each column's getter and field writer, called in column order. */
export function spoolColumnsOf(columns: readonly Column<unknown>[]): SpoolColumns {
  const count = columns.length;
  const gets = columns.map((column) => column.get);
  const fields = columns.map((column) => fieldWriterOf(column));
  const writeLine = (row: unknown, out: SpoolBuffer): void => {
    for (let c = 0; c < count; c++) {
      // Room for the comma and a field that is not a string; a string makes its own.
      out.reserve(FIXED_FIELD_BYTES);
      if (c > 0) out.bytes[out.at++] = COMMA;
      (fields[c] as FieldWriter)((gets[c] as (row: unknown) => CellValue)(row), out);
    }
    out.reserve(1);
    out.bytes[out.at++] = NEWLINE;
  };
  return {
    writeLine,
    encode: (row) => {
      const chunks: Buffer[] = [];
      const out = new SpoolBuffer(MIN_SPOOL_BUFFER_BYTES, (bytes) => chunks.push(Buffer.from(bytes)));
      writeLine(row, out);
      out.drain();
      return Buffer.concat(chunks).toString('utf8');
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
 * as the appender path's: times from epoch milliseconds as microseconds (`make_timestamptz`, no ICU
 * time-zone call), lists from their JSON text.
 */
export function spoolOutputExpression(column: Column<unknown>, ident: string, storedType: string): string {
  switch (column.type) {
    case 'DateTime':
    case 'NullableDateTime':
      return `make_timestamptz(CAST(${ident} AS BIGINT) * 1000)`;
    case 'ArrayString':
      return `from_json(${ident}, '["VARCHAR"]')`;
    default:
      return `CAST(${ident} AS ${storedType})`;
  }
}

function fieldWriterOf(column: Column<unknown>): FieldWriter {
  const name = column.name;
  const nullable = isNullableColumnType(column.type);
  const reject = (expected: string): never => {
    throw new SpoolValueError(name, expected);
  };
  switch (column.type) {
    case 'String':
    case 'LowCardinalityString':
      return (value, out) => {
        if (typeof value !== 'string') reject('a string');
        writeString(value as string, out);
      };
    case 'DateTime':
    case 'NullableDateTime': {
      // Times repeat from row to row (interval starts, processing times): their text is remembered.
      let last = Number.NaN;
      let lastText = '';
      return (value, out) => {
        if (typeof value === 'number' && Number.isFinite(value)) {
          if (!Object.is(value, last)) {
            lastText = numberField(value);
            last = value;
          }
          writeAscii(lastText, out);
        } else if (value === null && nullable) {
          writeNull(out);
        } else {
          reject('epoch milliseconds');
        }
      };
    }
    case 'Float64':
    case 'NullableFloat64':
      return (value, out) => {
        if (typeof value === 'number') writeNumber(value, out);
        else if (value === null && nullable) writeNull(out);
        else reject('a number');
      };
    case 'UInt8':
    case 'UInt32': {
      const max = column.type === 'UInt8' ? 0xff : 0xffff_ffff;
      return (value, out) => {
        const n = typeof value === 'boolean' ? Number(value) : value;
        if (!(typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max)) {
          reject(`an integer in 0..${max}`);
        }
        writeInteger(n as number, out);
      };
    }
    case 'UInt64':
    case 'Int64': {
      const min = column.type === 'UInt64' ? 0 : Number.MIN_SAFE_INTEGER;
      // -0 passes as 0, as BigInt(-0) does on the appender path.
      return (value, out) => {
        if (!(typeof value === 'number' && Number.isSafeInteger(value) && value >= min)) {
          reject('a safe integer');
        }
        writeInteger(value as number, out);
      };
    }
    case 'ArrayString': {
      const list = listFieldEncoder(reject);
      return (value, out) => writeField(list(value), out);
    }
  }
}

/** Strings up to this many characters are copied as they are checked when they are plain ASCII. */
const MAX_COPIED_CHARS = 4096;

/**
 * A string's field: as it is, unless it holds a quote, comma, backslash or control character. Plain
 * ASCII (ids, statuses, sources) is copied as it is checked; anything else is written from its text
 * as {@link stringField} makes it.
 */
function writeString(value: string, out: SpoolBuffer): void {
  const n = value.length;
  if (n <= MAX_COPIED_CHARS) {
    out.reserve(n);
    const bytes = out.bytes;
    const at = out.at;
    let i = 0;
    for (; i < n; i++) {
      const code = value.charCodeAt(i);
      // A backslash too: `\N` alone must be quoted, which stringField does.
      if (code < 0x20 || code >= 0x7f || code === 0x22 || code === COMMA || code === BACKSLASH) break;
      bytes[at + i] = code;
    }
    if (i === n) {
      out.at = at + n;
      return;
    }
  }
  out.writeText(stringField(value));
}

/** Text known to be ASCII and at most {@link FIXED_FIELD_BYTES} long (a number's). */
function writeAscii(text: string, out: SpoolBuffer): void {
  const bytes = out.bytes;
  let at = out.at;
  for (let i = 0; i < text.length; i++) bytes[at++] = text.charCodeAt(i);
  out.at = at;
}

/** A field's text, of any length and characters, as UTF-8. */
function writeField(text: string, out: SpoolBuffer): void {
  if (text.length <= FIXED_FIELD_BYTES) {
    // Its comma took one of the bytes reserved for the field.
    out.reserve(text.length);
    let ascii = true;
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) ascii = false;
    if (ascii) {
      writeAscii(text, out);
      return;
    }
  }
  out.writeText(text);
}

function writeNull(out: SpoolBuffer): void {
  out.bytes[out.at++] = BACKSLASH;
  out.bytes[out.at++] = 0x4e;
}

/**
 * {@link numberField}'s text, written without making a string when the value has at most four
 * decimals and its scaled value is under 1e13 (a meter value): `floatText`'s own fast path, the same
 * digits. Zero takes the slow way, for -0.
 */
function writeNumber(value: number, out: SpoolBuffer): void {
  const k = Math.round(value * 10_000);
  if (k / 10_000 !== value || !(k < 1e13 && k > -1e13) || value === 0) {
    writeAscii(numberField(value), out);
    return;
  }
  const magnitude = k < 0 ? -k : k;
  const whole = Math.floor(magnitude / 10_000);
  if (k < 0) out.bytes[out.at++] = 0x2d;
  // The whole part is under 1e9: writeInteger's 32-bit path.
  writeInteger(whole, out);
  let rest = magnitude - whole * 10_000;
  if (rest === 0) return;
  // The decimals digit by digit, trailing zeros left out: floatText's `TEN_THOUSANDTHS` text, no string read.
  const bytes = out.bytes;
  let at = out.at;
  bytes[at++] = 0x2e;
  for (let unit = 1000; rest !== 0; unit = (unit / 10) | 0) {
    const digit = (rest / unit) | 0;
    bytes[at++] = 0x30 + digit;
    rest -= digit * unit;
  }
  out.at = at;
}

/** A safe integer's decimal digits, as `String(value)` writes them (-0 as `0`). */
function writeInteger(value: number, out: SpoolBuffer): void {
  const bytes = out.bytes;
  let n = value;
  if (n < 0) {
    bytes[out.at++] = 0x2d;
    n = -n;
  }
  if (n <= 0x7fff_ffff) {
    // Scores, counts, whole kW: 32-bit integer division, cheaper than a double's division and floor.
    let digits = 1;
    for (let rest = n; rest >= 10; rest = (rest / 10) | 0) digits++;
    const end = out.at + digits;
    let at = end;
    do {
      const next = (n / 10) | 0;
      bytes[--at] = 0x30 + (n - next * 10);
      n = next;
    } while (n > 0);
    out.at = end;
    return;
  }
  let digits = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  const end = out.at + digits;
  let at = end;
  do {
    const next = Math.floor(n / 10);
    bytes[--at] = 0x30 + (n - next * 10);
    n = next;
  } while (n > 0);
  out.at = end;
}

/** Single-item lists remembered (flags and reasons come from a small vocabulary) before this many. */
const MAX_REMEMBERED_ITEMS = 1024;

function listFieldEncoder(reject: (expected: string) => never): (value: CellValue) => string {
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
