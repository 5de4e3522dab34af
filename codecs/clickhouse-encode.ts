/**
 * Row encoding for ClickHouse inserts, driven by the column lists of `schemas/reading.ts`.
 *
 * Rows become one text body in a line-oriented format that both engines parse natively, handed
 * on in pieces ({@link RowWriter}) so that a caller can write it out without holding all of it.
 * Each column gets a precompiled cell encoder (a closure over its getter
 * and type), so the per-row loop does no type dispatch. The encoders validate as they go —
 * NaN, ±Infinity, out-of-range integers and times outside DateTime's 1970–2106 range are
 * refused with the row and column named, because the engines would otherwise store `nan`,
 * wrap integers or clamp times without a word.
 */

import { AsyncByteQueue, RecordBatchStreamWriter, Table } from 'apache-arrow';
import { arrowSchemaOf, recordBatchFromRows } from '../schemas/arrow.js';
import type { Column, ColumnType } from '../schemas/reading.js';
import { floatText } from './float-text.js';
import { quoteString } from './sql.js';
import { hasLoneSurrogate, wellFormed } from './unicode.js';

/**
 * Insert formats accepted by both engines. (JSONCompactEachRow would be cheaper than
 * JSONEachRow, but 18.16 has no such input format.)
 */
export type RowFormat = 'TabSeparated' | 'JSONEachRow';

/**
 * Every insert format: the text ones, and Arrow's IPC stream, which the engine reads column by column
 * (chDB only: 18.16 has no Arrow input; a modern server would read it too).
 */
export type InsertFormat = RowFormat | 'ArrowStream';

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

/**
 * A string cell. A lone UTF-16 surrogate has no UTF-8 form: it is written as U+FFFD, which is what
 * the UTF-8 encoding of the body would produce anyway, so the row is stored rather than refused.
 */
function text(value: CellValue): string {
  if (typeof value !== 'string') throw new CellError(`expected a string, got ${describe(value)}`);
  return wellFormed(value);
}

function stringArray(value: CellValue): readonly string[] {
  if (!Array.isArray(value)) throw new CellError(`expected an array of strings, got ${describe(value)}`);
  let clean = true;
  for (const item of value as readonly unknown[]) {
    if (typeof item !== 'string')
      throw new CellError(`expected an array of strings, got an item ${typeof item}`);
    if (hasLoneSurrogate(item)) clean = false;
  }
  return clean ? (value as readonly string[]) : (value as readonly string[]).map(text);
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
    case 'LowCardinalityString': {
      // Neighbouring rows often repeat a value (status, tier, season, version): escape it once.
      let last = '';
      let lastEscaped = '';
      return (v) => {
        if (v === last) return lastEscaped;
        lastEscaped = tsvEscape(text(v));
        last = v as string;
        return lastEscaped;
      };
    }
    case 'DateTime':
    case 'NullableDateTime':
      return (v) => dateTimeText(epochSeconds(v));
    case 'Float64':
    case 'NullableFloat64':
      return (v) => floatText(finiteFloat(v));
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

export type JsonCell<Row> = (row: Row) => string | number | null | readonly string[];

/**
 * A column's cell as the text formats check it: the value they write (whole seconds for a time, U+FFFD
 * for a lone surrogate), or a thrown error saying what is wrong. The RowBinary writer writes these values.
 */
export function jsonCell<Row>(column: Column<Row>): JsonCell<Row> {
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

/**
 * Receives a body piece by piece, in order: text whose pieces end at a row's end, or (ArrowStream) the
 * bytes of one IPC stream.
 */
export type TextSink = (piece: string | Uint8Array) => void;

/**
 * Encodes rows `[from, to)` into `sink`, in pieces of about {@link PIECE_CHARS} characters.
 * Nothing is kept: a caller that writes the pieces out holds no copy of the whole body.
 */
export type RowWriter<Row> = (rows: readonly Row[], from: number, to: number, sink: TextSink) => void;

/**
 * Characters gathered before they are handed on. Small enough that the row strings die young
 * (a string of a whole 100,000-row body kept every row alive until the end, and the collector
 * copied them into the old generation), large enough that the per-piece cost is nothing.
 */
const PIECE_CHARS = 64 * 1024;

/**
 * Writes rows `[from, to)` one line each through `line`, in pieces of {@link PIECE_CHARS}. A cell that
 * cannot be encoded throws a `CellError`; it becomes a `RowEncodingError` naming the row and the column
 * (found by encoding that row's cells again, one by one, which only a failing batch pays for).
 */
function piecewiseWriter<Row>(
  columns: readonly Column<Row>[],
  cells: readonly ((row: Row) => unknown)[],
  line: (row: Row) => string,
): RowWriter<Row> {
  return (rows, from, to, sink) => {
    let text = '';
    let r = from;
    try {
      for (; r < to; r++) {
        text += `${line(rows[r] as Row)}\n`;
        if (text.length >= PIECE_CHARS) {
          sink(text);
          text = '';
        }
      }
    } catch (error) {
      // Any error of a cell (a CellError, or the quoting of an array item) names its row, so the caller
      // can set that row aside and write the others.
      if (!(error instanceof Error) || r >= to) throw error;
      const row = rows[r] as Row;
      const c = cells.findIndex((cell) => {
        try {
          cell(row);
          return false;
        } catch {
          return true;
        }
      });
      const column = columns[c];
      if (column === undefined) throw error;
      throw new RowEncodingError(error.message, r, column.name, column.type);
    }
    if (text.length > 0) sink(text);
  };
}

function tsvRowWriter<Row>(columns: readonly Column<Row>[]): RowWriter<Row> {
  const n = columns.length;
  const cells = columns.map(tsvCell);
  const first = cells[0] as TsvCell<Row>;
  return piecewiseWriter(columns, cells, (row) => {
    // Plain concatenation: the piece is flattened once when it is written out, which measured ~10%
    // cheaper than joining an array of the row's fields.
    let line = first(row);
    for (let c = 1; c < n; c++) line = `${line}\t${(cells[c] as TsvCell<Row>)(row)}`;
    return line;
  });
}

function jsonRowWriter<Row>(columns: readonly Column<Row>[]): RowWriter<Row> {
  const n = columns.length;
  const cells = columns.map(jsonCell);
  const names = columns.map((c) => c.name);
  return piecewiseWriter(columns, cells, (row) => {
    const record: Record<string, string | number | null | readonly string[]> = {};
    for (let c = 0; c < n; c++) record[names[c] as string] = (cells[c] as JsonCell<Row>)(row);
    return JSON.stringify(record);
  });
}

/**
 * An Arrow IPC stream of one record batch per call. Cells go through the JSON cells' checks first, so
 * what is refused, and the values stored (whole seconds, U+FFFD for a lone surrogate), are those of
 * the text formats; building columns of typed arrays costs about half of writing TSV text, and the
 * engine reads the columns without parsing (measured: 40,514 readings, 400 → 176 ms of JS, 70 → 40 ms
 * of chDB, the same stored rows).
 */
function arrowRowWriter<Row>(columns: readonly Column<Row>[]): RowWriter<Row> {
  const cells = columns.map(jsonCell);
  const checked: Column<Row>[] = columns.map((column, c) => {
    const cell = cells[c] as JsonCell<Row>;
    let get: Column<Row>['get'];
    switch (column.type) {
      case 'DateTime':
      case 'NullableDateTime':
        get = (row) => {
          const seconds = cell(row);
          return seconds === null ? null : (seconds as number) * 1000;
        };
        break;
      case 'String':
        // The Arrow builder checks the type and writes a lone surrogate as U+FFFD, as `text` does.
        get = column.get;
        break;
      case 'LowCardinalityString': {
        // Values come in runs: check and clean each run's value once.
        const source = column.get;
        let last: unknown;
        let lastText: string | undefined;
        get = (row) => {
          const value = source(row);
          if (value !== last || lastText === undefined) {
            lastText = text(value);
            last = value;
          }
          return lastText;
        };
        break;
      }
      default:
        get = cell;
    }
    return { ...column, get };
  });
  const schema = arrowSchemaOf(columns);
  return (rows, from, to, sink) => {
    const part = from === 0 && to === rows.length ? rows : rows.slice(from, to);
    let table: Table;
    try {
      table = new Table(recordBatchFromRows(checked, part, schema));
    } catch (error) {
      // The first row and column that fail their check, as the text writers name them.
      for (let r = from; r < to; r++) {
        for (let c = 0; c < cells.length; c++) {
          try {
            (cells[c] as JsonCell<Row>)(rows[r] as Row);
          } catch (cellError) {
            const column = columns[c] as Column<Row>;
            const reason = cellError instanceof Error ? cellError.message : String(cellError);
            throw new RowEncodingError(reason, r, column.name, column.type);
          }
        }
      }
      throw error;
    }
    writeIpcStream(table, sink);
  };
}

/** Bytes of the IPC stream's small pieces (message headers, prefixes, padding) gathered per sink call. */
const IPC_PIECE_BYTES = 64 * 1024;

/**
 * The writer's output, handed to a sink as it is made: column bodies as they are (views of the
 * batch's buffers, not copied), the small pieces between them gathered into one buffer. `tableToIPC`
 * would first join it all into one copy, the size of the body.
 */
class IpcPieces extends AsyncByteQueue {
  private readonly sink: TextSink;
  // A sink may keep what it is handed (see bodyOf): a flushed buffer is never written again.
  private gathered = new Uint8Array(IPC_PIECE_BYTES);
  private used = 0;

  constructor(sink: TextSink) {
    super();
    this.sink = sink;
  }

  override write(value: Uint8Array): void {
    if (value.byteLength === 0) return;
    if (this.used + value.byteLength <= IPC_PIECE_BYTES) {
      this.gathered.set(value, this.used);
      this.used += value.byteLength;
      return;
    }
    this.flush();
    if (value.byteLength < IPC_PIECE_BYTES) {
      this.gathered.set(value, 0);
      this.used = value.byteLength;
    } else {
      // A column body: a view of the batch's own buffer, which nothing writes to again.
      this.sink(value);
    }
  }

  flush(): void {
    if (this.used === 0) return;
    this.sink(this.gathered.subarray(0, this.used));
    this.gathered = new Uint8Array(IPC_PIECE_BYTES);
    this.used = 0;
  }
}

/** Writes `table` as one Arrow IPC stream into `sink`: the bytes of `tableToIPC(table, 'stream')`. */
export function writeIpcStream(table: Table, sink: TextSink): void {
  const pieces = new IpcPieces(sink);
  const writer = new RecordBatchStreamWriter();
  writer.reset(pieces);
  writer.writeAll(table);
  pieces.flush();
}

/** Builds a row writer for one column list and format; build once per table, reuse per batch. */
export function rowWriter<Row>(columns: readonly Column<Row>[], format: InsertFormat): RowWriter<Row> {
  if (format === 'ArrowStream') return arrowRowWriter(columns);
  return format === 'TabSeparated' ? tsvRowWriter(columns) : jsonRowWriter(columns);
}

/** The body as one string. */
export function rowEncoder<Row>(columns: readonly Column<Row>[], format: RowFormat): RowEncoder<Row> {
  const write = rowWriter(columns, format);
  return (rows, from = 0, to = rows.length) => {
    let out = '';
    write(rows, from, to, (text) => {
      out += text;
    });
    return out;
  };
}
