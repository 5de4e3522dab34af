import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { SinkUnavailableError } from '../../connectors/clickhouse.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type JobConfig, runMeterQualityJob } from '../../pipelines/job.js';
import type { Checkpoint } from '../../pipelines/runner.js';
import { simulate } from '../../simulator/index.js';
import { type ClickHouseServer, startClickHouseServer } from '../harness/servers.js';

/**
 * The seeds' failure strategy on a real server: transient sink failures are retried; when the sink stays
 * down the pipeline stops without moving its checkpoint (nothing acknowledged that was not stored), and a
 * restart once the server is back finishes the job with nothing lost and nothing doubled.
 */
describe('ClickHouse stopped mid-stream', () => {
  let dir: string;
  let ch: ClickHouseServer;
  let lines = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-outage-'));
    lines = (
      await simulate({ out: join(dir, 'landing'), meters: 100, days: 2, start: '2024-03-11', seed: 5 })
    ).lines;
    ch = await startClickHouseServer();
  }, 120_000);

  afterAll(async () => {
    await ch?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const config = (onCheckpoint?: (cp: Checkpoint) => void): JobConfig => ({
    source: { kind: 'files', root: join(dir, 'landing') },
    registryPath: join(dir, 'landing', 'registry.csv'),
    hot: { kind: 'server', url: ch.url, database: 'gs_outage' },
    hotOptions: { retry: { retries: 3, baseDelayMs: 50, maxDelayMs: 200 } },
    checkpointPath: join(dir, 'checkpoint.json'),
    untilIdle: true,
    replay: false,
    profile: resolveRuleProfile(),
    workerId: 'outage',
    // A write and a checkpoint per pull of 16 files: the server dies between two pulls.
    flushRows: 1_000,
    checkpointEveryFlushes: 1,
    ...(onCheckpoint === undefined ? {} : { onCheckpoint }),
  });

  it('stops without committing while the server is down, then resumes without loss or duplicates', async () => {
    let stopped: Promise<void> | undefined;
    let committedBeforeOutage = 0;
    const failed = await runMeterQualityJob(
      config((cp) => {
        if (cp.seq === 2 && stopped === undefined) {
          committedBeforeOutage = cp.seq;
          stopped = ch.kill();
        }
      }),
    ).then(
      () => undefined,
      (err: unknown) => err,
    );
    await stopped;
    expect(failed).toBeInstanceOf(SinkUnavailableError);
    const saved = JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8')) as Checkpoint;
    expect(saved.seq).toBe(committedBeforeOutage);

    await ch.restart();
    const { totals, hot } = await runMeterQualityJob(config());
    try {
      const n = async (q: string) => Number((await hot.query<{ n: string | number }>(sql.raw(q)))[0]!.n);
      const measured = await n("SELECT count() AS n FROM gs_outage.readings FINAL WHERE status = 'measured'");
      const quarantined = await n('SELECT count() AS n FROM gs_outage.quarantine FINAL');
      expect(measured + quarantined).toBe(lines);
      expect(totals.recordsIn).toBe(lines);
      expect(await n('SELECT count() AS n FROM gs_outage.readings FINAL')).toBe(
        await n('SELECT uniqExact(meter_id, ts) AS n FROM gs_outage.readings'),
      );
    } finally {
      await hot.close();
    }
  }, 180_000);
});
