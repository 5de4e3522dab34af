import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckdbIdent, duckdbLiteral, SqlValueError } from '../../codecs/sql.js';
import { HOSTILE_METER_ID } from './parquet-fixtures.js';

describe('DuckDB literals and identifiers (the Parquet lake’s escaping)', () => {
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;

  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:');
    connection = await instance.connect();
  });

  afterAll(() => {
    connection?.closeSync();
    instance?.closeSync();
  });

  const echo = async (text: string): Promise<unknown> => {
    const reader = await connection.runAndReadAll(`SELECT ${duckdbLiteral(text)} AS v`);
    return reader.getRowObjectsJS()[0]?.v;
  };

  it('reads back exactly the string it quoted, however hostile', async () => {
    const hostile = [
      HOSTILE_METER_ID,
      "'",
      "''",
      "\\'",
      '\\',
      "a'); DROP TABLE t; --",
      'line\nbreak\r\ttab',
      "E'\\x41'",
      '$1 $name ? :x',
      '/* comment */ -- end',
      '/lake/year=2024/month=01/**/*.parquet',
      'zählerstände – 東京 🌍',
      '',
    ];
    for (const text of hostile) expect(await echo(text), JSON.stringify(text)).toBe(text);
    expect(duckdbLiteral("it's")).toBe("'it''s'");
    // Backslashes are ordinary characters in DuckDB, unlike ClickHouse: never doubled.
    expect(duckdbLiteral('a\\b')).toBe("'a\\b'");
  });

  it('round-trips arbitrary text', async () => {
    const text = fc
      .string({ unit: 'binary', maxLength: 40 })
      .filter((s) => !s.includes('\u0000') && !/\p{Cs}/u.test(s));
    await fc.assert(
      fc.asyncProperty(text, async (s) => {
        expect(await echo(s)).toBe(s);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses what DuckDB cannot parse instead of truncating it', () => {
    expect(() => duckdbLiteral('before\u0000after')).toThrow(SqlValueError);
    expect(() => duckdbLiteral('lone \ud800 surrogate')).toThrow(SqlValueError);
    expect(() => duckdbLiteral(42 as unknown as string)).toThrow(SqlValueError);
  });

  it('quotes plain identifiers and refuses anything else', async () => {
    expect(duckdbIdent('meter_id')).toBe('"meter_id"');
    // Quoted, a reserved word is an ordinary name.
    await connection.run(`CREATE TEMP TABLE ${duckdbIdent('select')} (${duckdbIdent('order')} INTEGER)`);
    const reader = await connection.runAndReadAll(`SELECT count(*) AS n FROM ${duckdbIdent('select')}`);
    expect(reader.getRowObjectsJS()).toEqual([{ n: 0n }]);
    for (const bad of ['', 'a"b', 'a b', '1abc', 'x; DROP TABLE t', 'é', 'a'.repeat(256)]) {
      expect(() => duckdbIdent(bad), bad).toThrow(SqlValueError);
    }
  });
});
