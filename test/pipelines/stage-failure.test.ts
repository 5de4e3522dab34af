/**
 * A stage that throws stops a real worker (the CLI, embedded chDB): non-zero exit naming the stage, the
 * transformation-failure alert, no checkpoint past the failure; a restart with the fault removed ends
 * with exactly the store of a worker that never failed. The fault comes from the `GS_TEST_FAULT` test hook.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import type { Checkpoint } from '../../pipelines/runner.js';
import { simulate } from '../../simulator/index.js';
import {
  comparedColumns,
  comparedTables,
  contentDiff,
  ensureBuilt,
  expectSuccess,
  processingTimeAlertKinds,
  runCli,
} from './helpers.js';

let dir: string;
let landing: string;
let files = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-stage-failure-'));
  landing = join(dir, 'landing');
  await Promise.all([
    ensureBuilt(),
    simulate({ out: landing, meters: 150, days: 3, start: '2024-03-11', seed: 5 }),
  ]);
  files = (await readdir(join(landing, 'raw'), { recursive: true })).filter((f) => f.endsWith('.csv')).length;
}, 240_000);

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const runArgs = (name: string) => [
  'run',
  '--source',
  `files:${landing}`,
  '--registry',
  join(landing, 'registry.csv'),
  '--hot',
  `chdb:${join(dir, name)}`,
  '--no-cold',
  '--checkpoint',
  join(dir, `${name}.json`),
  '--until-idle',
  '--flush-rows',
  '500',
  '--checkpoint-flushes',
  '2',
];

/**
 * Every compared table's rows through FINAL, one line a row prefixed with its table, sorted: one
 * `greenstream sql` per store (chDB binds one data folder per process, so the test cannot open both).
 */
async function storeContent(name: string): Promise<string[]> {
  const perTable = comparedTables.map((table) => {
    const columns = sql.join(comparedColumns[table]!.map((c) => sql.ident(c)));
    const where =
      table === 'alerts' ? sql` WHERE kind NOT IN (${sql.list(processingTimeAlertKinds)})` : sql.raw('');
    return sql`SELECT ${table} AS t, toString(tuple(${columns})) AS row FROM ${sql.ident('greenstream', table)} FINAL${where}`;
  });
  const query = sql`SELECT t, row FROM (${sql.join(perTable, ' UNION ALL ')}) ORDER BY t, row`;
  const r = expectSuccess(
    await runCli(['sql', '--hot', `chdb:${join(dir, name)}`, '--format', 'csv', query.text]),
    `sql on ${name}`,
  );
  return r.stdout.trim().split('\n').slice(1);
}

describe('a stage that throws on the N-th batch', () => {
  it('stops the worker without checkpointing past it, and a restart ends as an uninterrupted run', async () => {
    // The files source hands out 16 files a pull: fail about halfway through.
    const pulls = Math.ceil(files / 16);
    const failAt = Math.floor(pulls / 2);
    expect(failAt).toBeGreaterThanOrEqual(4);

    const [uninterrupted, failed] = await Promise.all([
      runCli(runArgs('whole')),
      runCli(runArgs('failing'), { env: { GS_TEST_FAULT: `detectOverload:${failAt}` } }),
    ]);
    expectSuccess(uninterrupted, 'uninterrupted run');

    expect(failed.code, failed.stderr.slice(-2000)).toBe(4); // a stage failure (README, "Exit codes")
    expect(failed.stderr).toMatch(
      /greenstream run: stage "detectOverload" of graph "meter-quality" failed: InjectedFault: injected fault on data batch \d+/,
    );
    const logs = failed.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const alert = logs.find((l) => l.msg === 'alert');
    expect(alert).toMatchObject({ kind: 'transformation_failure', severity: 'critical' });
    expect(alert?.message).toMatch(/stage "detectOverload".*without checkpointing past it/);

    // The saved checkpoint is the last one logged, and covers only the pulls before the failing one.
    const checkpoints = logs.filter((l) => l.msg === 'checkpoint');
    expect(checkpoints.length).toBeGreaterThanOrEqual(1);
    const saved = JSON.parse(await readFile(join(dir, 'failing.json'), 'utf8')) as Checkpoint;
    expect(saved.seq).toBe(checkpoints.at(-1)!.seq);
    const ledger = JSON.stringify(saved.position);
    const processed = (ledger.match(/\.csv/g) ?? []).length;
    expect(processed).toBeGreaterThan(0);
    expect(processed).toBeLessThanOrEqual((failAt - 1) * 16);
    expect(saved.totals.recordsIn).toBeLessThan(
      JSON.parse(uninterrupted.stdout.trim().split('\n').at(-1)!).recordsIn,
    );

    // Restarted without the fault: resumes from that checkpoint and ends identical.
    const restarted = expectSuccess(await runCli(runArgs('failing')), 'restart without the fault');
    expect(restarted.stderr).toContain('"msg":"checkpoint"');
    const [a, b] = await Promise.all([storeContent('whole'), storeContent('failing')]);
    for (const table of comparedTables)
      expect(a.filter((l) => l.startsWith(`${table},`)).length, `${table} rows`).toBeGreaterThan(0);
    expect(b.length).toBe(a.length);
    expect(contentDiff(a, b)).toEqual({ onlyInA: [], onlyInB: [] });
  }, 240_000);
});
