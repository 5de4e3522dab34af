import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../harness/servers.js';

interface MeterReading {
  meter_id: string;
  read_at: string;
  kwh: number;
}

describe('clickhouse-server (shared test server)', () => {
  let client: ClickHouseClient;
  const database = uniqueName('smoke');

  beforeAll(async () => {
    client = createClient({ url: inject('clickhouseUrl') });
    const version = await client.query({ query: 'SELECT version() AS version', format: 'JSONEachRow' });
    const [{ version: serverVersion }] = await version.json<{ version: string }>();
    console.log(`clickhouse-server ${serverVersion}`);
    expect(serverVersion).toBe(inject('clickhouseServerVersion'));
  });

  afterAll(async () => {
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('stores JSONEachRow rows in a MergeTree table and reads them back', async () => {
    await client.command({ query: `CREATE DATABASE ${database}` });
    await client.command({
      query: `CREATE TABLE ${database}.readings (meter_id String, read_at DateTime('UTC'), kwh Float64)
              ENGINE = MergeTree ORDER BY (meter_id, read_at)`,
    });
    const rows: MeterReading[] = [
      { meter_id: 'm-2', read_at: '2024-03-01 00:15:00', kwh: 0.25 },
      { meter_id: 'm-1', read_at: '2024-03-01 00:00:00', kwh: 1.5 },
      { meter_id: 'm-1', read_at: '2024-03-01 00:15:00', kwh: 2 },
    ];
    await client.insert({ table: `${database}.readings`, values: rows, format: 'JSONEachRow' });

    const result = await client.query({
      query: `SELECT meter_id, read_at, kwh FROM ${database}.readings ORDER BY meter_id, read_at`,
      format: 'JSONEachRow',
    });
    expect(await result.json<MeterReading>()).toEqual([rows[1], rows[2], rows[0]]);

    // 18.16 quotes 64-bit integers in JSON formats; chDB 26.7 does not (see chdb.test.ts).
    const count = await client.query({
      query: `SELECT count() AS rows FROM ${database}.readings`,
      format: 'JSONEachRow',
    });
    expect(await count.json()).toEqual([{ rows: '3' }]);
  });
});
