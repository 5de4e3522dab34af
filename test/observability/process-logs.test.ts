/**
 * Process metrics and levelled logs: prom-client's Node collectors and greenstream_build_info beside the
 * job's series in one exposition; pino lines with LOG_LEVEL, worker bindings, a line per ClickHouse retry;
 * and no secret (URL password, credential variables) in any line, tested through the real command line.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../cli/log.js';
import { processMetrics } from '../../connectors/process-metrics.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import { findFreePort } from '../harness/servers.js';
import { ensureBuilt, expectSuccess, runCli } from '../pipelines/helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-process-logs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('process metrics', () => {
  it('exposes resident memory, heap, GC pauses, event-loop lag and the build, in base units, with no name twice', async () => {
    const job = new JobMetrics();
    const text = `${job.render()}${await processMetrics({ worker: 'w7' }).render()}`;
    for (const name of [
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_gc_duration_seconds',
      'nodejs_eventloop_lag_seconds',
      'process_cpu_seconds_total',
      'greenstream_sink_up',
    ])
      expect(text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    const version = (
      JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
        version: string;
      }
    ).version;
    expect(text).toContain(
      `greenstream_build_info{version="${version}",node_version="${process.version}",worker="w7"} 1`,
    );
    const types = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    expect(new Set(types).size).toBe(types.length);
    const rss = Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
    expect(rss).toBeGreaterThan(10 * 1024 * 1024);
  });
});

function memoryLogger(env: NodeJS.ProcessEnv) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ env, destination }), lines };
}

describe('the log', () => {
  it('masks URL passwords, credential variables and secret-named fields anywhere in a line', () => {
    const env = { CLICKHOUSE_PASSWORD: 'ch-env-s3cret', NATS_TOKEN: 'nats-t0ken-value', LOG_LEVEL: 'debug' };
    const { log, lines } = memoryLogger(env);
    log.info(
      { url: 'http://admin:url-s3cret@db:8123/', nested: { why: 'auth ch-env-s3cret failed' } },
      'connecting',
    );
    log.warn(
      { password: 'plain-s3cret', list: ['nats://u:list-s3cret@h:4222'] },
      'token nats-t0ken-value refused',
    );
    log.error({ error: new Error('tls://x:err-s3cret@host down') }, 'failed at https://u:msg-s3cret@h/');
    log.debug({ query: '?password=q-s3cret&x=1' }, 'debug line');
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).not.toMatch(/s3cret|t0ken/);
      expect(JSON.parse(line)).toMatchObject({ level: expect.any(String), time: expect.any(String) });
    }
    expect(lines.join('\n')).toContain('http://***@db:8123/');
  });

  it('keeps to LOG_LEVEL and binds the worker to every line', () => {
    const { log, lines } = memoryLogger({ LOG_LEVEL: 'warn' });
    const bound = log.child({ worker: 'w3', partitions: '0-3' });
    bound.info({}, 'not shown');
    bound.warn({ n: 1 }, 'shown');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 'warn',
      msg: 'shown',
      worker: 'w3',
      partitions: '0-3',
      n: 1,
    });
  });

  it('logs every ClickHouse retry of a worker, with its bindings, and never a secret, then stops with 75', async () => {
    await ensureBuilt();
    const landing = join(dir, 'landing');
    expectSuccess(await runCli(['simulate', '--meters', '5', '--days', '1', '--out', landing]), 'simulate');
    const port = await findFreePort(); // nothing listens there
    const r = await runCli(
      [
        'run',
        '--until-idle',
        '--source',
        `files:${landing}`,
        '--registry',
        join(landing, 'registry.csv'),
        '--hot',
        `http://admin:url-s3cret@127.0.0.1:${port}`,
        '--no-cold',
        '--checkpoint',
        join(dir, 'cp.json'),
        '--worker',
        'w_log',
        '--sink-retry-budget',
        '3s',
      ],
      {
        env: {
          CLICKHOUSE_PASSWORD: 'ch-env-s3cret',
          NATS_PASSWORD: 'nats-pw-s3cret',
          GS_QUERY_PASSWORD: 'query-pw-s3cret',
          LOG_LEVEL: 'debug',
          NATS_URL: '',
          CLICKHOUSE_URL: '',
        },
        timeoutMs: 60_000,
      },
    );
    expect(r.code).toBe(75);
    expect(r.stderr).not.toMatch(/s3cret/);
    const lines = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const retries = lines.filter((l) => l.msg === 'clickhouse retry');
    expect(retries.length).toBeGreaterThanOrEqual(2);
    for (const line of retries)
      expect(line).toMatchObject({ level: 'warn', worker: 'w_log', operation: 'connect' });
    // Jittered backoff from 500 ms: the first delay is drawn from [250, 500].
    expect(Number(retries[0]!.delayMs)).toBeGreaterThanOrEqual(250);
    expect(Number(retries[0]!.delayMs)).toBeLessThanOrEqual(500);
    expect(r.stderr).toMatch(
      /ClickHouse unavailable for connect on server http:\/\/127\.0\.0\.1:\d+ after \d+ attempts in [34] s/,
    );
  }, 90_000);
});
