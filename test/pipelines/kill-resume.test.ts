/**
 * The acceptance test of exactly-once results (issue 5): a worker SIGKILLed at random points of a simulated
 * week and restarted each time ends with the same hot-store content as a worker that was never interrupted.
 * Also the chunked checkpoints in the NATS KV bucket that make this possible for many MB of operator state.
 *
 * Set GS_KILL_SEED to replay a given sequence of kill points (the seed is printed).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { CHECKPOINT_BUCKET, CheckpointKv, connectNats } from '../../connectors/jetstream.js';
import { type CheckpointKvStore, kvCheckpointStore, splitUtf8 } from '../../pipelines/checkpoints.js';
import type { Checkpoint, RunTotals } from '../../pipelines/runner.js';
import { simulate } from '../../simulator/index.js';
import { type NatsServer, startNatsServer, uniqueName } from '../harness/servers.js';
import {
  clickhouseQuery,
  comparedTables,
  contentDiff,
  ensureBuilt,
  expectSuccess,
  lastJson,
  type RunTotalsOutput,
  runCli,
  seededRandom,
  startCli,
  tableCheck,
  tableContent,
} from './helpers.js';

// A server of its own: the CLI uses the fixed stream READINGS (subjects readings.>), which no other test
// file may see, and the kill test leaves consumers and checkpoints behind.
let server: NatsServer;
let nc: NatsConnection;
let workDir: string;

beforeAll(async () => {
  const started = performance.now();
  [server] = await Promise.all([startNatsServer(), ensureBuilt()]);
  nc = await connectNats({ servers: server.url, name: 'kill-resume-test' });
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-kill-'));
  console.log(`[kill-resume] nats-server up and dist built in ${Math.round(performance.now() - started)} ms`);
}, 240_000);

afterAll(async () => {
  await nc?.close();
  await server?.dispose();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

const totals: RunTotals = {
  recordsIn: 10,
  readings: 9,
  measured: 8,
  quarantined: 1,
  deadLettered: 0,
  faults: 2,
  alerts: 1,
};

/** A state string of about `bytes` UTF-8 bytes with multi-byte characters and surrogate pairs in it. */
function bigState(bytes: number, tag: string): string {
  const meters: Record<string, { last: number; name: string }> = {};
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const entry = { last: i * 0.25, name: `Zähler-東京-🔌-${tag}-${i}` };
    meters[`MTR-${i}`] = entry;
    size += 60;
  }
  return JSON.stringify({ tag, meters });
}

function checkpoint(seq: number, state: string): Checkpoint {
  return { seq, position: { lastSeq: seq * 100 }, state, totals, stateFormat: 'meter-quality/2' };
}

/** The real bucket, with a worker "killed" at its commit: chunks written, manifest never. */
function dyingAtCommit(kv: CheckpointKvStore, written: string[]): CheckpointKvStore {
  return {
    get: (key) => kv.get(key),
    delete: (key) => kv.delete(key),
    put: (key, value) => {
      written.push(key);
      return kv.put(key, value);
    },
    compareAndSet: async () => {
      throw new Error('killed before the commit');
    },
  };
}

describe('kvCheckpointStore (chunked checkpoints in NATS KV)', () => {
  let kv: CheckpointKv;
  beforeAll(async () => {
    kv = await CheckpointKv.open(jetstream(nc), { bucket: uniqueName('cp'), storage: 'memory' });
  });

  it('round-trips a state of several MB, far above max_payload, through 512 KiB chunks', async () => {
    const state = bigState(5 * 1024 * 1024, 'big');
    expect(Buffer.byteLength(state)).toBeGreaterThan(5 * 1024 * 1024);
    const writer = kvCheckpointStore(kv, 'big');
    expect(await writer.load()).toBeUndefined();
    const started = performance.now();
    await writer.save(checkpoint(1, state));
    const saveMs = performance.now() - started;
    const manifest = await kv.get('big');
    expect(manifest).not.toBeNull();
    expect(manifest!.value.length).toBeLessThan(4096);
    const chunks = (JSON.parse(manifest!.value) as { chunks: { count: number } }).chunks;
    expect(chunks.count).toBeGreaterThanOrEqual(10);

    const restored = await kvCheckpointStore(kv, 'big').load();
    expect(restored).toEqual(checkpoint(1, state));
    console.log(
      `[kv checkpoint] ${(Buffer.byteLength(state) / 1048576).toFixed(1)} MiB in ${chunks.count} chunks: save ${Math.round(saveMs)} ms`,
    );
  });

  it('refuses a stale writer, whose attempt leaves the committed checkpoint intact', async () => {
    const live = kvCheckpointStore(kv, 'contended', { chunkBytes: 64 * 1024 });
    const stale = kvCheckpointStore(kv, 'contended', { chunkBytes: 64 * 1024 });
    await live.load();
    await stale.load();
    const committed = checkpoint(1, bigState(300_000, 'live'));
    await live.save(committed);
    await expect(stale.save(checkpoint(1, bigState(300_000, 'stale')))).rejects.toThrow(
      /written by another worker/,
    );
    expect(await kvCheckpointStore(kv, 'contended').load()).toEqual(committed);
    // The live writer carries on over its own revision.
    const next = checkpoint(2, bigState(200_000, 'live-2'));
    await live.save(next);
    expect(await kvCheckpointStore(kv, 'contended').load()).toEqual(next);
  });

  it('deletes superseded chunks after each commit, and the chunks of a writer killed before its commit', async () => {
    const orphans: string[] = [];
    const dying = kvCheckpointStore(dyingAtCommit(kv, orphans), 'cleanup', { chunkBytes: 32 * 1024 });
    await dying.load();
    await expect(dying.save(checkpoint(1, bigState(150_000, 'dying')))).rejects.toThrow(/killed/);
    const orphanChunks = orphans.filter((k) => k.startsWith('cleanup.state.'));
    expect(orphanChunks.length).toBeGreaterThanOrEqual(4);

    const successor = kvCheckpointStore(kv, 'cleanup', { chunkBytes: 32 * 1024 });
    expect(await successor.load()).toBeUndefined();
    await successor.save(checkpoint(1, bigState(100_000, 'first')));
    for (const key of orphanChunks) expect(await kv.get(key), key).toBeNull();

    const chunkKeys = async () => {
      const m = JSON.parse((await kv.get('cleanup'))!.value) as {
        chunks: { writer: string; slot: number; count: number };
      };
      return Array.from(
        { length: m.chunks.count },
        (_, i) => `cleanup.state.${m.chunks.writer}.${m.chunks.slot}.${i}`,
      );
    };
    const first = await chunkKeys();
    await successor.save(checkpoint(2, bigState(100_000, 'second')));
    const second = await chunkKeys();
    expect(second).not.toEqual(first);
    for (const key of first) expect(await kv.get(key), key).toBeNull();
    for (const key of second) expect(await kv.get(key), key).not.toBeNull();
    expect((await kvCheckpointStore(kv, 'cleanup').load())?.seq).toBe(2);
  });

  it('fails clearly when a chunk the manifest names is missing', async () => {
    const store = kvCheckpointStore(kv, 'torn', { chunkBytes: 16 * 1024 });
    await store.load();
    await store.save(checkpoint(7, bigState(60_000, 'torn')));
    const m = JSON.parse((await kv.get('torn'))!.value) as { chunks: { writer: string; slot: number } };
    await kv.delete(`torn.state.${m.chunks.writer}.${m.chunks.slot}.1`);
    await expect(kvCheckpointStore(kv, 'torn').load()).rejects.toThrow(
      /checkpoint torn \(seq 7\) is missing state chunk 2 of \d+/,
    );
  });

  it('splits any text into valid UTF-8 pieces of at most the chunk size that join back to it', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 300 }),
        fc.integer({ min: 4, max: 40 }),
        (text, max) => {
          const parts = splitUtf8(text, max);
          expect(parts.join('')).toBe(text);
          for (const p of parts) {
            expect(Buffer.byteLength(p)).toBeLessThanOrEqual(max);
            expect(p.length).toBeGreaterThan(0);
            expect(Buffer.from(p, 'utf8').toString('utf8')).toBe(p);
          }
        },
      ),
    );
  });
});

describe('a worker SIGKILLed at random points and restarted', () => {
  const meters = 200;
  const days = 7;

  it(`ends with the same store content as an uninterrupted worker (${meters} meters × ${days} days)`, async () => {
    const clickhouseUrl = inject('clickhouseUrl');
    const seed = Number(process.env.GS_KILL_SEED ?? 20240311);
    const random = seededRandom(seed);
    const t0 = performance.now();
    const lap = (() => {
      let last = t0;
      return (what: string) => {
        const now = performance.now();
        console.log(`[kill-resume] ${what}: ${Math.round(now - last)} ms`);
        last = now;
      };
    })();

    const simDir = join(workDir, 'sim');
    // Small gateways: more, smaller messages, so a run has many checkpoints to be killed between.
    const sim = await simulate({ out: simDir, meters, days, start: '2024-03-11', seed: 11, gatewaySize: 10 });
    lap(`simulated ${sim.lines} lines in ${sim.files} files`);
    expectSuccess(await runCli(['publish', join(simDir, 'raw'), '--nats', server.url]), 'publish');
    lap('published');

    const dbA = uniqueName('gs_kill_a');
    const dbB = uniqueName('gs_kill_b');
    const common = [
      'run',
      '--source',
      server.url,
      '--registry',
      join(simDir, 'registry.csv'),
      '--hot',
      clickhouseUrl,
      '--no-cold',
      // Pulls of 32 files, three writes of outputs per checkpoint: most kills land mid-epoch, after
      // writes that the restarted worker redoes (possibly cut differently: the 1 s interval also cuts).
      '--pull',
      '32',
      '--flush-rows',
      '1500',
      '--checkpoint-flushes',
      '3',
      // An idle worker checkpoints within this (the kills wait for checkpoints).
      '--checkpoint-interval',
      '3000',
    ];
    const cwd = workDir;
    const a = expectSuccess(
      await runCli([...common, '--database', dbA, '--until-idle', '--worker', 'a'], { cwd }),
      'uninterrupted worker a',
    );
    const totalsA = lastJson<RunTotalsOutput>(a.stdout);
    const checkpointsA = a.stderr.split('\n').filter((l) => l.includes('"msg":"checkpoint"')).length;
    lap(`worker a (uninterrupted): ${checkpointsA} checkpoints, ${JSON.stringify(totalsA)}`);
    expect(totalsA.recordsIn).toBe(sim.lines);

    // Kill points: mostly "after n more checkpoints, plus a random delay" (mid-batch, mid-write or
    // mid-checkpoint), and once a plain delay from the start (during start-up or the first batch).
    const kills = 6;
    const killPoints: string[] = [];
    let checkpointsSeen = 0;
    for (let k = 0; k < kills; k++) {
      const worker = startCli([...common, '--database', dbB, '--worker', 'b'], { cwd, timeoutMs: 120_000 });
      const delayMs = Math.round(random() * 400);
      let point: string;
      if (k === 1) {
        const fromStart = 300 + Math.round(random() * 1500);
        await Promise.race([new Promise((r) => setTimeout(r, fromStart)), worker.done]);
        point = `${fromStart} ms after start`;
      } else {
        const after = 1 + Math.floor(random() * 3);
        const reached = await Promise.race([
          worker.waitForLog('checkpoint', after),
          new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
        ]);
        await new Promise((r) => setTimeout(r, delayMs));
        point = `${reached ? `after ${after} checkpoint(s)` : 'after 30 s without them'} + ${delayMs} ms`;
      }
      const killed = worker.child.kill('SIGKILL');
      const result = await worker.done;
      const seqs = worker.logs.filter((l) => l.msg === 'checkpoint').map((l) => Number(l.seq));
      checkpointsSeen += seqs.length;
      const line = `kill ${k + 1}: ${point}; checkpoints ${seqs.length === 0 ? 'none' : `${seqs[0]}–${seqs[seqs.length - 1]}`}; ${killed && result.signal === 'SIGKILL' ? 'killed' : `exited ${result.code}`}`;
      killPoints.push(line);
      console.log(`[kill-resume] seed ${seed} ${line}`);
      expect(result.signal === 'SIGKILL' || result.code === 0, result.stderr.slice(-2000)).toBe(true);
    }
    lap(`${kills} killed runs of worker b (${checkpointsSeen} checkpoints between them)`);
    const last = expectSuccess(
      await runCli([...common, '--database', dbB, '--until-idle', '--worker', 'b'], { cwd }),
      'restarted worker b',
    );
    const totalsB = lastJson<RunTotalsOutput>(last.stdout);
    lap(`worker b's last run (--until-idle): ${JSON.stringify(totalsB)}`);
    // The kills must have hit a worker with work left, or nothing resumed.
    expect(checkpointsSeen).toBeGreaterThanOrEqual(3);
    expect(last.stderr).toContain('"msg":"checkpoint"');

    // Totals are checkpointed with the state: the restarted worker ends with the uninterrupted one's.
    // Alerts are left out: they include processing-time alerts (backlog) raised at different moments.
    const { alerts: _a, ...dataTotalsA } = totalsA;
    const { alerts: _b, ...dataTotalsB } = totalsB;
    expect(dataTotalsB).toEqual(dataTotalsA);

    // The checkpoint really is many MB of state spread over chunks.
    const kv = await CheckpointKv.open(jetstream(nc), { bucket: CHECKPOINT_BUCKET });
    const manifest = JSON.parse((await kv.get('b'))!.value) as { chunks: { count: number; bytes: number } };
    console.log(
      `[kill-resume] worker b's checkpoint: ${(manifest.chunks.bytes / 1048576).toFixed(1)} MiB of state in ${manifest.chunks.count} chunks`,
    );
    expect(manifest.chunks.count).toBeGreaterThanOrEqual(2);

    const ch = clickhouseQuery(clickhouseUrl);
    try {
      for (const table of comparedTables) {
        const [checkA, checkB] = await Promise.all([
          tableCheck(ch.query, dbA, table),
          tableCheck(ch.query, dbB, table),
        ]);
        expect(checkB.rows, `${table}: rows through FINAL`).toBe(checkA.rows);
        expect(checkB.distinctKeys, `${table}: duplicates in B`).toBe(checkB.rows);
        expect(checkA.distinctKeys, `${table}: duplicates in A`).toBe(checkA.rows);
        const [contentA, contentB] = await Promise.all([
          tableContent(ch.query, dbA, table),
          tableContent(ch.query, dbB, table),
        ]);
        expect(contentDiff(contentA, contentB), `${table}: content`).toEqual({ onlyInA: [], onlyInB: [] });
        console.log(`[kill-resume] ${table}: ${checkB.rows} rows, same in both`);
      }
      const readings = Number(
        await ch.query(
          sql`SELECT count() FROM ${sql.ident(dbB, 'readings')} FINAL WHERE status = 'measured'`.text,
        ),
      );
      expect(readings).toBe(totalsA.measured);
    } finally {
      await ch.close();
    }
    lap('compared');
    console.log(`[kill-resume] kill points (seed ${seed}):\n  ${killPoints.join('\n  ')}`);
    console.log(`[kill-resume] total ${Math.round(performance.now() - t0)} ms`);
  }, 300_000);
});
