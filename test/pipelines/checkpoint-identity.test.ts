/**
 * Issue 11, "a checkpoint knows its store": a checkpoint records the stores it was taken with (each
 * store's id, kept in the store) and a run into other stores, or into a store recreated empty, is refused
 * with what differs and how to proceed, instead of treating every input as already stored. The files
 * source's default checkpoint lives beside its chDB store, so a run into a new store starts fresh.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { identityDifferences, type SinkIdentity } from '../../pipelines/store-identity.js';
import { simulate } from '../../simulator/index.js';
import { type NatsServer, startNatsServer, uniqueName } from '../harness/servers.js';
import {
  type CliResult,
  clickhouseQuery,
  ensureBuilt,
  expectSuccess,
  lastJson,
  type RunTotalsOutput,
  runCli,
} from './helpers.js';

let workDir: string;
let simDir: string;
let lines: number;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-identity-'));
  simDir = join(workDir, 'sim');
  const [sim] = await Promise.all([
    simulate({ out: simDir, meters: 30, days: 1, start: '2024-03-11', seed: 23 }),
    ensureBuilt(),
  ]);
  lines = sim.lines;
}, 240_000);

afterAll(async () => {
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

const EXIT_CHECKPOINT_MISMATCH = 3;

function expectRefused(result: CliResult, ...patterns: RegExp[]): void {
  expect(result.code, result.stderr.slice(-3000)).toBe(EXIT_CHECKPOINT_MISMATCH);
  expect(result.stderr).toMatch(
    /greenstream run: checkpoint .* \(seq \d+\) belongs to other stores than this run's/,
  );
  expect(result.stderr).toMatch(
    /a new --worker id, another --checkpoint file \(files source\), or --reset-checkpoint/,
  );
  for (const p of patterns) expect(result.stderr).toMatch(p);
  // Refused before anything was read: no checkpoint, no totals.
  expect(result.stderr).not.toContain('"msg":"checkpoint"');
  expect(result.stdout).toBe('');
}

describe('identityDifferences', () => {
  const identity = (storeId: string, lake: SinkIdentity['lake']): SinkIdentity => ({
    hot: { target: 'http://ch:8123', database: 'greenstream', storeId },
    lake,
  });
  const lakeA = { root: '/data/lake', storeId: 'lake-a' };

  it('accepts any id the hot store answers to (two workers created it at once), and a run without a lake', () => {
    const current = { identity: identity('id-2', lakeA), hotStoreIds: ['id-2', 'id-1'] };
    expect(identityDifferences(identity('id-1', lakeA), current)).toEqual([]);
    expect(
      identityDifferences(identity('id-1', lakeA), { ...current, identity: identity('id-2', null) }),
    ).toEqual([]);
  });

  it('names a store recreated empty, another lake, and a lake added since', () => {
    const current = {
      identity: identity('id-9', { root: '/data/lake', storeId: 'lake-b' }),
      hotStoreIds: ['id-9'],
    };
    expect(identityDifferences(identity('id-1', lakeA), current)).toEqual([
      "hot store http://ch:8123 database greenstream is not the one it was taken with: its id is id-9, the checkpoint's id-1 (the store was recreated or emptied)",
      'lake /data/lake is not the one it was taken with (its id file _greenstream_store.json differs: recreated or emptied)',
    ]);
    expect(identityDifferences(identity('id-9', null), current)).toEqual([
      'lake: checkpoint taken with no lake (--no-cold), this run writes to lake /data/lake',
    ]);
  });
});

describe('the files source on chDB', () => {
  const landing = () => `files:${join(workDir, 'landing')}`;
  const run = (hot: string, cold: string, ...extra: string[]) =>
    runCli(
      [
        'run',
        '--source',
        landing(),
        '--registry',
        join(simDir, 'registry.csv'),
        '--hot',
        `chdb:${join(workDir, hot)}`,
        '--cold',
        join(workDir, cold),
        '--until-idle',
        ...extra,
      ],
      { cwd: workDir },
    );
  const readings = async (hot: string) =>
    Number(
      lastJson<{ n: string | number }[]>(
        expectSuccess(
          await runCli([
            'sql',
            '--hot',
            `chdb:${join(workDir, hot)}`,
            '--format',
            'json',
            "SELECT count() AS n FROM greenstream.readings FINAL WHERE status = 'measured'",
          ]),
          'sql',
        ).stdout.replace(/\n/g, ''),
      )[0]!.n,
    );

  it('keeps the checkpoint beside its store, refuses an old checkpoint for other stores, and resets on request', async () => {
    await cp(join(simDir, 'raw'), join(workDir, 'landing', 'raw'), { recursive: true });
    const first = lastJson<RunTotalsOutput>(expectSuccess(await run('chdbA', 'lakeA'), 'first run').stdout);
    expect(first.recordsIn).toBe(lines);

    // The issue's case: same landing folder, another store, no --checkpoint. Everything is stored again.
    const second = lastJson<RunTotalsOutput>(
      expectSuccess(await run('chdbB', 'lakeB'), 'second store').stdout,
    );
    expect(second).toMatchObject({ recordsIn: lines, measured: first.measured });

    // An explicit checkpoint of the first store, into a third: refused, saying what differs.
    const oldCheckpoint = join(workDir, 'chdbA', 'checkpoint.json');
    expectRefused(
      await run('chdbC', 'lakeC', '--checkpoint', oldCheckpoint),
      /hot store: checkpoint taken with chdb:\S+\/chdbA database greenstream, this run writes to chdb:\S+\/chdbC database greenstream/,
      /lake: checkpoint taken with lake \S+\/lakeA, this run writes to lake \S+\/lakeC/,
    );
    // Only the lake differs: refused too.
    expectRefused(
      await run('chdbA', 'lakeB'),
      /lake: checkpoint taken with lake \S+\/lakeA, this run writes to lake \S+\/lakeB/,
    );
    expect(await readings('chdbC')).toBe(0);

    // A run that leaves the lake out skips nothing in it: allowed, with nothing new to read.
    const noLake = await run('chdbA', 'lakeA', '--no-cold');
    expect(lastJson<RunTotalsOutput>(expectSuccess(noLake, 'no lake').stdout).recordsIn).toBe(lines);
    const reset = await run('chdbC', 'lakeC', '--checkpoint', oldCheckpoint, '--reset-checkpoint');
    expect(lastJson<RunTotalsOutput>(expectSuccess(reset, 'reset').stdout)).toMatchObject({
      recordsIn: lines,
      measured: first.measured,
    });
    expect(reset.stderr).toContain('"msg":"checkpoint reset"');
    expect(await readings('chdbC')).toBe(first.measured);
    // The checkpoint now belongs to C: the first store is the one refused.
    expectRefused(
      await run('chdbA', 'lakeA', '--checkpoint', oldCheckpoint),
      /this run writes to chdb:\S+\/chdbA/,
    );
  }, 120_000);
});

describe('a NATS worker and its KV checkpoint', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  }, 60_000);
  afterAll(async () => {
    await server?.dispose();
  });

  it('refuses a new database, and a database recreated empty, with its old KV checkpoint', async () => {
    const clickhouseUrl = inject('clickhouseUrl');
    expectSuccess(await runCli(['publish', join(simDir, 'raw'), '--nats', server.url]), 'publish');
    const worker = uniqueName('id');
    const run = (database: string, ...extra: string[]) =>
      runCli(
        [
          'run',
          '--source',
          server.url,
          '--registry',
          join(simDir, 'registry.csv'),
          '--hot',
          clickhouseUrl,
          '--database',
          database,
          '--no-cold',
          '--until-idle',
          '--worker',
          worker,
          ...extra,
        ],
        { cwd: workDir },
      );
    const dbX = uniqueName('gs_id_x');
    const dbY = uniqueName('gs_id_y');
    const first = lastJson<RunTotalsOutput>(expectSuccess(await run(dbX), 'first run').stdout);
    expect(first.recordsIn).toBe(lines);

    expectRefused(
      await run(dbY),
      new RegExp(`checkpoint ${worker} in the KV bucket greenstream_checkpoints`),
      new RegExp(
        `hot store: checkpoint taken with http://127\\.0\\.0\\.1:\\d+ database ${dbX}, this run writes to http://127\\.0\\.0\\.1:\\d+ database ${dbY}`,
      ),
    );

    const ch = clickhouseQuery(clickhouseUrl);
    try {
      const measured = async (db: string) =>
        Number(
          await ch.query(
            sql`SELECT count() FROM ${sql.ident(db, 'readings')} FINAL WHERE status = 'measured'`.text,
          ),
        );
      expect(await measured(dbX)).toBe(first.measured);
      // The same database, dropped and recreated empty (by the run's migrations): its id is gone with it.
      await ch.query(sql`DROP DATABASE ${sql.ident(dbX)}`.text);
      expectRefused(
        await run(dbX),
        new RegExp(`hot store http://127\\.0\\.0\\.1:\\d+ database ${dbX} is not the one it was taken with`),
        /recreated or emptied/,
      );

      const reset = await run(dbY, '--reset-checkpoint');
      expect(lastJson<RunTotalsOutput>(expectSuccess(reset, 'reset').stdout)).toMatchObject({
        recordsIn: lines,
        measured: first.measured,
      });
      expect(await measured(dbY)).toBe(first.measured);
    } finally {
      await ch.close();
    }
  }, 120_000);
});
