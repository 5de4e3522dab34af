/**
 * Transient and permanent failures of the ClickHouse server, injected with msw in front of the
 * real 18.16 server (so passed-through requests are answered for real), plus a server of this
 * file's own that is stopped and restarted under a running insert.
 *
 * msw intercepts @clickhouse/client's `http.request` calls (its ClientRequest interceptor swaps
 * the socket under the client's keep-alive agent). One catch, found here: a mocked response
 * without `Content-Length` is sent chunked and its body never ends on the client's keep-alive
 * socket, so the request stalls until the request timeout. Every mocked response below therefore
 * carries an explicit Content-Length.
 */
import { createServer } from 'node:net';
import { delay, HttpResponse, http, passthrough } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import {
  type HotStore,
  type HotStoreEvent,
  type HotStoreOptions,
  openHotStore,
  SinkRejectedError,
  SinkUnavailableError,
} from '../../connectors/clickhouse.js';
import { ClickHouseHttpError } from '../../connectors/clickhouse-errors.js';
import { type ClickHouseServer, startClickHouseServer } from '../harness/servers.js';
import { makeReadings, testDatabase } from './clickhouse-fixtures.js';

function textResponse(status: number, body: string, contentType = 'text/plain; charset=UTF-8'): Response {
  return new HttpResponse(body, {
    status,
    headers: { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(body)) },
  });
}

const BASE_DELAY_MS = 10;

describe('hot store under injected HTTP faults (msw in front of clickhouse-server 18.16)', () => {
  const url = inject('clickhouseUrl');
  const database = testDatabase('faults');
  const mocks = setupServer();
  const opened: HotStore[] = [];
  let events: HotStoreEvent[] = [];
  let requests = 0;

  function open(options: HotStoreOptions = {}, target: { url?: string } = {}): HotStore {
    const store = openHotStore(
      { kind: 'server', url: target.url ?? url, database },
      {
        retry: { baseDelayMs: BASE_DELAY_MS },
        requestTimeoutMs: 2_000,
        onEvent: (e) => events.push(e),
        ...options,
      },
    );
    opened.push(store);
    return store;
  }

  /** Answers the first `times` requests with `respond`, then lets requests through to the server. */
  function failFirst(times: number, respond: () => Response | Promise<Response>): void {
    mocks.use(
      http.all(`${url}/*`, async () => {
        requests++;
        return requests <= times ? respond() : passthrough();
      }),
    );
  }

  const retries = () => events.filter((e) => e.type === 'retry');

  beforeAll(async () => {
    await openHotStore({ kind: 'server', url, database }).migrate();
    mocks.listen({ onUnhandledRequest: 'bypass' });
  });

  afterEach(() => {
    mocks.resetHandlers();
    events = [];
    requests = 0;
  });

  afterAll(async () => {
    mocks.close();
    const cleanup = openHotStore({ kind: 'server', url, database });
    await cleanup.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
    await cleanup.close();
    for (const store of opened) await store.close();
  });

  it('succeeds after two 503s, retrying with exponential backoff', async () => {
    failFirst(2, () => textResponse(503, 'Service Unavailable'));
    const store = open();
    const rows = await store.query<{ one: number }>(sql`SELECT 1 AS one`);
    expect(rows).toEqual([{ one: 1 }]);
    expect(requests).toBe(3);
    expect(retries().map((e) => e.type === 'retry' && [e.attempt, e.delayMs])).toEqual([
      [1, BASE_DELAY_MS],
      [2, 2 * BASE_DELAY_MS],
    ]);
  });

  it('resends the whole insert body on a retry, and the batch is stored once', async () => {
    const bodies: number[] = [];
    const store = open();
    // The insert format comes from the version, asked for first (as migrate() does at a start).
    await store.capabilities();
    mocks.use(
      http.all(`${url}/*`, async ({ request }) => {
        requests++;
        bodies.push((await request.clone().arrayBuffer()).byteLength);
        return requests <= 2 ? textResponse(503, 'Service Unavailable') : passthrough();
      }),
    );
    const readings = makeReadings(2_000, { meters: 40 });
    const summary = await store.insert('readings', readings);
    expect(bodies).toEqual([summary.bytes, summary.bytes, summary.bytes]);
    mocks.resetHandlers();
    const [row] = await store.query<{ c: string }>(
      sql`SELECT count() AS c FROM ${store.relation('readings')} FINAL WHERE source = ${readings[0]!.source}`,
    );
    expect(Number(row?.c)).toBe(2_000);
  });

  it('gives up with SinkUnavailableError after exactly 3 retries when 5xx persists', async () => {
    failFirst(Number.POSITIVE_INFINITY, () => textResponse(503, 'Service Unavailable'));
    const store = open();
    const started = performance.now();
    const error = await store.query(sql`SELECT 1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkUnavailableError);
    expect(error).toMatchObject({
      code: 'SINK_UNAVAILABLE',
      context: { engine: 'server', operation: 'query', attempts: 4 },
    });
    const cause = (error as SinkUnavailableError).cause;
    expect(cause).toBeInstanceOf(ClickHouseHttpError);
    expect(cause).toMatchObject({ status: 503 });
    expect(requests).toBe(4);
    expect(retries().map((e) => e.type === 'retry' && e.delayMs)).toEqual([10, 20, 40]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(70 - 5);
  });

  it('retries a response slower than the request timeout', async () => {
    failFirst(1, async () => {
      await delay(4_000);
      return textResponse(200, '{"late":1}\n');
    });
    // Generous against a loaded machine: the retried request must beat the timeout.
    const store = open({ requestTimeoutMs: 1_000 });
    const rows = await store.query<{ one: number }>(sql`SELECT 1 AS one`);
    expect(rows).toEqual([{ one: 1 }]);
    expect(retries()).toHaveLength(1);
    expect(retries()[0]).toMatchObject({ operation: 'query', reason: expect.stringMatching(/timeout/i) });
  });

  it.each([
    [
      '18.16 "too many parts" (code 252)',
      500,
      'Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts., e.what() = DB::Exception\n',
    ],
    ['a proxy 502 page', 502, '<html><body><h1>502 Bad Gateway</h1></body></html>'],
    ['a 504 with no body', 504, ''],
    ['429 Too Many Requests', 429, 'slow down'],
  ])('treats %s as transient', async (_label, status, body) => {
    failFirst(1, () => textResponse(status, body));
    const store = open();
    await expect(store.query(sql`SELECT 1 AS one`)).resolves.toEqual([{ one: 1 }]);
    expect(requests).toBe(2);
  });

  it.each([
    [
      '18.16 syntax error (HTTP 500, code 62)',
      500,
      'Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1: SELEC 1, e.what() = DB::Exception\n',
      62,
    ],
    ['a proxy 403 page', 403, '<html>Forbidden</html>', undefined],
  ])('fails at once on %s with SinkRejectedError', async (_label, status, body, clickhouseCode) => {
    failFirst(Number.POSITIVE_INFINITY, () => textResponse(status, body));
    const store = open();
    const error = await store.query(sql`SELECT 1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkRejectedError);
    expect((error as SinkRejectedError).context.attempts).toBe(1);
    expect((error as SinkRejectedError).context.clickhouseCode).toBe(clickhouseCode);
    expect(requests).toBe(1);
  });

  it('reports an exception the server raises after streaming the first rows', async () => {
    failFirst(1, () =>
      textResponse(200, '{"n":"1"}\nCode: 241, e.displayText() = DB::Exception: Memory limit exceeded\n'),
    );
    const store = open();
    await expect(store.query(sql`SELECT 1 AS one`)).resolves.toEqual([{ one: 1 }]);
    expect(retries()[0]).toMatchObject({ reason: expect.stringContaining('Memory limit') });
  });

  it('gives up with SinkUnavailableError when nothing listens on the port', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address();
        probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    const store = open({}, { url: `http://127.0.0.1:${port}` });
    const error = await store.insert('readings', makeReadings(3)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkUnavailableError);
    expect(error).toMatchObject({ context: { operation: 'insert', table: 'readings', attempts: 4 } });
    expect((error as Error & { cause: { code?: string } }).cause.code).toBe('ECONNREFUSED');
  });

  it('keeps credentials out of errors, contexts and events', async () => {
    const secret = 'S3cr3t-pa55';
    const inUrl = url.replace('http://', `http://default:${secret}@`);
    const store = open({}, { url: inUrl });
    const error = await store.query(sql`SELECT 1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkRejectedError);
    expect((error as SinkRejectedError).context.clickhouseCode).toBe(193);
    const seen = JSON.stringify([
      (error as Error).message,
      (error as Error).stack,
      (error as SinkRejectedError).context,
      events,
    ]);
    expect(seen).not.toContain(secret);
    expect((error as SinkRejectedError).context.target).toBe(url);
  });
});

describe('hot store while its server is stopped and restarted', () => {
  let server: ClickHouseServer;
  let store: HotStore;
  const outageEvents: HotStoreEvent[] = [];

  beforeAll(async () => {
    server = await startClickHouseServer();
    store = openHotStore(
      { kind: 'server', url: server.url, database: 'greenstream' },
      // More retries than the default (at +0.25 s … +15.75 s): room for a restart on a loaded
      // 2-core machine; the insert completes at the first retry after the server is back.
      { retry: { retries: 6, baseDelayMs: 250 }, onEvent: (e) => outageEvents.push(e) },
    );
    await store.migrate();
  });

  afterAll(async () => {
    await store?.close();
    await server?.dispose();
  });

  it('retries through the outage and stores the batch once the server is back', async () => {
    await server.stop();
    const readings = makeReadings(5_000);
    const insert = store.insert('readings', readings);
    setTimeout(() => void server.restart(), 300);
    await expect(insert).resolves.toMatchObject({ rows: 5_000 });
    expect(outageEvents.filter((e) => e.type === 'retry').length).toBeGreaterThanOrEqual(1);
    const [row] = await store.query<{ c: string }>(
      sql`SELECT count() AS c FROM ${store.relation('readings')} FINAL`,
    );
    expect(Number(row?.c)).toBe(5_000);
  });
});
