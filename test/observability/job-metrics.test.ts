import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MetricsServer, startMetricsServer } from '../../connectors/metrics-server.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type JobResult, runMeterQualityJob } from '../../pipelines/job.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import { simulate } from '../../simulator/index.js';

/** Sample values by series text (`name{labels}`), as a scraper reads them. */
function samples(exposition: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const sumOf = (s: Map<string, number>, prefix: string) =>
  [...s].filter(([k]) => k.startsWith(prefix)).reduce((acc, [, v]) => acc + v, 0);

describe('metrics of the meter-quality job on a simulated day (embedded chDB)', () => {
  let dir: string;
  let server: MetricsServer;
  const metrics = new JobMetrics();
  let result: JobResult;
  const readyAtCheckpoints: boolean[] = [];
  let flushes = 0;
  let readyBefore = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-observability-'));
    const landing = join(dir, 'landing');
    await simulate({ out: landing, meters: 50, days: 1, start: '2024-03-11', seed: 3 });
    server = await startMetricsServer({
      port: 0,
      host: '127.0.0.1',
      render: () => metrics.render(),
      ready: () => metrics.isReady(),
    });
    readyBefore = (await fetch(`${server.url}/readyz`)).status;
    result = await runMeterQualityJob({
      source: { kind: 'files', root: landing },
      registryPath: join(landing, 'registry.csv'),
      hot: { kind: 'chdb', path: join(dir, 'chdb') },
      checkpointPath: join(dir, 'checkpoint.json'),
      untilIdle: true,
      replay: false,
      profile: resolveRuleProfile(),
      workerId: 'obs',
      flushRows: 1_000,
      checkpointEveryFlushes: 2,
      observer: metrics.observer,
      onCheckpoint: () => readyAtCheckpoints.push(metrics.isReady()),
      onFlush: () => {
        flushes += 1;
      },
    });
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await result?.hot.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('was not ready before the job opened, ready while it ran, not ready once it stopped', async () => {
    expect(readyBefore).toBe(503);
    expect(readyAtCheckpoints.length).toBeGreaterThan(1);
    expect(readyAtCheckpoints.every((r) => r)).toBe(true);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('shows per-stage throughput that agrees with the run totals', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const s = samples(text);
    const stage = (name: string, output: string) =>
      s.get(`greenstream_stage_elements_total{stage="${name}",output="${output}"}`) ?? 0;
    const { totals } = result;
    expect(totals.readings).toBeGreaterThan(0);
    for (const name of ['awaitRegistry', 'parseReading', 'assignWatermarks', 'fillGaps', 'scoreQuality']) {
      expect(stage(name, 'in'), `${name} in`).toBeGreaterThan(0);
      expect(stage(name, 'out'), `${name} out`).toBeGreaterThan(0);
    }
    expect(stage('aggregateHourly', 'out')).toBeGreaterThan(0);
    // Every stored reading left the last stage of the trunk, and nothing else was stored.
    expect(stage('stampLineage', 'out')).toBe(totals.readings);
    expect(sumOf(s, 'greenstream_readings_stored_total{')).toBe(totals.readings);
    expect(s.get('greenstream_readings_stored_total{status="measured"}')).toBe(totals.measured);
    expect(s.get('greenstream_records_in_total')).toBe(totals.recordsIn);
    expect(s.get('greenstream_quarantined_total')).toBe(totals.quarantined);
    expect(totals.quarantined).toBeGreaterThan(0);
    expect(s.get('greenstream_dead_lettered_total')).toBe(totals.deadLettered);
    expect(sumOf(s, 'greenstream_alerts_total{')).toBe(totals.alerts);
    const checkpoints = s.get('greenstream_checkpoints_total') ?? 0;
    expect(checkpoints).toBe(readyAtCheckpoints.length);
    expect(flushes).toBeGreaterThan(checkpoints);
    expect(s.get('greenstream_sink_write_seconds_count{outcome="ok"}')).toBe(flushes);
    expect(s.get('greenstream_sink_write_seconds_bucket{outcome="ok",le="+Inf"}')).toBe(flushes);
    expect(s.get('greenstream_state_snapshot_chars')).toBeGreaterThan(10_000);
    expect(s.get('greenstream_sink_write_seconds_sum{outcome="ok"}')).toBeGreaterThan(0);
    // The simulated day is in March 2024: the watermark is that far behind the wall clock.
    const delay = s.get('greenstream_watermark_delay_seconds') ?? 0;
    expect(delay).toBeGreaterThan((Date.now() - Date.UTC(2024, 2, 13)) / 1000);
    expect(delay).toBeLessThan((Date.now() - Date.UTC(2024, 2, 11)) / 1000);
    // The files source cannot tell its lag: the series is absent rather than zero.
    expect(s.has('greenstream_consumer_lag')).toBe(false);
  });
});
