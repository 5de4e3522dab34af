import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  type ClickHouseClient,
  type ClickHouseClientConfigOptions,
  ClickHouseError,
  createClient as createClickHouseClient,
  type Logger,
} from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { findFolderOwner, OWNER_FILE, readOwnerLock, writeOwnerLock } from '../../connectors/chdb-lock.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { type MetricsServer, startMetricsServer } from '../../connectors/metrics-server.js';
import { createQueryEndpoint, peerRefusal, type QueryEndpoint } from '../../connectors/query-endpoint.js';
import { MetricsRegistry } from '../../pipelines/metrics.js';
import { queryMetrics } from '../../pipelines/query-metrics.js';

class SilentLogger implements Logger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
}

/** A client that does not print the refusals the tests provoke. */
const createClient = (options: ClickHouseClientConfigOptions) =>
  createClickHouseClient({ ...options, log: { LoggerClass: SilentLogger } });

/** The refusal a client sees, as `{ code, type }`. */
async function refusalOf(
  promise: Promise<unknown>,
): Promise<{ code: string; type: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ClickHouseError);
    const { code, type, message } = error as ClickHouseError;
    return { code, type: type ?? '', message };
  }
  throw new Error('the query was not refused');
}

describe('the worker query endpoint on an embedded store (real chDB, @clickhouse/client)', () => {
  let dir: string;
  let hot: HotStore;
  let endpoint: QueryEndpoint;
  let server: MetricsServer;
  let client: ClickHouseClient;
  const registry = new MetricsRegistry();
  const nonce = 'test-nonce';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-query-endpoint-'));
    hot = openHotStore({ kind: 'chdb', path: dir });
    await hot.migrate();
    await hot.command(sql.raw('CREATE TABLE greenstream.scratch (n UInt64) ENGINE = MergeTree ORDER BY n'));
    endpoint = createQueryEndpoint({
      path: dir,
      database: 'greenstream',
      ownerNonce: nonce,
      limits: { maxResultRows: 1000, maxExecutionSeconds: 2, concurrency: 2 },
      onQuery: queryMetrics(registry),
    });
    server = await startMetricsServer({
      port: 0,
      render: () => registry.render(),
      ready: () => true,
      queries: endpoint.handle,
    });
    client = createClient({ url: server.url });
  });

  afterAll(async () => {
    await client?.close();
    await endpoint?.close();
    await server?.close();
    await hot?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 until the worker holds the store, then pings like ClickHouse', async () => {
    const early = await fetch(`${server.url}/?query=SELECT+1`);
    expect(early.status).toBe(503);
    expect(early.headers.get('x-clickhouse-exception-code')).toBe('210');
    await endpoint.open();
    expect(await client.ping()).toEqual({ success: true });
    const ping = await fetch(`${server.url}/ping`);
    expect(await ping.text()).toBe('Ok.\n');
    expect(ping.headers.get('x-greenstream-owner')).toBe(nonce);
    expect(await (await fetch(`${server.url}/`)).text()).toBe('Ok.\n');
  });

  it('serves reads to @clickhouse/client in the store database, seeing writes as they land', async () => {
    const count = async () => {
      const result = await client.query({ query: 'SELECT count() AS n FROM scratch', format: 'JSONEachRow' });
      return Number((await result.json<{ n: string }>())[0]!.n);
    };
    expect(await count()).toBe(0);
    await hot.command(sql.raw('INSERT INTO greenstream.scratch SELECT number FROM numbers(10)'));
    expect(await count()).toBe(10);
    await hot.command(sql.raw('INSERT INTO greenstream.scratch SELECT number + 10 FROM numbers(5)'));
    expect(await count()).toBe(15);
    const bound = await client.query({
      query: 'SELECT {a:UInt32} + 1 AS x, {s:String} AS s',
      query_params: { a: 41, s: "it's" },
      format: 'JSONEachRow',
    });
    expect(await bound.json()).toEqual([{ x: 42, s: "it's" }]);
    const systemClient = createClient({ url: server.url, database: 'system' });
    try {
      const one = await systemClient.query({ query: 'SELECT dummy FROM one', format: 'JSONEachRow' });
      expect(await one.json()).toEqual([{ dummy: 0 }]);
    } finally {
      await systemClient.close();
    }
  });

  it('refuses DROP and INSERT with READONLY, and the table stays', async () => {
    const drop = await refusalOf(client.command({ query: 'DROP TABLE greenstream.scratch' }));
    expect(drop).toMatchObject({ code: '164', type: 'READONLY' });
    const insert = await refusalOf(
      client.insert({ table: 'scratch', values: [{ n: 99 }], format: 'JSONEachRow' }),
    );
    expect(insert).toMatchObject({ code: '164', type: 'READONLY' });
    const hidden = await refusalOf(client.query({ query: 'SELECT 1; DROP TABLE scratch' }));
    expect(hidden).toMatchObject({ code: '62', type: 'SYNTAX_ERROR' });
    const file = await refusalOf(client.query({ query: "SELECT file('/etc/hostname')" }));
    expect(file).toMatchObject({ code: '497', type: 'ACCESS_DENIED' });
    const rows = await hot.query<{ n: string }>(sql.raw('SELECT count() AS n FROM greenstream.scratch'));
    expect(Number(rows[0]!.n)).toBe(15);
  });

  it('holds every query to the row and time limits, which request settings cannot raise', async () => {
    const many = await refusalOf(client.query({ query: 'SELECT number FROM numbers(5000)', format: 'JSON' }));
    expect(many).toMatchObject({ code: '396', type: 'TOO_MANY_ROWS_OR_BYTES' });
    // chDB would hand the failed query's partial JSON to the next query on its connection.
    const next = await client.query({ query: 'SELECT 7 AS x', format: 'JSONEachRow' });
    expect(await next.json()).toEqual([{ x: 7 }]);
    const raised = await refusalOf(
      client.query({
        query: 'SELECT number FROM numbers(5000)',
        clickhouse_settings: { max_result_rows: '0' },
      }),
    );
    expect(raised).toMatchObject({ code: '396' });
    const slow = await refusalOf(
      client.query({
        query: 'SELECT sleepEachRow(0.9) FROM numbers(3)',
        clickhouse_settings: { max_execution_time: 100 },
      }),
    );
    expect(slow).toMatchObject({ code: '159', type: 'TIMEOUT_EXCEEDED' });
    const setting = await refusalOf(
      client.query({ query: 'SELECT 1', clickhouse_settings: { join_use_nulls: 1 } }),
    );
    expect(setting).toMatchObject({ code: '164', type: 'READONLY' });
    // The engine's own readonly: a SETTINGS clause cannot lift a limit either.
    const clause = await refusalOf(
      client.query({ query: 'SELECT number FROM numbers(5000) SETTINGS max_result_rows = 0' }),
    );
    expect(clause).toMatchObject({ code: '164' });
  });

  it('runs alongside writes: a slow query does not hold an insert', async () => {
    const started = performance.now();
    let queryDone = 0;
    const slow = client
      .query({
        query: 'SELECT sleepEachRow(0.5) FROM numbers(3)',
        format: 'JSONEachRow',
      })
      .then((r) => r.json())
      .then(() => {
        queryDone = performance.now() - started;
      });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await hot.command(sql.raw('INSERT INTO greenstream.scratch SELECT number + 100 FROM numbers(5)'));
    const insertDone = performance.now() - started;
    await slow;
    expect(queryDone).toBeGreaterThan(1400);
    expect(insertDone).toBeLessThan(queryDone - 500);
  });

  it('speaks the HTTP interface to curl: GET and POST, FORMAT and default_format, gzip, error text', async () => {
    const get = await fetch(
      `${server.url}/?query=${encodeURIComponent('SELECT 1 AS x')}&default_format=JSONEachRow`,
    );
    expect(get.status).toBe(200);
    expect(await get.text()).toBe('{"x":1}\n');
    expect(get.headers.get('x-clickhouse-format')).toBe('JSONEachRow');
    expect(JSON.parse(get.headers.get('x-clickhouse-summary')!)).toMatchObject({ result_rows: '1' });
    const post = await fetch(server.url, { method: 'POST', body: 'SELECT 1 AS x, 2 AS y FORMAT CSV' });
    expect(await post.text()).toBe('1,2\n');
    expect(post.headers.get('content-type')).toMatch(/^text\/csv/);
    const tsv = await fetch(server.url, { method: 'POST', body: "SELECT 'a\tb' AS s" });
    expect(await tsv.text()).toBe('a\\tb\n');
    const gzip = await fetch(`${server.url}/?enable_http_compression=1`, {
      method: 'POST',
      body: 'SELECT number FROM numbers(3) FORMAT TSV',
      headers: { 'Accept-Encoding': 'gzip' },
      // fetch would decompress on its own; the header and the bytes are what a client sees.
    });
    expect(gzip.headers.get('content-encoding')).toBe('gzip');
    expect(await gzip.text()).toBe('0\n1\n2\n');
    const compressed = createClient({ url: server.url, compression: { response: true } });
    try {
      const r = await compressed.query({ query: 'SELECT number FROM numbers(3)', format: 'JSONEachRow' });
      expect((await r.json<{ number: string | number }>()).map((row) => Number(row.number))).toEqual([
        0, 1, 2,
      ]);
    } finally {
      await compressed.close();
    }
    // What clickhouse-go (Grafana's data source on HTTP) sends: Native by default_format, basic auth.
    const native = await fetch(`${server.url}/?default_format=Native&database=greenstream`, {
      method: 'POST',
      body: 'SELECT timeZone()',
      headers: { Authorization: `Basic ${Buffer.from('default:').toString('base64')}` },
    });
    expect(native.status).toBe(200);
    expect(Buffer.from(await native.arrayBuffer()).includes(Buffer.from('UTC'))).toBe(true);
    const lz4 = await fetch(`${server.url}/?compress=1`, { method: 'POST', body: 'SELECT 1' });
    expect(lz4.status).toBe(400);
    expect(lz4.headers.get('x-clickhouse-exception-code')).toBe('48');
    const bad = await fetch(server.url, { method: 'POST', body: 'DROP TABLE scratch' });
    expect(bad.status).toBe(403);
    expect(bad.headers.get('x-clickhouse-exception-code')).toBe('164');
    expect(await bad.text()).toMatch(/^Code: 164\. DB::Exception: .*\(READONLY\)\n$/);
    const missing = await fetch(server.url, { method: 'POST', body: 'SELECT * FROM no_such_table' });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-clickhouse-exception-code')).toBe('60');
    expect(gunzipSync).toBeTypeOf('function');
  });

  it('counts queries, failures and rows in the metrics', () => {
    const text = registry.render();
    expect(text).toMatch(/greenstream_queries_total\{outcome="ok"\} \d+/);
    const count = (outcome: string) =>
      Number(new RegExp(`greenstream_queries_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1]);
    // Refused before the engine: the early 503, DROP, INSERT, two statements, file(), a setting, compress=1,
    // DROP by curl.
    expect(count('refused')).toBe(8);
    // Failed by the engine: two row limits, the time limit, a SETTINGS clause, an unknown table.
    expect(count('error')).toBe(5);
    expect(text).toMatch(/greenstream_query_seconds_count\{outcome="ok"\} \d+/);
    expect(Number(/greenstream_query_result_rows_total (\d+)/.exec(text)?.[1])).toBeGreaterThanOrEqual(10);
  });

  it('names the live owner in the folder, and tells a stale owner file apart', async () => {
    const lock = writeOwnerLock(dir, server.url, nonce);
    expect(readOwnerLock(dir)).toMatchObject({ endpoint: server.url, pid: process.pid, nonce });
    expect(await findFolderOwner(dir)).toMatchObject({ state: 'live' });
    // Same process and endpoint, another nonce: the endpoint answers for someone else.
    writeOwnerLock(dir, server.url, 'another');
    expect(await findFolderOwner(dir)).toMatchObject({ state: 'stale' });
    lock.release(); // not its file any more: left in place
    expect(readOwnerLock(dir)?.nonce).toBe('another');
    // A process that has exited.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, OWNER_FILE), JSON.stringify({ ...owner, pid: Number(gone.stdout) }));
    expect(await findFolderOwner(dir)).toMatchObject({
      state: 'stale',
      why: `process ${gone.stdout} is gone`,
    });
    await writeFile(join(dir, OWNER_FILE), '{"endpoint": "http://127.0');
    expect(await findFolderOwner(dir)).toEqual({ state: 'none' });
    const mine = writeOwnerLock(dir, server.url, nonce);
    mine.release();
    expect(readOwnerLock(dir)).toBeUndefined();
  });

  it('serves other hosts only with the password', () => {
    const none = new URLSearchParams();
    expect(peerRefusal('127.0.0.1', {}, none, undefined)).toBeUndefined();
    expect(peerRefusal('::1', {}, none, undefined)).toBeUndefined();
    expect(peerRefusal('::ffff:127.0.0.1', {}, none, undefined)).toBeUndefined();
    expect(peerRefusal('10.1.2.3', {}, none, undefined)).toMatch(/loopback only/);
    expect(peerRefusal('10.1.2.3', {}, none, 's3cret')).toMatch(/incorrect/);
    const basic = `Basic ${Buffer.from('default:s3cret').toString('base64')}`;
    expect(peerRefusal('10.1.2.3', { authorization: basic }, none, 's3cret')).toBeUndefined();
    expect(peerRefusal('10.1.2.3', { 'x-clickhouse-key': 's3cret' }, none, 's3cret')).toBeUndefined();
    expect(peerRefusal('10.1.2.3', {}, new URLSearchParams('password=s3cret'), 's3cret')).toBeUndefined();
    expect(peerRefusal('10.1.2.3', { 'x-clickhouse-key': 'wrong' }, none, 's3cret')).toMatch(/incorrect/);
  });
});
