import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { ensureBuilt, lastJson, type RunTotalsOutput, repoRoot } from '../pipelines/helpers.js';
import { type HostileCorpus, writeHostileCorpus } from './corpus.js';

/**
 * Every probe of issue 12 through the real embedded worker (the CLI, chDB, the Parquet lake) under a
 * 1 GiB heap: the worker finishes, and every record is a stored reading, a quarantine row or part of a
 * dead-lettered file.
 */
describe('the hostile corpus through the embedded worker (node --max-old-space-size=1024)', () => {
  let dir: string;
  let corpus: HostileCorpus;
  let run: { code: number | null; stdout: string; stderr: string; peakRssMb: number };
  let hot: HotStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-hostile-'));
    await ensureBuilt();
    corpus = await writeHostileCorpus(dir);
    run = await runWorker([
      'run',
      '--source',
      `files:${corpus.landing}`,
      '--registry',
      join(corpus.landing, 'registry.csv'),
      '--hot',
      `chdb:${join(dir, 'chdb')}`,
      '--cold',
      join(dir, 'lake'),
      '--checkpoint',
      join(dir, 'checkpoint.json'),
      '--until-idle',
    ]);
    hot = openHotStore({ kind: 'chdb', path: join(dir, 'chdb') });
  }, 240_000);

  afterAll(async () => {
    await hot?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const count = async (query: string) =>
    Number((await hot.query<{ n: number | string }>(sql.raw(query)))[0]!.n);
  const reasons = async (meterLike: string) =>
    (
      await hot.query<{ reasons: string[] }>(
        sql`SELECT reasons FROM greenstream.quarantine FINAL WHERE meter_id LIKE ${meterLike} ORDER BY source, raw`,
      )
    ).flatMap((q) => q.reasons);

  it('finishes under the heap limit, and records in = stored + quarantined + dead-lettered', async () => {
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    console.log(`[hostile] worker peak RSS ${run.peakRssMb} MB (heap limit 1024 MB)`);
    const totals = lastJson<RunTotalsOutput>(run.stdout);
    const measured = await count(
      "SELECT count() AS n FROM greenstream.readings FINAL WHERE status = 'measured'",
    );
    const quarantined = await count('SELECT count() AS n FROM greenstream.quarantine FINAL');
    expect(totals.recordsIn).toBe(corpus.records);
    expect(measured + quarantined).toBe(corpus.records);
    expect(totals.deadLettered).toBe(corpus.deadLettered.length);
    const [log] = await hot.query<{ dl: string | number }>(
      sql.raw('SELECT sum(dead_lettered) AS dl FROM greenstream.quality_log FINAL'),
    );
    expect(Number(log!.dl)).toBe(corpus.deadLettered.length);
  });

  it('poison: a unit cut inside a surrogate pair, a JSON lone surrogate and a reading of 2200 are quarantined', async () => {
    const hostile1 = await reasons('HOSTILE-1');
    expect(hostile1).toContain(`invalid_unit:${'u'.repeat(31)}`);
    expect(hostile1).toContain('invalid_unit:\ufffd');
    expect(hostile1).toContain('future_timestamp');
    expect(hostile1).toContain('subsecond_timestamp');
    // The 2200 time has no DateTime form: the row keeps it in raw only.
    expect(
      await count(
        "SELECT count() AS n FROM greenstream.quarantine FINAL WHERE raw LIKE '%2200-01-01%' AND ts IS NULL",
      ),
    ).toBe(1);
  });

  it('amplification: a 1 s cadence, a 2010 reading and a reading a year on emit bounded rows', async () => {
    expect(
      await count("SELECT count() AS n FROM greenstream.readings FINAL WHERE meter_id = 'HOSTILE-2'"),
    ).toBeLessThanOrEqual(3 + 1 + 96);
    const hostile3 = await reasons('HOSTILE-3');
    expect(hostile3).toContain('far_past');
    expect(hostile3).toContain('far_future');
    // The watermark did not jump a year: the last real day still has its hourly aggregates.
    expect(
      await count(
        "SELECT count() AS n FROM greenstream.hourly_consumption FINAL WHERE hour >= toDateTime('2024-03-12 00:00:00', 'UTC')",
      ),
    ).toBeGreaterThan(300);
    expect(
      await count(
        "SELECT count() AS n FROM greenstream.quarantine FINAL WHERE has(reasons, 'too_many_records') OR arrayExists(r -> startsWith(r, 'too_many_records'), reasons)",
      ),
    ).toBe(3);
  });

  it('nothing vanishes: refused files are dead-lettered with their path, logged, and nothing is written outside', async () => {
    const logged = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; source?: string; reason?: string })
      .filter((l) => l.msg === 'dead-lettered');
    expect(logged.map((l) => l.source).sort()).toEqual([...corpus.deadLettered].sort());
    const huge = logged.find((l) => l.source === 'raw/2024/03/11/06/p-huge.csv')!;
    expect(huge.reason).toMatch(/exceeds the limit/);
    // Its dead-letter folder was planted as a link out of the landing folder: no copy, said so.
    expect(huge.reason).toMatch(/no dead-letter copy/);
    for (const path of corpus.deadLettered.filter((p) => !p.startsWith('raw/2024/03/11/06/'))) {
      const reason = JSON.parse(
        await readFile(join(corpus.landing, 'dead-letter', `${path.replace(/\/$/, '')}.reason.json`), 'utf8'),
      ) as { source: string; reason: string };
      expect(reason.source).toBe(path);
    }
    expect(await readdir(join(corpus.outside, 'dead'))).toEqual([]);
    expect(await readdir(join(corpus.outside, 'hour'))).toEqual([]);
  });
});

/** Runs the CLI under a 1 GiB heap, sampling its peak resident memory from /proc. */
async function runWorker(
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string; peakRssMb: number }> {
  const child = spawn(
    process.execPath,
    ['--max-old-space-size=1024', join(repoRoot, 'bin', 'greenstream.js'), ...args],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  let peakKb = 0;
  const sampler = setInterval(() => {
    readFile(`/proc/${child.pid}/status`, 'utf8')
      .then((status) => {
        const hwm = /VmHWM:\s+(\d+)/.exec(status);
        if (hwm !== null) peakKb = Math.max(peakKb, Number(hwm[1]));
      })
      .catch(() => undefined);
  }, 100);
  const timeout = setTimeout(() => child.kill('SIGKILL'), 200_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(sampler);
  clearTimeout(timeout);
  return { code, stdout, stderr, peakRssMb: Math.round(peakKb / 1024) };
}
