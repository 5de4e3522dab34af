import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RowEncodingError, rowEncoder } from '../../codecs/clickhouse-encode.js';
import { rowBinaryWriter } from '../../codecs/clickhouse-rowbinary.js';
import { type Column, type ColumnType, type Reading, readingColumns } from '../../schemas/reading.js';
import { EDGE_TIMES, makeReadings } from '../connectors/clickhouse-fixtures.js';

/** A RowBinary body read back, independently of the writer: one array of values per column. */
function decodeRowBinary(types: readonly ColumnType[], body: Buffer): unknown[][] {
  const values: unknown[][] = types.map(() => []);
  let pos = 0;
  const byte = () => {
    if (pos >= body.length) throw new RangeError(`body ends inside a value at ${pos}`);
    return body[pos++] as number;
  };
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const next = byte();
      value += (next & 0x7f) * scale;
      if (next < 0x80) return value;
      scale *= 128;
    }
  };
  const string = () => {
    const length = varint();
    if (pos + length > body.length) throw new RangeError(`string runs past the body at ${pos}`);
    const text = body.toString('utf8', pos, pos + length);
    pos += length;
    return text;
  };
  const nonNull = (type: ColumnType): unknown => {
    switch (type) {
      case 'String':
      case 'LowCardinalityString':
        return string();
      case 'DateTime':
      case 'NullableDateTime':
      case 'UInt32':
        pos += 4;
        return body.readUInt32LE(pos - 4);
      case 'Float64':
      case 'NullableFloat64':
        pos += 8;
        return body.readDoubleLE(pos - 8);
      case 'UInt8':
        return byte();
      case 'UInt64':
        pos += 8;
        return Number(body.readBigUInt64LE(pos - 8));
      case 'Int64':
        pos += 8;
        return Number(body.readBigInt64LE(pos - 8));
      case 'ArrayString': {
        const count = varint();
        if (count > body.length - pos) throw new RangeError(`array runs past the body at ${pos}`);
        return Array.from({ length: count }, string);
      }
    }
  };
  while (pos < body.length) {
    types.forEach((type, c) => {
      const nullable = type === 'NullableFloat64' || type === 'NullableDateTime';
      if (nullable && byte() === 1) (values[c] as unknown[]).push(null);
      else (values[c] as unknown[]).push(nonNull(type));
    });
  }
  if (pos !== body.length) throw new Error(`body ends inside a row: ${pos} of ${body.length}`);
  return values;
}

function refusal(error: unknown): unknown {
  const { name, rowIndex, column, message } = error as RowEncodingError;
  return { name, rowIndex, column, message };
}

/** The RowBinary body of `rows` read back, or the error the writer threw. */
function rowBinaryOf<Row>(columns: readonly Column<Row>[], rows: readonly Row[], from = 0): unknown {
  const pieces: Uint8Array[] = [];
  try {
    rowBinaryWriter(columns)(rows, from, rows.length, (piece) => pieces.push(piece as Uint8Array));
  } catch (error) {
    return refusal(error);
  }
  return decodeRowBinary(
    columns.map((c) => c.type),
    Buffer.concat(pieces),
  );
}

/**
 * The values the text formats write for `rows` (JSONEachRow: the checks and values of TabSeparated, in a
 * form read back exactly), or the error TabSeparated throws.
 */
function textOf<Row>(columns: readonly Column<Row>[], rows: readonly Row[], from = 0): unknown {
  try {
    rowEncoder(columns, 'TabSeparated')(rows, from);
  } catch (error) {
    return refusal(error);
  }
  const records = rowEncoder(columns, 'JSONEachRow')(rows, from)
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return columns.map((column) => records.map((record) => record[column.name]));
}

const EVERY_TYPE: readonly ColumnType[] = [
  'String',
  'LowCardinalityString',
  'DateTime',
  'NullableDateTime',
  'Float64',
  'NullableFloat64',
  'UInt8',
  'UInt32',
  'UInt64',
  'Int64',
  'ArrayString',
];
type AnyRow = Readonly<Record<string, unknown>>;
const everyTypeColumns: readonly Column<AnyRow>[] = EVERY_TYPE.map((type) => ({
  name: `c_${type}`,
  type,
  get: (row) => row[`c_${type}`] as ReturnType<Column<AnyRow>['get']>,
  doc: type,
}));

const HOSTILE_TEXT = [
  '',
  '\\N',
  'a\tb',
  'nl\n',
  'cr\r',
  'nul\u0000',
  "it's",
  '"dq"',
  'back\\slash',
  'lone \ud800',
  '\udc00',
  'ü 東京 🔌',
  'x'.repeat(42),
  `${'y'.repeat(42)}é`,
  'z'.repeat(200),
  `${'€'.repeat(50)}\ud800`,
];
const HOSTILE_NUMBERS = [
  0,
  -0,
  0.5,
  -1,
  255,
  256,
  4_294_967_295,
  4_294_967_296,
  Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 1,
  Number.MIN_SAFE_INTEGER,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.MIN_VALUE,
  2.2250738585072014e-308,
  1e21,
  Number.NaN,
  Infinity,
  -Infinity,
];

describe('RowBinary bodies for the server', () => {
  it('hold the values the text formats write, and refuse the row and column TabSeparated refuses', () => {
    const text = fc.oneof(
      fc.constantFrom(...HOSTILE_TEXT),
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.string({ unit: 'grapheme-ascii', maxLength: 60 }),
    );
    const valid: AnyRow = {
      c_String: 'MTR-1',
      c_LowCardinalityString: 'measured',
      c_DateTime: 1_710_115_200_000,
      c_NullableDateTime: null,
      c_Float64: 1.25,
      c_NullableFloat64: null,
      c_UInt8: 7,
      c_UInt32: 96,
      c_UInt64: 1000,
      c_Int64: -5,
      c_ArrayString: [],
    };
    const number = fc.oneof(fc.constantFrom(...HOSTILE_NUMBERS), fc.double(), fc.integer());
    const anything = fc.oneof(
      text,
      number,
      fc.constantFrom(...EDGE_TIMES, null, true, false, undefined),
      fc.array(text, { maxLength: 4 }),
    );
    const patch = fc.record(
      {
        c_String: fc.oneof(text, anything),
        c_LowCardinalityString: text,
        c_DateTime: fc.oneof(fc.constantFrom(...EDGE_TIMES), fc.integer({ min: 0, max: 2 ** 32 * 1000 })),
        c_NullableDateTime: fc.constantFrom(...EDGE_TIMES, null),
        c_Float64: number,
        c_NullableFloat64: fc.oneof(number, fc.constant(null)),
        c_UInt8: fc.oneof(number, fc.constantFrom(true, false)),
        c_UInt32: number,
        c_UInt64: number,
        c_Int64: number,
        c_ArrayString: fc.oneof(fc.array(text, { maxLength: 5 }), anything),
      },
      { requiredKeys: [] },
    );
    // Mostly valid rows, so that whole batches get through as often as they are refused.
    const row = fc.oneof(
      { weight: 2, arbitrary: fc.constant(valid) },
      { weight: 3, arbitrary: patch.map((p) => ({ ...valid, ...p })) },
    );
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 8 }), fc.nat(2), (rows, from) => {
        const start = Math.min(from, rows.length - 1);
        expect(rowBinaryOf(everyTypeColumns, rows, start)).toEqual(textOf(everyTypeColumns, rows, start));
      }),
      { numRuns: 400 },
    );
  });

  it('hold readings as the text formats write them, across pieces', () => {
    const rows: Reading[] = makeReadings(20_000).map((r, i) =>
      i % 1000 === 7 ? { ...r, meterId: `Zähler-${'ü'.repeat(i % 90)}\ud800`, raw: 'x' } : r,
    );
    // A string longer than a piece, and one that starts at a piece's end.
    rows[5] = { ...rows[5]!, source: 'big '.repeat(100_000) };
    const pieces: Uint8Array[] = [];
    rowBinaryWriter(readingColumns)(rows, 0, rows.length, (piece) => pieces.push(piece as Uint8Array));
    expect(pieces.length).toBeGreaterThan(5);
    expect(
      decodeRowBinary(
        readingColumns.map((c) => c.type),
        Buffer.concat(pieces),
      ),
    ).toEqual(textOf(readingColumns, rows));
  });
});
