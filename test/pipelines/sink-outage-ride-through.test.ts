/**
 * A ClickHouse server outage mid-stream, through the real command line: `greenstream run` on a
 * ClickHouse server of its own, four days of 40 meters; the server process is killed right after the
 * first checkpoint, and started again 60 s later (a server restart or short network outage; the jittered
 * backoff's delays cap at 15 s, so the last retries land after the server is back). The worker must not exit, must answer /readyz 503 while
 * the store is down and 200 after, and must end with exactly what a run without outage stores.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { openHotStore } from '../../connectors/clickhouse.js';
import { type HotTableName, hotTableNames, hotTables } from '../../schemas/clickhouse.js';
import { type ClickHouseServer, findFreePort, startClickHouseServer } from '../harness/servers.js';
import { type CliProcess, ensureBuilt, expectSuccess, runCli, startCli } from './helpers.js';

const OUTAGE_MS = 60_000;

let dir: string;
let simulated: string;
let server: ClickHouseServer | undefined;
const workers: CliProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-outage-'));
  simulated = join(dir, 'simulated');
  await ensureBuilt();
  expectSuccess(
    // 16 days (384 gateway files, 24 batches of 16): the input must outlast the first checkpoint by more
    // than the kill takes. With 4 days a faster worker read everything into its first epoch and ended
    // before the server went down, and no write ever failed.
    await runCli(['simulate', '--meters', '40', '--days', '16', '--seed', '11', '--out', simulated]),
    'simulate',
  );
}, 120_000);

afterAll(async () => {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.done));
  await server?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function readyz(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
  } catch {
    return -1;
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Per table: rows as readers see them (FINAL) and distinct keys; equal when nothing is doubled. */
async function tableCounts(url: string, database: string): Promise<Record<string, [number, number]>> {
  const store = openHotStore({ kind: 'server', url, database });
  try {
    const out: Record<string, [number, number]> = {};
    for (const table of hotTableNames) {
      const key = sql.join(
        (hotTables[table as HotTableName].sortingKey as readonly string[]).map((c) => sql.ident(c)),
      );
      const [row] = await store.query<{ n: string; k: string }>(
        sql`SELECT count() AS n, uniqExact(${key}) AS k FROM ${store.relation(table)} FINAL`,
      );
      out[table] = [Number(row!.n), Number(row!.k)];
    }
    return out;
  } finally {
    await store.close();
  }
}

function workerArgs(landing: string, url: string, database: string, metricsPort: number): string[] {
  return [
    'run',
    '--until-idle',
    '--source',
    `files:${landing}`,
    '--registry',
    join(landing, 'registry.csv'),
    '--hot',
    url,
    '--database',
    database,
    '--no-cold',
    '--checkpoint',
    join(dir, `${database}.checkpoint.json`),
    '--flush-interval',
    '100ms',
    '--checkpoint-interval',
    '200ms',
    '--metrics-port',
    String(metricsPort),
    '--sink-retry-budget',
    '3m',
  ];
}

describe('a ClickHouse outage mid-stream', () => {
  it('is ridden through: not ready while down, resumes by itself, nothing lost, nothing doubled', async () => {
    server = await startClickHouseServer();
    const port = await findFreePort();
    const worker = startCli(workerArgs(simulated, server.url, 'gs_outage', port), {
      timeoutMs: 300_000,
      env: { NATS_URL: '', CLICKHOUSE_URL: '' },
    });
    workers.push(worker);

    // Down mid-stream: right after the first committed checkpoint, with days of input still to go.
    expect(await worker.waitForLog('checkpoint', 1)).toBe(true);
    await server.kill();
    const downAt = Date.now();
    expect(
      worker.logs.some((l) => l.msg === 'stopped'),
      'the input outlasts the first checkpoint',
    ).toBe(false);
    await until('a retry', async () => worker.logs.some((l) => l.msg === 'clickhouse retry'));
    await until('not ready', async () => (await readyz(port)) === 503);
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - downAt)));
    expect(worker.child.exitCode).toBeNull();
    expect(await readyz(port)).toBe(503);
    expect(worker.logs.filter((l) => l.msg === 'clickhouse retry').length).toBeGreaterThanOrEqual(3);

    await server.restart();
    expect(await worker.waitForLog('clickhouse recovered', 1)).toBe(true);
    const result = await worker.done;
    expect(result.code, result.stderr.slice(-3000)).toBe(0);
    const totals = JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, number>;
    expect(totals.recordsIn).toBe(totals.measured! + totals.quarantined! + totals.deadLettered!);

    // The same input without an outage, on the same server, is the reference.
    expectSuccess(
      await runCli(workerArgs(simulated, server.url, 'gs_reference', await findFreePort()), {
        env: { NATS_URL: '', CLICKHOUSE_URL: '' },
        timeoutMs: 120_000,
      }),
      'reference run',
    );
    const got = await tableCounts(server.url, 'gs_outage');
    const want = await tableCounts(server.url, 'gs_reference');
    expect(got.readings![0]).toBeGreaterThan(10_000);
    for (const table of hotTableNames) {
      expect(got[table]![0], `${table}: rows = distinct keys`).toBe(got[table]![1]);
    }
    // Everything but what depends on processing time and batching (backlog/quality alerts, batch log).
    const { alerts: _a, quality_log: _q, ...gotData } = got;
    const { alerts: _b, quality_log: _r, ...wantData } = want;
    expect(gotData).toEqual(wantData);
  }, 420_000);
});
