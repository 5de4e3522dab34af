import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type JobResult, runMeterQualityJob } from '../../pipelines/job.js';
import { simulate } from '../../simulator/index.js';

/**
 * "Nothing is dropped without a trace": on the simulator's dirty data plus undecodable files, every
 * record read is a stored received reading, a quarantine row or part of a dead-lettered file — counted
 * in the stores themselves (chDB and the Parquet lake), not only in the pipeline's counters.
 */
describe('records in = readings + quarantined + dead-lettered (embedded chDB and Parquet lake)', () => {
  let dir: string;
  let linesWritten = 0;
  const deadFiles = ['raw/2024/03/11/05/gw-binary.csv', 'raw/2024/03/11/06/gw-noheader.csv'];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-balance-'));
    const summary = await simulate({
      out: join(dir, 'landing'),
      meters: 200,
      days: 3,
      start: '2024-03-11',
      seed: 11,
    });
    linesWritten = summary.lines;
    const garbage = Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37, 0x00, 0x42, 0x99, 0x00, 0x00]);
    await writeFile(join(dir, 'landing', deadFiles[0]!), garbage);
    await writeFile(join(dir, 'landing', deadFiles[1]!), 'this is,not,a readings header\n1,2,3\n');
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const run = (): Promise<JobResult> =>
    runMeterQualityJob({
      source: { kind: 'files', root: join(dir, 'landing') },
      registryPath: join(dir, 'landing', 'registry.csv'),
      hot: { kind: 'chdb', path: join(dir, 'chdb') },
      coldDir: join(dir, 'lake'),
      checkpointPath: join(dir, 'checkpoint.json'),
      untilIdle: true,
      replay: false,
      profile: resolveRuleProfile(),
      workerId: 'balance',
      flushRows: 20_000,
      checkpointEveryFlushes: 2,
    });

  it('balances in the stores, dead-letters undecodable files whole, and a full re-run doubles nothing', async () => {
    const first = await run();
    const count = async (query: string) =>
      Number((await first.hot.query<{ n: number | string }>(sql.raw(query)))[0]!.n);
    try {
      const measured = await count(
        "SELECT count() AS n FROM greenstream.readings FINAL WHERE status = 'measured'",
      );
      const quarantined = await count('SELECT count() AS n FROM greenstream.quarantine FINAL');
      expect(first.totals.deadLettered).toBe(deadFiles.length);
      expect(measured + quarantined).toBe(linesWritten);
      expect(first.totals.recordsIn).toBe(linesWritten);
      expect(first.totals.measured).toBe(measured);
      expect(first.totals.quarantined).toBe(quarantined);
      for (const f of deadFiles) {
        const reason = JSON.parse(
          await readFile(join(dir, 'landing', 'dead-letter', `${f}.reason.json`), 'utf8'),
        );
        expect(reason.source).toBe(f);
        expect(reason.reason.length).toBeGreaterThan(5);
      }
      const reasons = await first.hot.query<{ reason: string; n: string | number }>(
        sql.raw(
          'SELECT arrayJoin(reasons) AS reason, count() AS n FROM greenstream.quarantine FINAL GROUP BY reason ORDER BY reason',
        ),
      );
      const byReason = new Map(reasons.map((r) => [r.reason.split(':')[0], Number(r.n)]));
      for (const expected of [
        'unknown_meter',
        'negative_value',
        'out_of_range',
        'future_timestamp',
        'clock_reset',
        'duplicate',
        'ambiguous_unit',
        'invalid_unit',
      ]) {
        expect(byReason.get(expected) ?? 0, `quarantine reason ${expected}`).toBeGreaterThan(0);
      }
      // The lake holds the same readings as the hot store.
      const lakeRows = await first.lake!.query(
        "SELECT count(*) AS n FROM readings WHERE status = 'measured'",
      );
      expect(Number(lakeRows[0]!.n)).toBe(measured);
      const lakeQuarantine = await first.lake!.query('SELECT count(*) AS n FROM quarantine');
      expect(Number(lakeQuarantine[0]!.n)).toBe(quarantined);
    } finally {
      await first.lake?.close();
      await first.hot.close();
    }

    // A second run over the same files with no checkpoint (a lost state, a redeployment) stores nothing twice.
    await rm(join(dir, 'checkpoint.json'));
    const second = await run();
    try {
      const n = async (query: string) =>
        Number((await second.hot.query<{ n: number | string }>(sql.raw(query)))[0]!.n);
      const total = await n('SELECT count() AS n FROM greenstream.readings FINAL');
      const distinct = await n('SELECT uniqExact(meter_id, ts) AS n FROM greenstream.readings');
      expect(total).toBe(distinct);
      expect(await n("SELECT count() AS n FROM greenstream.readings FINAL WHERE status = 'measured'")).toBe(
        second.totals.measured,
      );
      expect(await n('SELECT count() AS n FROM greenstream.quarantine FINAL')).toBe(
        second.totals.quarantined,
      );
      expect(await n('SELECT count() AS n FROM greenstream.faults FINAL')).toBe(
        await n('SELECT uniqExact(meter_id, fault_type, window_start) AS n FROM greenstream.faults'),
      );
    } finally {
      await second.lake?.close();
      await second.hot.close();
    }
  }, 240_000);
});
