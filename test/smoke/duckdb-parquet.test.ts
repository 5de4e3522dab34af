import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DuckDBConnection, DuckDBInstance, DuckDBTimestampValue } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('DuckDB writing and reading Snappy Parquet', () => {
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;
  let outputDir: string;

  beforeAll(async () => {
    outputDir = await mkdtemp(join(tmpdir(), 'greenstream-duckdb-smoke-'));
    instance = await DuckDBInstance.create(':memory:');
    connection = await instance.connect();
    const version = await connection.runAndReadAll('SELECT version() AS version');
    const [{ version: duckdbVersion }] = version.getRowObjectsJS();
    console.log(`DuckDB ${duckdbVersion}`);
    expect(String(duckdbVersion)).toMatch(/^v\d+\.\d+/);
  });

  afterAll(async () => {
    connection?.closeSync();
    instance?.closeSync();
    if (outputDir !== undefined) await rm(outputDir, { recursive: true, force: true });
  });

  it('appends rows, copies them to a Snappy Parquet file and reads the same rows back', async () => {
    await connection.run('CREATE TABLE readings (meter_id VARCHAR, read_at TIMESTAMP, kwh DOUBLE)');
    const firstReadingMicros = BigInt(Date.UTC(2024, 2, 1)) * 1000n;
    const quarterHourMicros = 15n * 60n * 1_000_000n;
    const rowCount = 1_000;
    const appender = await connection.createAppender('readings');
    for (let i = 0; i < rowCount; i++) {
      appender.appendVarchar(`m-${i % 10}`);
      appender.appendTimestamp(new DuckDBTimestampValue(firstReadingMicros + BigInt(i) * quarterHourMicros));
      appender.appendDouble(i / 4);
      appender.endRow();
    }
    appender.flushSync();
    appender.closeSync();

    const parquetPath = join(outputDir, 'readings.parquet');
    await connection.run('COPY readings TO $path (FORMAT PARQUET, COMPRESSION SNAPPY)', {
      path: parquetPath,
    });
    expect((await stat(parquetPath)).size).toBeGreaterThan(0);

    const summary = await connection.runAndReadAll(
      `SELECT count(*) AS rows, count(DISTINCT meter_id) AS meters, sum(kwh) AS kwh,
              min(read_at)::VARCHAR AS first_read_at, max(read_at)::VARCHAR AS last_read_at
       FROM read_parquet($path)`,
      { path: parquetPath },
    );
    expect(summary.getRowObjectsJS()).toEqual([
      {
        rows: BigInt(rowCount),
        meters: BigInt(10),
        kwh: (rowCount * (rowCount - 1)) / 2 / 4,
        first_read_at: '2024-03-01 00:00:00',
        last_read_at: '2024-03-11 09:45:00',
      },
    ]);

    const sample = await connection.runAndReadAll(
      'SELECT meter_id, kwh FROM read_parquet($path) ORDER BY read_at LIMIT 2',
      { path: parquetPath },
    );
    expect(sample.getRowObjectsJS()).toEqual([
      { meter_id: 'm-0', kwh: 0 },
      { meter_id: 'm-1', kwh: 0.25 },
    ]);

    const codecs = await connection.runAndReadAll(
      'SELECT DISTINCT compression FROM parquet_metadata($path)',
      { path: parquetPath },
    );
    expect(codecs.getRowObjectsJS()).toEqual([{ compression: 'SNAPPY' }]);
  });
});
