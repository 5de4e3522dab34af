import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = new URL('../../bin/greenstream.js', import.meta.url).pathname;

function greenstream(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NATS_URL: '', CLICKHOUSE_URL: '', ...env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the greenstream command', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists its commands and refuses unknown ones with status 2', () => {
    const help = greenstream(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['run', 'replay', 'simulate', 'publish', 'sql', 'graph', 'demo'])
      expect(help.stdout).toMatch(new RegExp(`\\n  ${c} `));
    const unknown = greenstream(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badFlag = greenstream(['graph', '--colour']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/Unknown option '--colour'/);
  });

  it('expect runs the suites on an embedded store, writes the report and refuses an unknown suite', async () => {
    const report = join(dir, 'expect.md');
    const r = greenstream(['expect', '--hot', `chdb:${join(dir, 'expect-chdb')}`, '--report', report]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // An empty store: nothing to fail in the daily suite; no reading at all is not fresh.
    expect(r.stdout).toMatch(/expectations: 7\/8 passed; failed: readings_fresh \(1\)/);
    expect(await readFile(report, 'utf8')).toContain('| live | readings_fresh | freshness | **FAIL** | 1 |');
    const bad = greenstream(['expect', '--suite', 'weekly']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--suite must be one of daily, live');
  });

  it('poll needs a feeds file naming at least one feed', async () => {
    const none = greenstream(['poll']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--feeds <feeds.json> is required');
    const config = join(dir, 'feeds.json');
    await writeFile(config, JSON.stringify({ start: '2024-07-01' }));
    const empty = greenstream(['poll', '--feeds', config, '--hot', `chdb:${join(dir, 'poll-chdb')}`]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('names no weather place and no grid area');
  });

  it('never echoes credentials in a usage error, whatever the scheme', () => {
    for (const url of ['clickhous://admin:s3cret@db:8123', 'tcp://admin:s3cret@db:9000', 'admin:s3cret@db']) {
      const r = greenstream(['run', '--until-idle', '--source', 'files:./nowhere'], { CLICKHOUSE_URL: url });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--hot must be');
      expect(r.stderr).not.toContain('s3cret');
    }
    const source = greenstream(['run', '--source', 'nat://u:s3cret@h:4222']);
    expect(source.code).toBe(2);
    expect(source.stderr).not.toContain('s3cret');
  });

  it('exits promptly after a failed run, releasing the chDB folder', async () => {
    // The registry does not exist: the run fails after the CLI has loaded chDB.
    const started = Date.now();
    const r = greenstream([
      'run',
      '--until-idle',
      '--source',
      `files:${join(dir, 'no-landing')}`,
      '--registry',
      join(dir, 'no-registry.csv'),
      '--hot',
      `chdb:${join(dir, 'chdb-fail')}`,
      '--no-cold',
      '--checkpoint',
      join(dir, 'cp-fail.json'),
    ]);
    // A missing registry is a configuration error (cli/exit-codes.ts).
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/registry/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('prints the operator graph as Mermaid or dot', () => {
    const mermaid = greenstream(['graph']);
    expect(mermaid.code).toBe(0);
    expect(mermaid.stdout.startsWith('flowchart LR\n')).toBe(true);
    for (const stage of [
      'parseReading',
      'detectStuckMeter',
      'aggregateHourly',
      'excludePeakHours',
      'rankDailyPeaks',
      'detectNeighborhoodOutlier',
    ]) {
      expect(mermaid.stdout).toContain(`["${stage}"]`);
    }
    expect(mermaid.stdout).toContain('-. quarantine .->');
    const dot = greenstream(['graph', '--format', 'dot']);
    expect(dot.stdout).toMatch(/^digraph "meter-quality" \{/);
    expect(greenstream(['graph', '--format', 'svg']).code).toBe(2);
  });

  it('simulates, runs embedded until idle, and answers SQL in table, json and csv', async () => {
    const landing = join(dir, 'landing');
    const sim = greenstream(['simulate', '--meters', '30', '--days', '1', '--seed', '4', '--out', landing]);
    expect(sim.code, sim.stderr).toBe(0);
    const simulated = JSON.parse(sim.stdout) as { lines: number; files: number };
    expect((await readdir(join(landing, 'raw', '2024', '03', '11'))).length).toBe(24);

    const hot = `chdb:${join(dir, 'chdb')}`;
    const run = greenstream([
      'run',
      '--source',
      `files:${landing}`,
      '--registry',
      join(landing, 'registry.csv'),
      '--hot',
      hot,
      '--cold',
      join(dir, 'lake'),
      '--checkpoint',
      join(dir, 'cp.json'),
      '--until-idle',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const totals = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      recordsIn: number;
      measured: number;
      quarantined: number;
      deadLettered: number;
    };
    expect(totals.recordsIn).toBe(simulated.lines);
    expect(totals.measured + totals.quarantined + totals.deadLettered).toBe(totals.recordsIn);
    // Logs are JSON lines on stderr.
    for (const line of run.stderr.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();

    const query = "SELECT count() AS n FROM greenstream.readings FINAL WHERE status = 'measured'";
    const json = greenstream(['sql', '--hot', hot, '--format', 'json', query]);
    expect(json.code, json.stderr).toBe(0);
    expect(Number((JSON.parse(json.stdout) as { n: number | string }[])[0]!.n)).toBe(totals.measured);
    const csv = greenstream(['sql', '--hot', hot, '--format', 'csv', query]);
    expect(csv.stdout).toBe(`n\n${totals.measured}\n`);
    const table = greenstream(['sql', '--hot', hot, query]);
    expect(table.stdout).toMatch(/^n\s*\n-+\s*\n\d+\s*\n\(1 row\)\n$/);
    const bad = greenstream(['sql', '--hot', hot, 'SELEC nonsense']);
    expect(bad.code).toBe(5); // refused by the store (README, "Exit codes")
    expect(bad.stderr).toMatch(/greenstream sql: .*(Syntax error|SYNTAX)/i);

    // A second run over the same landing folder finds nothing new: every file is in the checkpoint's ledger.
    const again = greenstream([
      'run',
      '--source',
      `files:${landing}`,
      '--registry',
      join(landing, 'registry.csv'),
      '--hot',
      hot,
      '--no-cold',
      '--checkpoint',
      join(dir, 'cp.json'),
      '--until-idle',
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout.trim().split('\n').at(-1)!).recordsIn).toBe(totals.recordsIn);
  }, 180_000);

  it('runs the demo (npm start) to its summary', () => {
    const demo = greenstream(['demo', '--dir', join(dir, 'demo'), '--meters', '100']);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/balance: +\d+ = \d+ \+ \d+ \+ \d+ ✓/);
    expect(demo.stdout).toContain('top 3 peak hours:');
    expect(demo.stdout).toContain('Parquet lake:');
  }, 180_000);

  it('explains a missing registry instead of crashing', () => {
    const r = greenstream([
      'run',
      '--source',
      `files:${dir}`,
      '--registry',
      join(dir, 'nope.csv'),
      '--hot',
      `chdb:${join(dir, 'chdb2')}`,
      '--until-idle',
    ]);
    expect(r.code).toBe(3); // a configuration error
    expect(r.stderr).toContain('cannot read the meter registry');
  });
});
