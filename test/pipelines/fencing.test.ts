/**
 * Issue 11, "fencing": a worker claims its id (a lease in the KV bucket, or a lock file beside a local
 * checkpoint) before it touches the consumer; a newer worker with the same id waits for the lease to lapse
 * or takes it over, and the older one stops at its next guarded action with `FencedError`. End to end, two
 * `greenstream run` processes with one `--worker` id, the second started at seeded random points (taking
 * over a live worker, or waiting out a paused one), store exactly what one uninterrupted worker stores.
 *
 * Set GS_FENCE_SEED to replay a given sequence of start points (the seed is printed).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acquireFileLease } from '../../connectors/file-lease.js';
import { CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import { acquireKvLease } from '../../connectors/jetstream-lease.js';
import { FencedError, thisHolder } from '../../connectors/lease.js';
import { simulate } from '../../simulator/index.js';
import { type NatsServer, startNatsServer, uniqueName } from '../harness/servers.js';
import {
  type CliProcess,
  clickhouseQuery,
  comparedColumns,
  comparedTables,
  contentDiff,
  ensureBuilt,
  expectSuccess,
  lastJson,
  type RunTotalsOutput,
  runCli,
  seededRandom,
  sleep,
  startCli,
  tableCheck,
  tableContent,
} from './helpers.js';

// A server of its own: the CLI uses the fixed stream READINGS, which no other test file may see.
let server: NatsServer;
let nc: NatsConnection;
let workDir: string;

beforeAll(async () => {
  [server] = await Promise.all([startNatsServer(), ensureBuilt()]);
  nc = await connectNats({ servers: server.url, name: 'fencing-test' });
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-fence-'));
}, 240_000);

afterAll(async () => {
  await nc?.close();
  await server?.dispose();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

/** Whether the promise settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(ms);
  return settled;
}

/** A pid no process has any more. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

describe('the worker lease in the KV bucket', () => {
  let kv: CheckpointKv;
  beforeAll(async () => {
    kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('lease'), storage: 'memory' });
  });

  it('keeps a second worker waiting while the holder renews, and hands it epoch 2 once released', async () => {
    const first = await acquireKvLease(kv, 'w.lease', { ttlMs: 450 });
    expect(first.epoch).toBe(1);
    const waits: number[] = [];
    const second = acquireKvLease(kv, 'w.lease', { ttlMs: 450, onWait: (_h, epoch) => waits.push(epoch) });
    // Three lease periods: renewals keep it from lapsing.
    expect(await settlesWithin(second, 1_400)).toBe(false);
    expect(waits).toEqual([1]);
    await first.check('write outputs');
    await first.release();
    const lease = await second;
    expect(lease.epoch).toBe(2);
    await lease.check('write outputs');
    await expect(first.check('write outputs')).rejects.toBeInstanceOf(FencedError);
    await lease.release();
  });

  it('lets a lease whose holder stopped renewing lapse after its period, as the waiter measures it', async () => {
    // A holder on another machine that vanished: its pid cannot be checked, only its silence.
    const vanished = { ...thisHolder(), host: 'elsewhere', pid: 1 };
    await kv.put('gone.lease', JSON.stringify({ epoch: 7, holder: vanished, ttlMs: 400 }));
    const started = performance.now();
    const lease = await acquireKvLease(kv, 'gone.lease', { ttlMs: 5_000 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    expect(lease.epoch).toBe(8);
    await lease.release();
  });

  it('takes a lease whose holder died on this machine over at once', async () => {
    const dead = { ...thisHolder(), pid: deadPid() };
    await kv.put('dead.lease', JSON.stringify({ epoch: 3, holder: dead, ttlMs: 60_000 }));
    const started = performance.now();
    const lease = await acquireKvLease(kv, 'dead.lease', { ttlMs: 5_000 });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(lease.epoch).toBe(4);
    await lease.release();
  });

  it('with takeover bumps the epoch at once, waits one period, and fences the old holder', async () => {
    const old = await acquireKvLease(kv, 'taken.lease', { ttlMs: 600 });
    const taking = acquireKvLease(kv, 'taken.lease', { ttlMs: 600, takeover: true });
    await sleep(100);
    // Before the new holder touches anything, the old one already stops at its next guarded action.
    await expect(old.check('acknowledge')).rejects.toThrow(
      /fenced: worker lease taken\.lease is now held by pid \d+ on .* \(epoch 2; this worker had epoch 1\)/,
    );
    expect(old.fenced).toBe(true);
    const started = performance.now();
    const lease = await taking;
    expect(performance.now() - started).toBeGreaterThanOrEqual(350);
    expect(lease.epoch).toBe(2);
    await lease.check('open the source');
    // A fenced holder's release leaves the new holder's lease alone.
    await old.release();
    await lease.check('pull');
    await lease.release();
  });

  it('stops a holder that was paused past its lease period even before anyone took over', async () => {
    const lease = await acquireKvLease(kv, 'paused.lease', { ttlMs: 300 });
    const until = performance.now() + 450;
    while (performance.now() < until) {
      // The event loop is frozen, as in a stopped process: no renewal runs.
    }
    const error = await lease.check('save a checkpoint').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FencedError);
    expect((error as FencedError).retryable).toBe(false);
    expect((error as Error).message).toMatch(/went unrenewed for 300 ms before "save a checkpoint"/);
  });
});

describe('the checkpoint lock of the files source', () => {
  it('waits for a live holder, takes a dead one over at once, and fences the holder it takes over', async () => {
    const dir = await mkdtemp(join(workDir, 'lock-'));
    const path = join(dir, 'checkpoint.json.lock');
    const first = await acquireFileLease(path);
    const second = acquireFileLease(path);
    expect(await settlesWithin(second, 600)).toBe(false);
    await first.release();
    const next = await second;
    await next.check('pull');
    await next.release();

    await writeFile(path, JSON.stringify({ epoch: 4, holder: { ...thisHolder(), pid: deadPid() } }));
    const afterDead = await acquireFileLease(path);
    expect(afterDead.epoch).toBe(5);

    // This process is alive: the takeover waits (here 300 ms at most) for it to stop.
    const taker = await acquireFileLease(path, { takeover: true, takeoverWaitMs: 300 });
    expect(taker.epoch).toBe(6);
    await expect(afterDead.check('save a checkpoint')).rejects.toThrow(
      /fenced: the checkpoint lock .* is now held by pid \d+ .*\(epoch 6; this worker had epoch 5\)/,
    );
    await afterDead.release();
    await taker.check('write outputs');
    await taker.release();
  });
});

/** Waits for `count` more checkpoint log lines (or 20 s), then `delayMs`. */
async function afterCheckpoints(worker: CliProcess, count: number, delayMs: number): Promise<string> {
  const seen = worker.logs.filter((l) => l.msg === 'checkpoint').length;
  const reached = await Promise.race([
    worker.waitForLog('checkpoint', seen + count),
    sleep(20_000).then(() => false),
  ]);
  await sleep(delayMs);
  return `${reached ? `after ${count} checkpoint(s)` : 'after 20 s without them'} + ${delayMs} ms`;
}

describe('two CLI workers with one --worker id on one stream', () => {
  it('end with the store of one uninterrupted worker; the older one exits 3 with the fencing message', async () => {
    const clickhouseUrl = inject('clickhouseUrl');
    const seed = Number(process.env.GS_FENCE_SEED ?? 20241106);
    const random = seededRandom(seed);
    const t0 = performance.now();
    const simDir = join(workDir, 'sim');
    const sim = await simulate({
      out: simDir,
      meters: 80,
      days: 3,
      start: '2024-03-11',
      seed: 17,
      gatewaySize: 10,
    });
    expectSuccess(await runCli(['publish', join(simDir, 'raw'), '--nats', server.url]), 'publish');
    const common = [
      'run',
      '--source',
      server.url,
      '--registry',
      join(simDir, 'registry.csv'),
      '--hot',
      clickhouseUrl,
      '--no-cold',
      '--pull',
      '16',
      '--flush-rows',
      '800',
      '--checkpoint-flushes',
      '2',
      '--checkpoint-interval',
      '2000',
      '--lease',
      '1500',
    ];
    const cwd = workDir;
    const dbA = uniqueName('gs_fence_a');
    const a = expectSuccess(
      await runCli([...common, '--database', dbA, '--until-idle', '--worker', 'a'], { cwd }),
      'uninterrupted worker',
    );
    const totalsA = lastJson<RunTotalsOutput>(a.stdout);
    expect(totalsA.recordsIn).toBe(sim.lines);
    const log: string[] = [`uninterrupted ${a.ms} ms`];

    // Round 1: the newer worker takes the id over from a live one (--takeover).
    const dbB = uniqueName('gs_fence_b');
    const b1 = startCli([...common, '--database', dbB, '--worker', 'b'], { cwd, timeoutMs: 150_000 });
    const point1 = await afterCheckpoints(b1, 1 + Math.floor(random() * 3), Math.round(random() * 600));
    const b2 = startCli([...common, '--database', dbB, '--worker', 'b', '--until-idle', '--takeover'], {
      cwd,
      timeoutMs: 150_000,
    });
    const [r1, r2] = await Promise.all([b1.done, b2.done]);
    log.push(`takeover ${point1}: old exited ${r1.code} after ${r1.ms} ms, new ${r2.code} after ${r2.ms} ms`);
    expectSuccess(r2, 'the worker that took over');
    expect(r1.code, r1.stderr.slice(-3000)).toBe(6);
    expect(r1.stderr).toMatch(/greenstream run: fenced: worker lease b\.lease is now held by pid \d+/);
    expect(r2.stderr).toContain('"msg":"taking worker lease over"');

    // Round 2: the older worker is paused (a frozen pod); the newer one waits out its lease, then it resumes.
    const dbC = uniqueName('gs_fence_c');
    const c1 = startCli([...common, '--database', dbC, '--worker', 'c'], { cwd, timeoutMs: 150_000 });
    const point2 = await afterCheckpoints(c1, 1 + Math.floor(random() * 3), Math.round(random() * 600));
    c1.child.kill('SIGSTOP');
    const c2 = startCli([...common, '--database', dbC, '--worker', 'c', '--until-idle'], {
      cwd,
      timeoutMs: 150_000,
    });
    const acquired = await c2.waitForLog('worker lease acquired', 1);
    c1.child.kill('SIGCONT');
    const [s1, s2] = await Promise.all([c1.done, c2.done]);
    log.push(`pause ${point2}: old exited ${s1.code}, new ${s2.code} after ${s2.ms} ms`);
    expect(acquired, s2.stderr.slice(-3000)).toBe(true);
    expectSuccess(s2, 'the worker that waited');
    expect(s2.stderr).toContain('"msg":"waiting for worker lease"');
    expect(s1.code, s1.stderr.slice(-3000)).toBe(6);
    expect(s1.stderr).toMatch(/greenstream run: fenced: worker lease c\.lease/);

    // Totals are checkpointed with the state; processing-time alerts differ by design.
    const { alerts: _a, ...dataA } = totalsA;
    for (const r of [r2, s2]) {
      const { alerts: _x, ...data } = lastJson<RunTotalsOutput>(r.stdout);
      expect(data).toEqual(dataA);
    }
    const ch = clickhouseQuery(clickhouseUrl);
    try {
      for (const db of [dbB, dbC]) {
        for (const table of comparedTables) {
          const [checkA, check] = await Promise.all([
            tableCheck(ch.query, dbA, table),
            tableCheck(ch.query, db, table),
          ]);
          expect(check.rows, `${db}.${table}: rows through FINAL`).toBe(checkA.rows);
          expect(check.distinctKeys, `${db}.${table}: duplicates`).toBe(check.rows);
          const [contentA, content] = await Promise.all([
            tableContent(ch.query, dbA, table),
            tableContent(ch.query, db, table),
          ]);
          expect(contentDiff(contentA, content), `${db}.${table}: content`).toEqual({
            onlyInA: [],
            onlyInB: [],
          });
        }
      }
    } finally {
      await ch.close();
    }
    console.log(
      `[fencing] seed ${seed}:\n  ${log.join('\n  ')}\n  total ${Math.round(performance.now() - t0)} ms`,
    );
  }, 240_000);
});

describe('two CLI workers on one files-source checkpoint (embedded chDB)', () => {
  it('the one that takes the lock over ends with the uninterrupted store; the older exits 3, a waiter waits', async () => {
    const seed = Number(process.env.GS_FENCE_SEED ?? 20241106) + 1;
    const random = seededRandom(seed);
    const dir = await mkdtemp(join(workDir, 'files-'));
    const simDir = join(dir, 'sim');
    await simulate({ out: simDir, meters: 40, days: 2, start: '2024-03-11', seed: 29, gatewaySize: 10 });
    const run = (store: string, ...extra: string[]) => [
      'run',
      '--source',
      `files:${simDir}`,
      '--registry',
      join(simDir, 'registry.csv'),
      '--hot',
      `chdb:${join(dir, store)}`,
      '--cold',
      join(dir, `${store}-lake`),
      '--flush-rows',
      '500',
      '--checkpoint-flushes',
      '2',
      ...extra,
    ];
    /** A fingerprint of every compared table's content through FINAL. */
    const fingerprint = async (store: string) => {
      const parts = comparedTables.map(
        (t) =>
          `(SELECT toString(count()) || ':' || toString(sum(cityHash64(${comparedColumnsOf(t)}))) FROM greenstream.${t} FINAL${t === 'alerts' ? " WHERE kind NOT IN ('backlog', 'quality_degradation', 'transformation_failure')" : ''})`,
      );
      const result = expectSuccess(
        await runCli([
          'sql',
          '--hot',
          `chdb:${join(dir, store)}`,
          '--format',
          'csv',
          `SELECT ${parts.join(', ')}`,
        ]),
        'fingerprint',
      );
      return result.stdout.trim().split('\n').at(-1)!;
    };
    const cwd = dir;
    expectSuccess(await runCli(run('alone', '--until-idle'), { cwd }), 'uninterrupted');
    const expected = await fingerprint('alone');

    // Takeover at a seeded point of the first worker's run (start-up, mid-run or idle after draining),
    // counted from when it holds the lock: counted from its spawn, a loaded machine could start the
    // second first, which then held the lock and the first waited for it and ran on live.
    const delayMs = Math.round(random() * 3_000);
    const first = startCli(run('shared'), { cwd, timeoutMs: 150_000 });
    await waitForLockHolder(join(dir, 'shared', 'checkpoint.json.lock'), first.child.pid, 60_000);
    await sleep(delayMs);
    const second = startCli(run('shared', '--until-idle', '--takeover'), { cwd, timeoutMs: 150_000 });
    const [r1, r2] = await Promise.all([first.done, second.done]);
    expectSuccess(r2, 'the worker that took over');
    expect(r1.code, r1.stderr.slice(-3000)).toBe(6);
    expect(r1.stderr).toMatch(
      /greenstream run: fenced: the checkpoint lock \S+checkpoint\.json\.lock is now held by pid \d+/,
    );
    expect(await fingerprint('shared')).toBe(expected);

    // Without --takeover the newer one waits for the lock; a clean stop of the holder hands it over.
    const third = startCli(run('waited'), { cwd, timeoutMs: 150_000 });
    await third.waitForLog('checkpoint', 1);
    const fourth = startCli(run('waited', '--until-idle'), { cwd, timeoutMs: 150_000 });
    expect(await fourth.waitForLog('waiting for checkpoint lock', 1)).toBe(true);
    third.child.kill('SIGTERM');
    const [r3, r4] = await Promise.all([third.done, fourth.done]);
    expectSuccess(r3, 'the holder stopped by SIGTERM');
    expectSuccess(r4, 'the worker that waited');
    expect(await fingerprint('waited')).toBe(expected);
    console.log(`[fencing] files source, seed ${seed}: takeover ${delayMs} ms after start`);
  }, 240_000);
});

/** Waits until the lock file of a checkpoint names process `pid` as its holder. */
async function waitForLockHolder(path: string, pid: number | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    try {
      if (pid !== undefined && (JSON.parse(text) as { holder?: { pid?: number } }).holder?.pid === pid)
        return;
    } catch {
      // Not written yet, or written as we read it.
    }
    if (Date.now() > deadline) throw new Error(`${path} never named pid ${pid} as its holder: ${text}`);
    await sleep(50);
  }
}

function comparedColumnsOf(table: (typeof comparedTables)[number]): string {
  return comparedColumns[table]!.join(', ');
}
