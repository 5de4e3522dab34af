import {
  DataType,
  type Dictionary,
  type List,
  type TimestampMillisecond,
  TimeUnit,
  tableFromIPC,
  tableToIPC,
} from 'apache-arrow';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ArrowConversionError,
  arrowColumnValues,
  arrowSchemaOf,
  quarantineArrowSchema,
  readingArrowSchema,
  recordBatchFromRows,
} from '../../schemas/arrow.js';
import {
  alertColumns,
  type Column,
  dailyPeakColumns,
  faultColumns,
  hourlyColumns,
  meterColumns,
  qualityLogColumns,
  quarantineColumns,
  type Reading,
  type ReadingFlag,
  readingColumns,
} from '../../schemas/reading.js';
import { makeQuarantine, makeReadings } from './parquet-fixtures.js';

const allColumnLists: readonly (readonly Column<never>[])[] = [
  readingColumns,
  quarantineColumns,
  faultColumns,
  alertColumns,
  meterColumns,
  hourlyColumns,
  dailyPeakColumns,
  qualityLogColumns,
];

/** Reads every column of a batch back with the schema's reader and compares with `Column.get`. */
function expectRoundTrip<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): void {
  const batch = recordBatchFromRows(columns, rows);
  expect(batch.numRows).toBe(rows.length);
  for (const column of columns) {
    const vector = batch.getChild(column.name);
    expect(vector, column.name).not.toBeNull();
    const values = arrowColumnValues(vector!, column.type, column.name);
    expect(values, column.name).toEqual(rows.map((row) => column.get(row)));
  }
}

describe('Arrow schema derived from the column lists', () => {
  it('has one field per column, in order, typed and nullable as the column type says', () => {
    for (const columns of allColumnLists) {
      const schema = arrowSchemaOf(columns);
      expect(schema.fields.map((f) => f.name)).toEqual(columns.map((c) => c.name));
      schema.fields.forEach((field, i) => {
        const column = columns[i]!;
        expect(field.nullable, column.name).toBe(column.type.startsWith('Nullable'));
        expect(field.metadata.get('doc')).toBe(column.doc);
      });
    }
    const field = (name: string) => readingArrowSchema.fields.find((f) => f.name === name)!;
    expect(DataType.isUtf8(field('meter_id').type)).toBe(true);
    const status = field('status').type as Dictionary;
    expect(DataType.isDictionary(status)).toBe(true);
    expect(DataType.isUtf8(status.dictionary)).toBe(true);
    expect(status.indices.bitWidth).toBe(32);
    const ts = field('ts').type as TimestampMillisecond;
    expect([ts.unit, ts.timezone]).toEqual([TimeUnit.MILLISECOND, 'UTC']);
    expect(field('kw').nullable).toBe(true);
    expect(String(field('kw').type)).toBe('Float64');
    expect(String(field('quality_score').type)).toBe('Uint8');
    const flags = field('flags').type as List;
    expect(DataType.isList(flags) && DataType.isUtf8(flags.valueType)).toBe(true);
    // Dictionary ids are unique within a schema, as IPC requires.
    const ids = readingArrowSchema.fields.flatMap((f) => (DataType.isDictionary(f.type) ? [f.type.id] : []));
    expect(new Set(ids).size).toBe(ids.length);
    expect(String(quarantineArrowSchema.fields[1]!.type)).toContain('Timestamp');
    expect(quarantineArrowSchema.fields[1]!.nullable).toBe(true);
  });

  it('builds a batch that Arrow itself reads back value for value', () => {
    const readings = makeReadings({ start: Date.UTC(2024, 0, 31, 23), meters: 7, intervals: 5 });
    const batch = recordBatchFromRows(readingColumns, readings, readingArrowSchema);
    for (const [i, r] of readings.entries()) {
      expect(batch.getChild('meter_id')!.get(i)).toBe(r.meterId);
      expect(batch.getChild('ts')!.get(i)).toBe(r.ts);
      expect(batch.getChild('kw')!.get(i)).toBe(r.kw);
      expect(batch.getChild('status')!.get(i)).toBe(r.status);
      expect(batch.getChild('source')!.get(i)).toBe(r.source);
      expect([...batch.getChild('flags')!.get(i)!]).toEqual(r.flags);
      expect(batch.getChild('quality_score')!.get(i)).toBe(r.qualityScore);
    }
    expect(batch.getChild('kw')!.nullCount).toBe(readings.filter((r) => r.kw === null).length);
  });

  it('survives an IPC round trip, so its buffers are well-formed Arrow', () => {
    const rows = makeQuarantine(Date.UTC(2024, 5, 30, 23), 12);
    const batch = recordBatchFromRows(quarantineColumns, rows);
    const table = tableFromIPC(tableToIPC([batch] as never));
    for (const column of quarantineColumns) {
      expect(arrowColumnValues(table.getChild(column.name)!, column.type, column.name), column.name).toEqual(
        rows.map((r) => column.get(r)),
      );
    }
  });

  it('round-trips arbitrary readings: unicode, NULLs, empty and long arrays, times before 1970 and after 2038', () => {
    const flag = fc.constantFrom<ReadingFlag>('spike', 'drop', 'unit_converted', 'MISSING_READING');
    const reading = fc.record<Reading>({
      meterId: fc.string({ unit: 'binary', maxLength: 20 }),
      ts: fc.integer({ min: -8_640_000_000_000, max: 8_640_000_000_000 }),
      kw: fc.option(fc.double(), { nil: null }),
      rawValue: fc.string({ unit: 'grapheme', maxLength: 8 }),
      rawUnit: fc.constantFrom('kW', 'W', 'kw', ''),
      status: fc.constantFrom('measured', 'interpolated', 'missing'),
      flags: fc.array(flag, { maxLength: 4 }),
      warnings: fc.nat(10),
      qualityScore: fc.integer({ min: 0, max: 100 }),
      qualityTier: fc.constantFrom('premium', 'standard', 'quarantine'),
      grade: fc.constantFrom('A', 'B', 'C', 'F'),
      peakClass: fc.constantFrom('peak', 'off_peak', 'standard'),
      season: fc.constantFrom('winter', 'spring', 'summer', 'fall'),
      recordId: fc.string({ unit: 'grapheme-ascii', minLength: 0, maxLength: 64 }),
      source: fc.string(),
      processedAt: fc.integer({ min: 0, max: 2 ** 47 }),
      pipelineVersion: fc.constant('0.1.0'),
    });
    // Lone surrogates have no UTF-8 form; Arrow (like any UTF-8 store) cannot keep them.
    const noLoneSurrogate = (r: Reading) => !/\p{Cs}/u.test(r.meterId + r.source + r.rawValue + r.recordId);
    fc.assert(
      fc.property(fc.array(reading.filter(noLoneSurrogate), { maxLength: 40 }), (rows) => {
        expectRoundTrip(readingColumns, rows);
      }),
      { numRuns: 100 },
    );
  });

  it('names the column and row of a value that does not fit', () => {
    const readings = makeReadings({ start: Date.UTC(2024, 0, 1), meters: 3, intervals: 2 });
    const attempt = (rows: unknown[]) => () => recordBatchFromRows(readingColumns, rows as Reading[]);
    const cases: [Partial<Reading> | Record<string, unknown>, string][] = [
      [{ kw: '1.5' }, 'kw'],
      [{ ts: null }, 'ts'],
      [{ ts: Number.POSITIVE_INFINITY }, 'ts'],
      [{ qualityScore: 256 }, 'quality_score'],
      [{ qualityScore: 1.5 }, 'quality_score'],
      [{ status: null }, 'status'],
      [{ flags: ['spike', 3] }, 'flags'],
      [{ meterId: undefined }, 'meter_id'],
    ];
    for (const [patch, column] of cases) {
      const rows = readings.map((r, i) => (i === 4 ? { ...r, ...patch } : r));
      expect(attempt(rows), column).toThrow(ArrowConversionError);
      expect(attempt(rows), column).toThrow(expect.objectContaining({ column, rowIndex: 4 }));
    }
  });

  it('refuses to read a column of the wrong Arrow type', () => {
    const batch = recordBatchFromRows(readingColumns, makeReadings({ start: 0, meters: 2, intervals: 1 }));
    expect(() => arrowColumnValues(batch.getChild('meter_id')!, 'DateTime', 'meter_id')).toThrow(
      ArrowConversionError,
    );
    expect(() => arrowColumnValues(batch.getChild('kw')!, 'ArrayString', 'kw')).toThrow(ArrowConversionError);
  });
});
