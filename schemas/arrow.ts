/**
 * The Arrow form of the schema, derived from the column lists in `reading.ts`: one Arrow type per
 * {@link ColumnType}, a schema per column list, and a builder that turns rows into a `RecordBatch`
 * by filling typed arrays, a block of rows at a time, and wrapping them with `makeData` (no per-value
 * Arrow builder calls: `vectorFromArray` is several times slower). {@link arrowColumnValues} reads a column back into the
 * plain values `Column.get` produces, so a sink can take rows or Arrow batches alike.
 */
import {
  type Data,
  DataType,
  Dictionary,
  Field,
  Float64,
  Int32,
  Int64,
  List,
  makeData,
  makeVector,
  RecordBatch,
  Schema,
  Struct,
  TimestampMillisecond,
  TimeUnit,
  Uint8,
  Uint32,
  Uint64,
  Utf8,
  type Vector,
} from 'apache-arrow';
import { wellFormed } from '../codecs/unicode.js';
import {
  alertColumns,
  type Column,
  type ColumnType,
  dailyPeakColumns,
  faultColumns,
  hourlyColumns,
  meterColumns,
  qualityLogColumns,
  quarantineColumns,
  readingColumns,
} from './reading.js';

/** What `Column.get` returns, and what {@link arrowColumnValues} gives back. */
export type CellValue = string | number | boolean | null | readonly string[];

/** A value does not fit its column's type; names the column and the row, never the value. */
export class ArrowConversionError extends TypeError {
  override readonly name = 'ArrowConversionError';
  readonly column: string;
  /** Index of the offending row in the batch, or -1 when the whole column is at fault. */
  readonly rowIndex: number;

  constructor(message: string, column: string, rowIndex: number) {
    super(`Column ${column}${rowIndex >= 0 ? `, row ${rowIndex}` : ''}: ${message}`);
    this.column = column;
    this.rowIndex = rowIndex;
  }
}

/** Time zone written on every timestamp field: all GreenStream times are UTC instants. */
export const ARROW_TIME_ZONE = 'UTC';

export function isNullableColumnType(type: ColumnType): boolean {
  return type === 'NullableDateTime' || type === 'NullableFloat64';
}

/**
 * The Arrow type of a column type. `LowCardinalityString` becomes a dictionary with Int32
 * indices (the Arrow default key, so any reader accepts it); `dictionaryId` must be unique within
 * one schema.
 */
export function arrowTypeOf(type: ColumnType, dictionaryId = 0): DataType {
  switch (type) {
    case 'String':
      return new Utf8();
    case 'LowCardinalityString':
      return new Dictionary(new Utf8(), new Int32(), dictionaryId);
    case 'DateTime':
    case 'NullableDateTime':
      return new TimestampMillisecond(ARROW_TIME_ZONE);
    case 'Float64':
    case 'NullableFloat64':
      return new Float64();
    case 'UInt8':
      return new Uint8();
    case 'UInt32':
      return new Uint32();
    case 'UInt64':
      return new Uint64();
    case 'Int64':
      return new Int64();
    case 'ArrayString':
      // Elements are never null: a flag or a reason is always a string.
      return new List(new Field('item', new Utf8(), false));
  }
}

/** The Arrow schema of a column list; each field carries the column's `doc` as metadata. */
export function arrowSchemaOf<Row>(columns: readonly Column<Row>[]): Schema {
  return new Schema(
    columns.map(
      (column, index) =>
        new Field(
          column.name,
          arrowTypeOf(column.type, index),
          isNullableColumnType(column.type),
          new Map([['doc', column.doc]]),
        ),
    ),
  );
}

export const readingArrowSchema = arrowSchemaOf(readingColumns);
export const quarantineArrowSchema = arrowSchemaOf(quarantineColumns);
export const hourlyArrowSchema = arrowSchemaOf(hourlyColumns);
export const faultArrowSchema = arrowSchemaOf(faultColumns);
export const alertArrowSchema = arrowSchemaOf(alertColumns);
export const meterArrowSchema = arrowSchemaOf(meterColumns);
export const dailyPeakArrowSchema = arrowSchemaOf(dailyPeakColumns);
export const qualityLogArrowSchema = arrowSchemaOf(qualityLogColumns);

/**
 * Rows whose values every column takes in turn before the next rows: a batch read column by column
 * loads each row object once per column, and 100,000 rows do not stay in the cache between two
 * columns; a block of them does (measured: half the time of reading a day's readings' values).
 */
const BLOCK_ROWS = 1024;

/**
 * Builds one `RecordBatch` from rows, a block of rows at a time, column by column within a block.
 * Throws {@link ArrowConversionError} when a value does not fit its column (a string where a number
 * belongs, a NULL in a non-nullable column, an integer out of range, a non-finite time): the first
 * column, in column order, that holds such a value, at its first such row.
 */
export function recordBatchFromRows<Row>(
  columns: readonly Column<Row>[],
  rows: readonly Row[],
  schema: Schema = arrowSchemaOf(columns),
): RecordBatch {
  let children: Data[];
  try {
    children = columnsOf(columns, rows, schema, BLOCK_ROWS);
  } catch (error) {
    if (!(error instanceof ArrowConversionError)) throw error;
    // The first bad value of a block may lie in a later column than another block's: read again
    // column by column, which throws for the first column that holds one.
    children = columnsOf(columns, rows, schema, rows.length);
  }
  const data = makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children });
  return new RecordBatch(schema, data);
}

function columnsOf<Row>(
  columns: readonly Column<Row>[],
  rows: readonly Row[],
  schema: Schema,
  blockRows: number,
): Data[] {
  const builders = columns.map((column, index) => {
    const field = schema.fields[index];
    if (field === undefined || field.name !== column.name) {
      throw new ArrowConversionError('schema does not match the column list', column.name, -1);
    }
    const get = column.get;
    return columnBuilder(column, field.type, rows.length, (i) => get(rows[i] as Row));
  });
  for (let from = 0; from < rows.length; from += blockRows) {
    const to = Math.min(rows.length, from + blockRows);
    for (const builder of builders) builder.fill(from, to);
  }
  return builders.map((builder) => builder.finish());
}

type ValueAt = (rowIndex: number) => CellValue;

/** One column's values, taken a range of rows at a time, in order; then its Arrow data. */
interface ColumnBuilder {
  fill(from: number, to: number): void;
  finish(): Data;
}

function columnBuilder<Row>(column: Column<Row>, type: DataType, length: number, at: ValueAt): ColumnBuilder {
  const nullable = isNullableColumnType(column.type);
  const name = column.name;
  switch (column.type) {
    case 'String':
      return new Utf8Builder(name, length, at);
    case 'LowCardinalityString':
      return new DictionaryBuilder(name, type as Dictionary<Utf8, Int32>, length, at);
    case 'DateTime':
    case 'NullableDateTime':
      return new TimestampBuilder(name, type as TimestampMillisecond, nullable, length, at);
    case 'Float64':
    case 'NullableFloat64':
      return new Float64Builder(name, type as Float64, nullable, length, at);
    case 'UInt8':
      return new IntegerBuilder(name, type as Uint8, new Uint8Array(length), 0xff, at);
    case 'UInt32':
      return new IntegerBuilder(name, type as Uint32, new Uint32Array(length), 0xffff_ffff, at);
    case 'UInt64':
      return new BigIntegerBuilder(name, type as Uint64, new BigUint64Array(length), 0, at);
    case 'Int64':
      return new BigIntegerBuilder(name, type as Int64, new BigInt64Array(length), -Infinity, at);
    case 'ArrayString':
      return new StringListBuilder(name, type as List<Utf8>, length, at);
  }
}

/** Validity bits, allocated on the first NULL so that columns without NULLs carry no bitmap. */
class NullTracker {
  bitmap: Uint8Array | null = null;
  nullCount = 0;

  constructor(private readonly length: number) {}

  markNull(index: number): void {
    if (this.bitmap === null) {
      this.bitmap = new Uint8Array((this.length + 7) >> 3).fill(0xff);
    }
    this.bitmap[index >> 3] = (this.bitmap[index >> 3] as number) & ~(1 << (index & 7));
    this.nullCount++;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 length as `TextEncoder` produces it (a lone surrogate becomes U+FFFD, 3 bytes). */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && ((text.charCodeAt(i + 1) || 0) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * A string column. Each block's values are concatenated as they are read and the text written as
 * UTF-8 at once, while its strings are still in the cache (converting the whole column's text at
 * the end read every string from memory a second time): when it is ASCII (as many bytes as
 * characters, the usual case) the offsets are the running character counts, with no per-string
 * native call and no array of the strings; otherwise the column is made again by {@link utf8Data}.
 */
class Utf8Builder implements ColumnBuilder {
  private readonly offsets: Int32Array;
  private bytes: Buffer = Buffer.alloc(0);
  private used = 0;
  private ascii = true;

  constructor(
    private readonly name: string,
    private readonly length: number,
    private readonly at: ValueAt,
  ) {
    this.offsets = new Int32Array(length + 1);
  }

  fill(from: number, to: number): void {
    const { offsets, at } = this;
    let text = '';
    let end = offsets[from] as number;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (typeof value !== 'string') throw new ArrowConversionError('expected a string', this.name, i);
      text += value;
      end += value.length;
      offsets[i + 1] = end;
    }
    if (!this.ascii) return;
    // With room for 3 bytes a character, the text takes as many bytes as characters only when ASCII.
    this.reserve(3 * text.length, to);
    const written = this.bytes.write(text, this.used, 'utf8');
    if (written === text.length) this.used += written;
    else this.ascii = false;
  }

  finish(): Data<Utf8> {
    const { length, at } = this;
    if (!this.ascii) {
      const strings = new Array<string>(length);
      for (let i = 0; i < length; i++) strings[i] = at(i) as string;
      return utf8Data(strings, null, 0);
    }
    const data = this.bytes.subarray(0, this.used);
    return makeData({ type: new Utf8(), length, nullCount: 0, valueOffsets: this.offsets, data });
  }

  /** Room for `n` more bytes; a new buffer is sized for the whole column at the rows' mean so far. */
  private reserve(n: number, rowsSoFar: number): void {
    if (this.used + n <= this.bytes.length) return;
    const mean = (this.offsets[rowsSoFar] as number) / rowsSoFar;
    const size = Math.max(2 * this.bytes.length, this.used + n, Math.ceil(mean * this.length) + n);
    const bytes = Buffer.allocUnsafeSlow(size);
    this.bytes.copy(bytes, 0, 0, this.used);
    this.bytes = bytes;
  }
}

/**
 * Encodes all strings with one `join` and one `encode`: per-string encoding costs a native call
 * each. When the text is ASCII (byte count equals character count) the offsets are the string
 * lengths; otherwise each string is made well-formed (a lone surrogate becomes U+FFFD, as UTF-8
 * encoding writes it, and two halves from neighbouring strings must not join into one character
 * of the text) and its UTF-8 length counted.
 */
function utf8Data(strings: readonly string[], nullBitmap: Uint8Array | null, nullCount: number): Data<Utf8> {
  let joined = strings.join('');
  let bytes = encoder.encode(joined);
  const ascii = bytes.length === joined.length;
  if (!ascii) {
    strings = strings.map(wellFormed);
    joined = strings.join('');
    bytes = encoder.encode(joined);
  }
  const offsets = new Int32Array(strings.length + 1);
  let offset = 0;
  for (let i = 0; i < strings.length; i++) {
    const text = strings[i] as string;
    offset += ascii ? text.length : utf8Length(text);
    offsets[i + 1] = offset;
  }
  return makeData({
    type: new Utf8(),
    length: strings.length,
    nullCount,
    nullBitmap: nullBitmap ?? undefined,
    valueOffsets: offsets,
    data: bytes,
  });
}

class DictionaryBuilder implements ColumnBuilder {
  private readonly codes = new Map<string, number>();
  private readonly indices: Int32Array;
  private previous: string | undefined;
  private previousCode = 0;

  constructor(
    private readonly name: string,
    private readonly type: Dictionary<Utf8, Int32>,
    private readonly length: number,
    private readonly at: ValueAt,
  ) {
    this.indices = new Int32Array(length);
  }

  fill(from: number, to: number): void {
    const { codes, indices, at } = this;
    let previous = this.previous;
    let previousCode = this.previousCode;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (typeof value !== 'string') throw new ArrowConversionError('expected a string', this.name, i);
      // Low-cardinality columns come in runs (one status, one season per batch): skip the map then.
      if (value !== previous) {
        let code = codes.get(value);
        if (code === undefined) {
          code = codes.size;
          codes.set(value, code);
        }
        previous = value;
        previousCode = code;
      }
      indices[i] = previousCode;
    }
    this.previous = previous;
    this.previousCode = previousCode;
  }

  finish(): Data {
    const dictionary = makeVector(utf8Data([...this.codes.keys()], null, 0));
    const { type, length, indices } = this;
    return makeData({ type, length, nullCount: 0, data: indices, dictionary });
  }
}

const TWO_POW_32 = 4_294_967_296;

/** A fixed-width column's `Data`: its values and, when any is NULL, their validity bitmap. */
function fixedWidthData(
  type: TimestampMillisecond | Float64,
  length: number,
  nulls: NullTracker,
  data: BigInt64Array | Float64Array,
): Data {
  // One helper for both types: makeData's overloads cannot be picked for a union of them.
  const props = { type, length, nullCount: nulls.nullCount, nullBitmap: nulls.bitmap ?? undefined, data };
  return makeData(props as never);
}

class TimestampBuilder implements ColumnBuilder {
  private readonly values: BigInt64Array;
  // Writing the two 32-bit halves avoids allocating a BigInt per value (little-endian, as Arrow JS).
  private readonly words: Int32Array;
  private readonly nulls: NullTracker;

  constructor(
    private readonly name: string,
    private readonly type: TimestampMillisecond,
    private readonly nullable: boolean,
    private readonly length: number,
    private readonly at: ValueAt,
  ) {
    this.values = new BigInt64Array(length);
    this.words = new Int32Array(this.values.buffer);
    this.nulls = new NullTracker(length);
  }

  fill(from: number, to: number): void {
    const { words, at } = this;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (typeof value === 'number' && Number.isFinite(value)) {
        const ms = Math.round(value);
        const high = Math.floor(ms / TWO_POW_32);
        words[2 * i] = (ms - high * TWO_POW_32) | 0;
        words[2 * i + 1] = high;
      } else if (value === null && this.nullable) {
        this.nulls.markNull(i);
      } else {
        throw new ArrowConversionError('expected epoch milliseconds', this.name, i);
      }
    }
  }

  finish(): Data {
    return fixedWidthData(this.type, this.length, this.nulls, this.values);
  }
}

class Float64Builder implements ColumnBuilder {
  private readonly values: Float64Array;
  private readonly nulls: NullTracker;

  constructor(
    private readonly name: string,
    private readonly type: Float64,
    private readonly nullable: boolean,
    private readonly length: number,
    private readonly at: ValueAt,
  ) {
    this.values = new Float64Array(length);
    this.nulls = new NullTracker(length);
  }

  fill(from: number, to: number): void {
    const { values, at } = this;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (typeof value === 'number') values[i] = value;
      else if (value === null && this.nullable) this.nulls.markNull(i);
      else throw new ArrowConversionError('expected a number', this.name, i);
    }
  }

  finish(): Data {
    return fixedWidthData(this.type, this.length, this.nulls, this.values);
  }
}

class IntegerBuilder<T extends Uint8 | Uint32> implements ColumnBuilder {
  constructor(
    private readonly name: string,
    private readonly type: T,
    private readonly values: T['TArray'],
    private readonly max: number,
    private readonly at: ValueAt,
  ) {}

  fill(from: number, to: number): void {
    const { values, max, at } = this;
    for (let i = from; i < to; i++) {
      const value = at(i);
      const n = typeof value === 'boolean' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
        throw new ArrowConversionError(`expected an integer in 0..${max}`, this.name, i);
      }
      values[i] = n;
    }
  }

  finish(): Data {
    const { type, values } = this;
    return makeData({ type, length: values.length, nullCount: 0, data: values } as never);
  }
}

class BigIntegerBuilder<T extends Uint64 | Int64> implements ColumnBuilder {
  constructor(
    private readonly name: string,
    private readonly type: T,
    private readonly values: BigUint64Array | BigInt64Array,
    private readonly min: number,
    private readonly at: ValueAt,
  ) {}

  fill(from: number, to: number): void {
    const { values, min, at } = this;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
        throw new ArrowConversionError('expected a safe integer', this.name, i);
      }
      values[i] = BigInt(value);
    }
  }

  finish(): Data {
    const { type, values } = this;
    return makeData({ type, length: values.length, nullCount: 0, data: values } as never);
  }
}

class StringListBuilder implements ColumnBuilder {
  private readonly offsets: Int32Array;
  private readonly items: string[] = [];

  constructor(
    private readonly name: string,
    private readonly type: List<Utf8>,
    private readonly length: number,
    private readonly at: ValueAt,
  ) {
    this.offsets = new Int32Array(length + 1);
  }

  fill(from: number, to: number): void {
    const { offsets, items, at } = this;
    for (let i = from; i < to; i++) {
      const value = at(i);
      if (!Array.isArray(value)) {
        throw new ArrowConversionError('expected an array of strings', this.name, i);
      }
      for (const item of value as readonly unknown[]) {
        if (typeof item !== 'string') {
          throw new ArrowConversionError('expected an array of strings', this.name, i);
        }
        items.push(item);
      }
      offsets[i + 1] = items.length;
    }
  }

  finish(): Data {
    const child = utf8Data(this.items, null, 0);
    const { type, length, offsets } = this;
    return makeData({ type, length, nullCount: 0, valueOffsets: offsets, child });
  }
}

/**
 * Reads one Arrow column back into the values `Column.get` would return for `type`: strings,
 * epoch milliseconds, numbers, string arrays, `null` for NULL. Accepts a dictionary or a plain
 * Utf8 for either string type, any timestamp unit, and any integer or float width, so batches made
 * elsewhere (another Arrow writer, an IPC file) load as well as those from
 * {@link recordBatchFromRows}.
 *
 * @throws ArrowConversionError when the Arrow type cannot represent `type`.
 */
export function arrowColumnValues(vector: Vector, type: ColumnType, name = 'column'): CellValue[] {
  const out = new Array<CellValue>(vector.length);
  let base = 0;
  for (const data of vector.data) {
    readData(data, type, name, out, base);
    base += data.length;
  }
  return out;
}

function readData(data: Data, type: ColumnType, name: string, out: CellValue[], base: number): void {
  switch (type) {
    case 'String':
    case 'LowCardinalityString':
      copyInto(out, base, decodeStrings(data, name));
      break;
    case 'DateTime':
    case 'NullableDateTime':
      readTimestamps(data, name, out, base);
      break;
    case 'Float64':
    case 'NullableFloat64':
    case 'UInt8':
    case 'UInt32':
    case 'UInt64':
    case 'Int64':
      readNumbers(data, type, name, out, base);
      break;
    case 'ArrayString':
      readStringLists(data, name, out, base);
      break;
  }
}

function copyInto(out: CellValue[], base: number, values: readonly (string | null)[]): void {
  for (let i = 0; i < values.length; i++) out[base + i] = values[i] as string | null;
}

function decodeStrings(data: Data, name: string): (string | null)[] {
  if (DataType.isDictionary(data.type)) {
    const dictionary = data.dictionary;
    if (dictionary === undefined)
      throw new ArrowConversionError('dictionary column without a dictionary', name, -1);
    const words = arrowColumnValues(dictionary, 'String', name);
    const indices = data.values as ArrayLike<number | bigint>;
    const out = new Array<string | null>(data.length);
    for (let i = 0; i < data.length; i++) {
      out[i] = data.nullCount > 0 && !data.getValid(i) ? null : (words[Number(indices[i])] as string);
    }
    return out;
  }
  if (!DataType.isUtf8(data.type)) {
    throw new ArrowConversionError(`expected Utf8 or a dictionary, got ${String(data.type)}`, name, -1);
  }
  const offsets = data.valueOffsets as Int32Array;
  const bytes = data.values as Uint8Array;
  const first = offsets[0] as number;
  const last = offsets[data.length] as number;
  const text = decoder.decode(bytes.subarray(first, last));
  // ASCII text: character positions equal byte positions, so slice the decoded text instead of
  // decoding each value separately.
  const ascii = text.length === last - first;
  const out = new Array<string | null>(data.length);
  for (let i = 0; i < data.length; i++) {
    if (data.nullCount > 0 && !data.getValid(i)) {
      out[i] = null;
      continue;
    }
    const start = offsets[i] as number;
    const end = offsets[i + 1] as number;
    out[i] = ascii ? text.slice(start - first, end - first) : decoder.decode(bytes.subarray(start, end));
  }
  return out;
}

const MS_PER_UNIT: Readonly<Record<number, number>> = {
  [TimeUnit.SECOND]: 1000,
  [TimeUnit.MILLISECOND]: 1,
  [TimeUnit.MICROSECOND]: 1e-3,
  [TimeUnit.NANOSECOND]: 1e-6,
};

function readTimestamps(data: Data, name: string, out: CellValue[], base: number): void {
  if (!DataType.isTimestamp(data.type)) {
    throw new ArrowConversionError(`expected a timestamp, got ${String(data.type)}`, name, -1);
  }
  const scale = MS_PER_UNIT[data.type.unit] ?? 1;
  const values = data.values as BigInt64Array;
  const words = new Int32Array(values.buffer, values.byteOffset, values.length * 2);
  for (let i = 0; i < data.length; i++) {
    if (data.nullCount > 0 && !data.getValid(i)) {
      out[base + i] = null;
    } else if (scale === 1) {
      out[base + i] = (words[2 * i + 1] as number) * TWO_POW_32 + ((words[2 * i] as number) >>> 0);
    } else {
      out[base + i] = Math.round(Number(values[i]) * scale);
    }
  }
}

function readNumbers(data: Data, type: ColumnType, name: string, out: CellValue[], base: number): void {
  const expected = type === 'Float64' || type === 'NullableFloat64' ? DataType.isFloat : DataType.isInt;
  if (!expected(data.type)) {
    throw new ArrowConversionError(`expected a ${type} column, got ${String(data.type)}`, name, -1);
  }
  const values = data.values as ArrayLike<number | bigint>;
  for (let i = 0; i < data.length; i++) {
    out[base + i] = data.nullCount > 0 && !data.getValid(i) ? null : Number(values[i]);
  }
}

function readStringLists(data: Data, name: string, out: CellValue[], base: number): void {
  const child = data.children[0];
  if (!DataType.isList(data.type) || child === undefined) {
    throw new ArrowConversionError(`expected a list of strings, got ${String(data.type)}`, name, -1);
  }
  const items = decodeStrings(child, name);
  const offsets = data.valueOffsets as Int32Array;
  for (let i = 0; i < data.length; i++) {
    if (data.nullCount > 0 && !data.getValid(i)) {
      out[base + i] = null;
      continue;
    }
    out[base + i] = items.slice(offsets[i] as number, offsets[i + 1] as number) as string[];
  }
}
