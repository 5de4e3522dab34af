/**
 * Querying the embedded store while the worker runs (issue 20), through the real command line: a live
 * `greenstream run` on chdb:<dir> ingests files as they land while `greenstream sql` and
 * `@clickhouse/client` query it; a killed worker leaves a stale owner file that `sql` sees through.
 */
import { cp, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Logger } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OWNER_FILE, readOwnerLock } from '../../connectors/chdb-lock.js';
import { type CliProcess, ensureBuilt, expectSuccess, runCli, sleep, startCli } from './helpers.js';

class SilentLogger implements Logger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
}

let dir: string;
let simulated: string;
const workers: CliProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-live-query-'));
  simulated = join(dir, 'simulated');
  await ensureBuilt();
  expectSuccess(
    await runCli(['simulate', '--meters', '20', '--days', '1', '--seed', '7', '--out', simulated]),
    'simulate',
  );
});

afterAll(async () => {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.done));
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** A landing folder with the registry and no readings yet. */
async function emptyLanding(name: string): Promise<string> {
  const landing = join(dir, name);
  await mkdir(join(landing, 'raw', '2024', '03', '11'), { recursive: true });
  await cp(join(simulated, 'registry.csv'), join(landing, 'registry.csv'));
  return landing;
}

/** Lands the simulated hour folders `hours` (e.g. 0–5) into `landing`, each whole by a rename. */
async function land(landing: string, hours: readonly number[]): Promise<void> {
  for (const h of hours) {
    const hour = String(h).padStart(2, '0');
    const staging = join(dir, `staging-${hour}-${Math.random().toString(36).slice(2)}`);
    await cp(join(simulated, 'raw', '2024', '03', '11', hour), staging, { recursive: true });
    await rename(staging, join(landing, 'raw', '2024', '03', '11', hour));
  }
}

function startWorker(landing: string, chdb: string): CliProcess {
  const worker = startCli(
    [
      'run',
      '--source',
      `files:${landing}`,
      '--registry',
      join(landing, 'registry.csv'),
      '--hot',
      `chdb:${chdb}`,
      '--no-cold',
      '--checkpoint',
      join(landing, 'checkpoint.json'),
      '--flush-interval',
      '200',
    ],
    { timeoutMs: 180_000 },
  );
  workers.push(worker);
  return worker;
}

const COUNT = 'SELECT count() AS n FROM greenstream.readings';

async function sqlCount(chdb: string): Promise<{ n: number; stderr: string }> {
  const result = expectSuccess(
    await runCli(['sql', '--hot', `chdb:${chdb}`, '--format', 'json', COUNT]),
    'sql',
  );
  return { n: Number((JSON.parse(result.stdout) as { n: string | number }[])[0]!.n), stderr: result.stderr };
}

/** Polls `sql` until the count passes `above`. */
async function countAbove(chdb: string, above: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { n } = await sqlCount(chdb);
    if (n > above) return n;
    if (Date.now() > deadline) throw new Error(`the count stayed at ${n} (wanted more than ${above})`);
    await sleep(300);
  }
}

describe('querying the embedded store while the worker runs', () => {
  it('answers greenstream sql and @clickhouse/client from the live worker as files land, read-only', async () => {
    const landing = await emptyLanding('landing-live');
    const chdb = join(dir, 'chdb-live');
    const worker = startWorker(landing, chdb);
    expect(
      await worker.waitForLog('serving queries', 1),
      worker.logs.map((l) => JSON.stringify(l)).join('\n'),
    ).toBe(true);
    const owner = readOwnerLock(chdb);
    expect(owner).toMatchObject({ pid: worker.child.pid });
    expect(owner!.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // Without --metrics-port the endpoint is an ephemeral loopback port, and it serves /metrics too.
    expect(worker.logs.find((l) => l.msg === 'serving metrics')).toMatchObject({
      bound: expect.stringMatching(/^127\.0\.0\.1:/),
    });

    const client = createClient({ url: owner!.endpoint, log: { LoggerClass: SilentLogger } });
    let second: number;
    try {
      const clientCount = async () => {
        const result = await client.query({ query: COUNT, format: 'JSONEachRow' });
        return Number((await result.json<{ n: string | number }>())[0]!.n);
      };
      expect((await sqlCount(chdb)).n).toBe(0);
      expect(await clientCount()).toBe(0);

      await land(landing, [0, 1, 2, 3, 4, 5]);
      const first = await countAbove(chdb, 0);
      expect(await clientCount()).toBeGreaterThanOrEqual(first);

      await land(landing, [10, 11, 12, 13, 14, 15]);
      second = await countAbove(chdb, first);
      expect(second).toBeGreaterThan(first);
      expect(await clientCount()).toBeGreaterThanOrEqual(second);

      // Writes are refused, by sql and by the client; the table stays, with its rows.
      const drop = await runCli(['sql', '--hot', `chdb:${chdb}`, 'DROP TABLE greenstream.readings']);
      expect(drop.code).toBe(1);
      expect(drop.stderr).toMatch(/readonly mode/);
      const insert = await runCli([
        'sql',
        '--hot',
        `chdb:${chdb}`,
        'INSERT INTO greenstream.readings SELECT * FROM greenstream.readings',
      ]);
      expect(insert.code).toBe(1);
      expect(insert.stderr).toMatch(/readonly mode/);
      await expect(client.command({ query: 'DROP TABLE greenstream.readings' })).rejects.toMatchObject({
        code: '164',
        type: 'READONLY',
      });
      const exists = await client.query({
        query: 'EXISTS TABLE greenstream.readings',
        format: 'JSONEachRow',
      });
      expect(await exists.json()).toEqual([{ result: 1 }]);
      expect(await clientCount()).toBeGreaterThanOrEqual(second);

      const metrics = await (await fetch(`${owner!.endpoint}/metrics`)).text();
      expect(
        Number(/greenstream_queries_total\{outcome="ok"\} (\d+)/.exec(metrics)?.[1]),
      ).toBeGreaterThanOrEqual(6);
      expect(Number(/greenstream_queries_total\{outcome="refused"\} (\d+)/.exec(metrics)?.[1])).toBe(3);
    } finally {
      await client.close();
    }

    worker.child.kill('SIGTERM');
    const stopped = await worker.done;
    expect(stopped.code, stopped.stderr.slice(-2000)).toBe(0);
    // A clean stop takes the owner file away; the folder opens directly again.
    await expect(stat(join(chdb, OWNER_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    const after = await sqlCount(chdb);
    expect(after.n).toBeGreaterThanOrEqual(second);
    expect(after.stderr).toBe('');
  });

  it('opens the folder itself once the worker was killed, the stale owner file ignored', async () => {
    const landing = await emptyLanding('landing-killed');
    await land(landing, [0, 1, 2]);
    const chdb = join(dir, 'chdb-killed');
    const worker = startWorker(landing, chdb);
    expect(await worker.waitForLog('serving queries', 1)).toBe(true);
    const n = await countAbove(chdb, 0);
    worker.child.kill('SIGKILL');
    expect((await worker.done).signal).toBe('SIGKILL');
    expect(readOwnerLock(chdb)?.pid).toBe(worker.child.pid);

    const direct = await sqlCount(chdb);
    expect(direct.n).toBeGreaterThanOrEqual(n);
    expect(direct.stderr).toMatch(/ignoring a stale owner file .*process \d+ is gone/);
    expect(await readdir(chdb)).toContain(OWNER_FILE);
  });
});
