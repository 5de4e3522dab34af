import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClickHouseClient, type ClickHouseClientConfigOptions, createClient } from '@clickhouse/client';
import { type ChdbConnection, createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('chDB (embedded ClickHouse) through @clickhouse/client', () => {
  let dataDir: string;
  let connection: ChdbConnection;
  let client: ClickHouseClient;

  beforeAll(async () => {
    // chDB binds one data directory per process; vitest gives this file its own process.
    dataDir = await mkdtemp(join(tmpdir(), 'greenstream-chdb-smoke-'));
    connection = createChdbConnection({ path: dataDir });
    // chdb types its connection against @clickhouse/client-common 1.23.0, the client against its own bundled
    // copy of those declarations (1.23.1), whose ClickHouseSettings differ slightly; at runtime they fit.
    client = createClient({
      connection: connection as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>,
    });
    const version = await client.query({ query: 'SELECT version() AS version', format: 'JSONEachRow' });
    const [{ version: engineVersion }] = await version.json<{ version: string }>();
    console.log(`chDB engine ${engineVersion}`);
    expect(engineVersion).toMatch(/^\d+\.\d+/);
  });

  afterAll(async () => {
    await client?.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it('creates a table, inserts through the client and selects back', async () => {
    await client.command({ query: 'CREATE DATABASE IF NOT EXISTS smoke' });
    await client.command({
      query: `CREATE TABLE smoke.readings (meter_id String, read_at DateTime('UTC'), kwh Float64)
              ENGINE = MergeTree ORDER BY (meter_id, read_at)`,
    });
    await client.insert({
      table: 'smoke.readings',
      values: [
        { meter_id: 'm-1', read_at: '2024-03-01 00:15:00', kwh: 2 },
        { meter_id: 'm-1', read_at: '2024-03-01 00:00:00', kwh: 1.5 },
      ],
      format: 'JSONEachRow',
    });
    const result = await client.query({
      query: 'SELECT meter_id, read_at, kwh FROM smoke.readings ORDER BY read_at',
      format: 'JSONEachRow',
    });
    expect(await result.json()).toEqual([
      { meter_id: 'm-1', read_at: '2024-03-01 00:00:00', kwh: 1.5 },
      { meter_id: 'm-1', read_at: '2024-03-01 00:15:00', kwh: 2 },
    ]);
  });

  it('bulk-loads a JSONEachRow buffer through the raw insert path', async () => {
    await client.command({
      query:
        'CREATE TABLE smoke.bulk (meter_id String, seq UInt32, kwh Float64) ENGINE = MergeTree ORDER BY seq',
    });
    const rowCount = 50_000;
    const lines: string[] = [];
    for (let seq = 0; seq < rowCount; seq++) {
      lines.push(JSON.stringify({ meter_id: `m-${seq % 100}`, seq, kwh: seq / 4 }));
    }
    const summary = await connection.chdb.rawInsert({
      table: 'smoke.bulk',
      values: Buffer.from(lines.join('\n')),
      format: 'JSONEachRow',
    });
    expect(summary.rowsWritten).toBe(rowCount);

    const result = await client.query({
      query: 'SELECT count() AS rows, uniqExact(meter_id) AS meters, sum(kwh) AS kwh FROM smoke.bulk',
      format: 'JSONEachRow',
    });
    // chDB 26.7 writes 64-bit integers as JSON numbers; server 18.16 quotes them (see clickhouse-server.test.ts).
    expect(await result.json()).toEqual([
      { rows: rowCount, meters: 100, kwh: (rowCount * (rowCount - 1)) / 2 / 4 },
    ]);
  });
});
