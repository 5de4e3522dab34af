import { tableFromIPC } from 'apache-arrow';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RowEncodingError, rowEncoder, rowWriter } from '../../codecs/clickhouse-encode.js';
import { wellFormed } from '../../codecs/unicode.js';
import { arrowColumnValues } from '../../schemas/arrow.js';
import { type Column, hourlyColumns, type Reading, readingColumns } from '../../schemas/reading.js';
import { EDGE_TIMES, makeReadings } from '../connectors/clickhouse-fixtures.js';

/** The Arrow body of `rows` read back as values, or the error the writer threw. */
function arrowOf<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): unknown {
  const pieces: Uint8Array[] = [];
  try {
    rowWriter(columns, 'ArrowStream')(rows, 0, rows.length, (piece) => pieces.push(piece as Uint8Array));
  } catch (error) {
    return refusal(error);
  }
  const table = tableFromIPC(Buffer.concat(pieces));
  // JSON writes -0 as 0; the Arrow body keeps it (as it always did): compared as 0.
  return columns.map((column, c) =>
    arrowColumnValues(table.getChildAt(c)!, column.type, column.name).map((v) => (Object.is(v, -0) ? 0 : v)),
  );
}

/**
 * What the text formats make of `rows` (JSONEachRow: the same checks as TabSeparated), as the values the
 * Arrow body must hold: times in whole seconds (as ms), strings and list items with U+FFFD for a lone
 * surrogate; or the error they throw.
 */
function textOf<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): unknown {
  let body: string;
  try {
    body = rowEncoder(columns, 'JSONEachRow')(rows);
  } catch (error) {
    return refusal(error);
  }
  const records = body
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return columns.map((column) =>
    records.map((record) => {
      const value = record[column.name];
      switch (column.type) {
        case 'DateTime':
        case 'NullableDateTime':
          return value === null ? null : (value as number) * 1000;
        case 'String':
        case 'LowCardinalityString':
          return wellFormed(value as string);
        case 'ArrayString':
          return (value as string[]).map(wellFormed);
        default:
          return value;
      }
    }),
  );
}

function refusal(error: unknown): unknown {
  const { name, rowIndex, column } = error as RowEncodingError;
  return { name, rowIndex, column };
}

const HOSTILE_NUMBERS = [0, -0, Number.NaN, Infinity, -Infinity, 1e21, -1, 255, 256, 4_294_967_296, 0.5];
const HOSTILE_TEXT = ['', '\\N', 'a\tb', 'nl\n', 'nul\u0000', 'lone \ud800', '\udc00', 'ü 𝄞', "it's"];

describe('ArrowStream bodies for chDB', () => {
  it('hold what the text formats hold, and refuse the row and column they refuse', () => {
    const [base] = makeReadings(1) as [Reading];
    const text = fc.oneof(fc.constantFrom(...HOSTILE_TEXT), fc.string({ unit: 'binary', maxLength: 8 }));
    const reading = fc.record({
      meterId: text,
      ts: fc.oneof(fc.constantFrom(...EDGE_TIMES), fc.integer({ min: 0, max: 2 ** 32 * 1000 })),
      kw: fc.oneof(fc.constantFrom(...HOSTILE_NUMBERS, null), fc.double()),
      status: fc.constantFrom('measured', 'missing', 'lone \ud800'),
      flags: fc.array(text, { maxLength: 3 }),
      qualityScore: fc.oneof(
        fc.constantFrom(...HOSTILE_NUMBERS, true, false),
        fc.integer({ min: 0, max: 255 }),
      ),
      processedAt: fc.constantFrom(...EDGE_TIMES),
    });
    // Mostly valid rows, so that whole batches get through as often as they are refused.
    const row = fc.oneof(
      { weight: 3, arbitrary: fc.constant(base) },
      { weight: 2, arbitrary: reading.map((patch) => ({ ...base, ...patch }) as unknown as Reading) },
    );
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 6 }), (rows) => {
        expect(arrowOf(readingColumns, rows)).toEqual(textOf(readingColumns, rows));
      }),
      { numRuns: 150 },
    );
  });

  it('refuse a NULL where the column takes none, as the text formats do', () => {
    const [base] = makeReadings(1) as [Reading];
    const rows = [base, { ...base, ts: null as unknown as number }];
    expect(arrowOf(readingColumns, rows)).toEqual({ name: 'RowEncodingError', rowIndex: 1, column: 'ts' });
    expect(textOf(readingColumns, rows)).toEqual(arrowOf(readingColumns, rows));
    const hourly = [{ meterId: 'm', hour: 0, kwhTotal: Number.NaN }] as never[];
    expect(arrowOf(hourlyColumns, hourly)).toEqual(textOf(hourlyColumns, hourly));
  });
});
