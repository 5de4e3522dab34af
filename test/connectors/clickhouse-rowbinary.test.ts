import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { rowEncoder } from '../../codecs/clickhouse-encode.js';
import { rowBinaryWriter } from '../../codecs/clickhouse-rowbinary.js';
import { sql } from '../../codecs/sql.js';
import { wellFormed } from '../../codecs/unicode.js';
import { type HotStore, openHotStore, SinkRejectedError } from '../../connectors/clickhouse.js';
import {
  capabilitiesOf,
  type HotTableName,
  type HotTableRows,
  hotTableNames,
  hotTables,
} from '../../schemas/clickhouse.js';
import type { Column, Reading } from '../../schemas/reading.js';
import { chdbDataDir, makeReadings, sampleRows, testDatabase } from './clickhouse-fixtures.js';

/**
 * Inserts on the real 18.16 server: the same rows through RowBinary (chosen from the version) and through
 * TabSeparated (forced), into two databases, read back and compared exactly.
 */

const HOSTILE_TEXT = [
  'tab\there',
  'new\nline',
  'carriage\rreturn',
  'back\\slash \\N \\t',
  'quote \' and "',
  'nul\u0000byte',
  'Zähler-東京-🔌',
  'lone \ud800 high',
  '\udc00',
  '',
  '\\N',
  `${'long ü '.repeat(40)}end`,
];
const HOSTILE_LISTS: readonly (readonly string[])[] = [
  [],
  ["it's", 'tab\tin', 'back\\', 'nl\n', 'nul\u0000', '\ud800', '', 'ü'],
  [''],
];
/** Floats 18.16's text parser reads back exactly: extremes, the smallest normal, -0 (stored as 0). */
const FLOATS = [
  1.7976931348623157e308,
  -1.7976931348623157e308,
  2.2250738585072014e-308,
  -0,
  1e21,
  0.1 + 0.2,
];
/** 1970, and the last second 18.16 reads as text (2105-12-31 23:59:59); fractions are cut. */
const TIMES = [0, 999, 4_291_747_199_000, Date.UTC(2026, 0, 1, 0, 0, 1, 999)];
/** Float and time fields of each table's rows (the strings are found by their type). */
const FLOAT_FIELDS: Partial<Record<HotTableName, readonly string[]>> = {
  readings: ['kw'],
  meters: ['maxKw'],
  hourly_consumption: ['avgKw', 'minKw', 'maxKw', 'stddevKw'],
  daily_peaks: ['totalKw'],
  quality_log: ['avgScore'],
};
const TIME_FIELDS: Partial<Record<HotTableName, readonly string[]>> = {
  readings: ['ts', 'processedAt'],
  faults: ['windowStart', 'windowEnd', 'detectedAt'],
  alerts: ['ts'],
  quarantine: ['ts', 'quarantinedAt'],
  quality_log: ['loggedAt'],
  hourly_consumption: ['hour'],
};

/** The sample rows of `table`, and for each hostile string one more row with it in every string field. */
function hostileRows<K extends HotTableName>(table: K): HotTableRows[K][] {
  const base = sampleRows()[table] as HotTableRows[K][];
  const rows = [...base];
  const first = base[0] as unknown as Record<string, unknown>;
  for (let i = 0; i < HOSTILE_TEXT.length; i++) {
    const row: Record<string, unknown> = { ...first };
    let j = 0;
    for (const [key, value] of Object.entries(first)) {
      // Unique keys: the first string field (part of every key but daily_peaks') numbers the row.
      if (typeof value === 'string')
        row[key] = `${HOSTILE_TEXT[(i + j++) % HOSTILE_TEXT.length]}${j === 1 ? i : ''}`;
      if (Array.isArray(value)) row[key] = HOSTILE_LISTS[i % HOSTILE_LISTS.length];
    }
    for (const key of FLOAT_FIELDS[table] ?? []) row[key] = FLOATS[i % FLOATS.length];
    for (const key of TIME_FIELDS[table] ?? []) row[key] = TIMES[(i + key.length) % TIMES.length];
    if (table === 'readings') {
      row.kw = i % 4 === 0 ? null : row.kw;
      row.measurements = { voltage: FLOATS[i % FLOATS.length], current: null, humidity: -0 };
    }
    if (table === 'quarantine' && i % 3 === 0) row.ts = null;
    if (table === 'meters' && i % 3 === 0) row.maxKw = null;
    if (table === 'quality_log') row.recordsIn = Number.MAX_SAFE_INTEGER;
    if (table === 'daily_peaks') row.rank = 4 + i;
    rows.push(row as unknown as HotTableRows[K]);
  }
  return rows;
}

/** Every column as JSON reads it exactly: times as UInt32 seconds, 64-bit integers as numbers. */
async function storedOf(store: HotStore, table: HotTableName): Promise<unknown[]> {
  const columns = hotTables[table].columns as readonly Column<unknown>[];
  const select = sql.join(
    columns.map((c) =>
      c.type === 'DateTime' || c.type === 'NullableDateTime'
        ? sql`toUInt32(${sql.ident(c.name)}) AS ${sql.ident(c.name)}`
        : sql.ident(c.name),
    ),
  );
  const rows = await store.query<Record<string, unknown>>(
    sql`SELECT ${select} FROM ${store.relation(table)}`,
  );
  return sorted(
    rows.map((row) =>
      columns.map((c) => (c.type === 'UInt64' || c.type === 'Int64' ? Number(row[c.name]) : row[c.name])),
    ),
  );
}

/** What the rows hold, as stored: whole seconds, U+FFFD for a lone surrogate, 0 for -0. */
function expectedOf<K extends HotTableName>(table: K, rows: readonly HotTableRows[K][]): unknown[] {
  const columns = hotTables[table].columns as readonly Column<HotTableRows[K]>[];
  return sorted(
    rows.map((row) =>
      columns.map((c) => {
        const value = c.get(row);
        if (value === null) return null;
        if (c.type === 'DateTime' || c.type === 'NullableDateTime')
          return Math.floor((value as number) / 1000);
        if (typeof value === 'string') return wellFormed(value);
        if (Array.isArray(value)) return value.map(wellFormed);
        if (typeof value === 'boolean') return value ? 1 : 0;
        return value === 0 ? 0 : value;
      }),
    ),
  );
}

function sorted(rows: unknown[][]): unknown[] {
  const key = (row: unknown) => JSON.stringify(row, (_k, v) => (Object.is(v, -0) ? '-0' : v));
  return rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function bodyBytes<K extends HotTableName>(
  table: K,
  rows: readonly HotTableRows[K][],
  format: string,
): number {
  const columns = hotTables[table].columns as readonly Column<HotTableRows[K]>[];
  if (format === 'TabSeparated') return Buffer.byteLength(rowEncoder(columns, 'TabSeparated')(rows));
  let bytes = 0;
  rowBinaryWriter(columns)(rows, 0, rows.length, (piece) => {
    bytes += (piece as Uint8Array).byteLength;
  });
  return bytes;
}

describe('RowBinary inserts into clickhouse-server 18.16', () => {
  const stores: HotStore[] = [];
  let binary: HotStore;
  let text: HotStore;

  function open(label: string, options: Parameters<typeof openHotStore>[1] = {}): HotStore {
    const store = openHotStore(
      { kind: 'server', url: inject('clickhouseUrl'), database: testDatabase(label) },
      options,
    );
    stores.push(store);
    return store;
  }

  beforeAll(async () => {
    binary = open('rowbinary');
    text = open('tsv', { format: 'TabSeparated' });
    await Promise.all([binary.migrate(), text.migrate()]);
  });

  afterAll(async () => {
    for (const store of stores) {
      await store.command(sql`DROP DATABASE IF EXISTS ${sql.ident(store.database)}`).catch(() => {});
      await store.close();
    }
  });

  it.each(hotTableNames)('%s: store what TabSeparated stores, hostile values included', async (table) => {
    const rows = hostileRows(table);
    const [viaBinary, viaText] = await Promise.all([
      binary.insert(table, rows as never),
      text.insert(table, rows as never),
    ]);
    // The default on 18.16 is RowBinary; the forced format is kept.
    expect(viaBinary.bytes).toBe(bodyBytes(table, rows, 'RowBinary'));
    expect(viaText.bytes).toBe(bodyBytes(table, rows, 'TabSeparated'));
    const stored = await storedOf(binary, table);
    expect(stored).toHaveLength(rows.length);
    expect(stored).toEqual(expectedOf(table, rows));
    expect(await storedOf(text, table)).toEqual(stored);
  });

  it('store the doubles and times the pipeline made where 18.16 reads the text back otherwise', async () => {
    // 18.16 reads '3.9595' as 3.9595000000000002 (about one four-decimal value in a thousand is a unit in
    // the last place off), a subnormal as 0, and a time in 2106 wraps round.
    const readings: Reading[] = makeReadings(3).map((r, i) => ({
      ...r,
      kw: [3.9595, 1.5519, Number.MIN_VALUE][i] as number,
      processedAt: i === 2 ? 2 ** 32 * 1000 - 1 : r.processedAt,
    }));
    const table = 'readings';
    const database = open('exact');
    const forcedText = open('exact_tsv', { format: 'TabSeparated' });
    await Promise.all([database.migrate(), forcedText.migrate()]);
    await Promise.all([database.insert(table, readings), forcedText.insert(table, readings)]);
    const stored = await storedOf(database, table);
    expect(stored).toEqual(expectedOf(table, readings));
    expect(await storedOf(forcedText, table)).not.toEqual(stored);
  });

  it('are chosen from the version: 18.16 and later read RowBinary, older servers get text', async () => {
    expect(capabilitiesOf('18.16.1').rowBinary).toBe(true);
    expect(capabilitiesOf('26.7.2.1').rowBinary).toBe(true);
    expect(capabilitiesOf('18.14.18').rowBinary).toBe(false);
    expect(capabilitiesOf('1.1.54394').rowBinary).toBe(false);
    expect((await binary.capabilities()).rowBinary).toBe(true);
  });

  it('choose the format on a store that inserts before it migrates', async () => {
    const fresh = open('fresh');
    await binary.command(sql`CREATE DATABASE ${sql.ident(fresh.database)}`);
    await binary.command(
      sql`CREATE TABLE ${sql.ident(fresh.database, 'alerts')} AS ${binary.relation('alerts')}`,
    );
    const rows = hostileRows('alerts');
    const summary = await fresh.insert('alerts', rows);
    expect(summary.bytes).toBe(bodyBytes('alerts', rows, 'RowBinary'));
    expect(await storedOf(fresh, 'alerts')).toEqual(expectedOf('alerts', rows));
  });

  it('are refused by chDB when asked for, which reads no RowBinary from its spool', () => {
    const dir = chdbDataDir();
    try {
      expect(() => openHotStore({ kind: 'chdb', path: dir.path }, { format: 'RowBinary' })).toThrow(
        SinkRejectedError,
      );
    } finally {
      dir.remove();
    }
  });
});
