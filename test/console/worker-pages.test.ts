/**
 * The console on a running worker's metrics port: `/pipeline.json` holds the running graph and its live
 * figures, the pages read the worker's chDB store through its query endpoint, and reviews are refused
 * there (read-only); `greenstream console` on the folder the worker holds reads through it too.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulate } from '../../simulator/index.js';
import { type CliProcess, ensureBuilt, sleep, startCli } from '../pipelines/helpers.js';

let dir: string;
const started: CliProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-worker-pages-'));
  await Promise.all([
    ensureBuilt(),
    simulate({ out: join(dir, 'landing'), meters: 10, days: 1, start: '2024-03-11', seed: 5 }),
  ]);
}, 180_000);

afterAll(async () => {
  for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  await Promise.all(started.map((p) => p.done));
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe("the console on a worker's metrics port", () => {
  it('serves the live graph and read-only pages; greenstream console reads through the worker', async () => {
    const landing = join(dir, 'landing');
    const chdb = join(dir, 'chdb');
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
        '--flush-interval',
        '200',
      ],
      { timeoutMs: 120_000 },
    );
    started.push(worker);
    expect(await worker.waitForLog('serving queries', 1), JSON.stringify(worker.logs)).toBe(true);
    const base = String(worker.logs.find((l) => l.msg === 'serving queries')!.url);

    const status = await until('every reading through the graph', async () => {
      const s = (await (await fetch(`${base}/pipeline.json`)).json()) as {
        ready: boolean;
        topology: { nodes: { name: string }[]; edges: unknown[] };
        stages: Record<string, { in: number; out: number }>;
        recordsIn: number;
      };
      return s.recordsIn > 0 && (s.stages.parseReading?.in ?? 0) === s.recordsIn ? s : undefined;
    });
    expect(status.ready).toBe(true);
    expect(status.topology.nodes.map((n) => n.name)).toContain('parseReading');
    expect(status.topology.edges.length).toBeGreaterThanOrEqual(status.topology.nodes.length - 1);

    const quality = await until('the Quality page', async () => {
      const r = await fetch(`${base}/console/quality`);
      const text = await r.text();
      return r.status === 200 && text.includes('tiers-chart') ? text : undefined;
    });
    expect(quality).toContain('read-only');
    const post = await fetch(`${base}/console/api/review`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'reject', id: '1', reviewer: 'ada', reason: 'x' }),
    });
    expect(post.status).toBe(403);
    expect(((await post.json()) as { error: string }).error).toContain('read-only');
    expect((await fetch(`${base}/metrics`)).status).toBe(200);

    const consoleCli = startCli(['console', '--hot', `chdb:${chdb}`, '--port', '0'], { timeoutMs: 60_000 });
    started.push(consoleCli);
    expect(await consoleCli.waitForLog('serving console', 1), JSON.stringify(consoleCli.logs)).toBe(true);
    const consoleUrl = String(consoleCli.logs.find((l) => l.msg === 'serving console')!.url);
    expect(consoleCli.logs.find((l) => l.msg === 'serving console')).toMatchObject({ readOnly: true });
    const pipeline = (await (await fetch(`${consoleUrl}api/pipeline`)).json()) as {
      recordsIn?: number;
      source: string;
    };
    expect(pipeline.source).toContain(base);
    expect(pipeline.recordsIn).toBeGreaterThanOrEqual(status.recordsIn);
    const review = await (await fetch(`${consoleUrl}review`)).text();
    expect(review).toContain('a worker holds this chDB folder');
    consoleCli.child.kill('SIGTERM');
    expect((await consoleCli.done).code).toBe(0);
    worker.child.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  });
});
