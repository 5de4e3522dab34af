/**
 * Issue 5: `greenstream replay --from TIME` re-reads the stream through the same graph into the same sinks,
 * and a replay over data already processed leaves every table with the same content (no duplicates).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
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
  tableCheck,
  tableContent,
} from './helpers.js';

// A server of its own: the CLI's stream READINGS (subjects readings.>) is fixed, and the NATS end-to-end
// test publishes to it on the shared server.
let server: NatsServer;
let workDir: string;

beforeAll(async () => {
  [server] = await Promise.all([startNatsServer(), ensureBuilt()]);
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-replay-'));
}, 240_000);

afterAll(async () => {
  await server?.dispose();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe('greenstream replay', () => {
  it('over data already processed leaves every table with the same content, without duplicates', async () => {
    const clickhouseUrl = inject('clickhouseUrl');
    const t0 = performance.now();
    const simDir = join(workDir, 'sim');
    const sim = await simulate({
      out: simDir,
      meters: 200,
      days: 2,
      start: '2024-03-11',
      seed: 9,
      gatewaySize: 20,
    });
    // The stream's clock, not the readings': replay starts from when the messages were stored.
    const from = new Date(Date.now() - 1000);
    expectSuccess(await runCli(['publish', join(simDir, 'raw'), '--nats', server.url]), 'publish');

    const database = uniqueName('gs_replay');
    const options = [
      '--source',
      server.url,
      '--registry',
      join(simDir, 'registry.csv'),
      '--hot',
      clickhouseUrl,
      '--database',
      database,
      '--no-cold',
      '--worker',
      'live',
    ];
    const live = expectSuccess(await runCli(['run', ...options, '--until-idle'], { cwd: workDir }), 'run');
    const liveTotals = lastJson<RunTotalsOutput>(live.stdout);
    expect(liveTotals.recordsIn).toBe(sim.lines);

    const ch = clickhouseQuery(clickhouseUrl);
    try {
      // Seconds since the epoch of the oldest stored version of a reading (`processed_at`, the tables'
      // version column, keeps the newest through FINAL whether or not the parts have merged yet).
      const oldestProcessedAt = async () =>
        Number(
          await ch.query(
            sql`SELECT toUnixTimestamp(min(processed_at)) FROM ${sql.ident(database, 'readings')} FINAL`.text,
          ),
        );
      const before = new Map<string, { rows: number; content: string[] }>();
      for (const table of comparedTables) {
        const check = await tableCheck(ch.query, database, table);
        before.set(table, { rows: check.rows, content: await tableContent(ch.query, database, table) });
      }
      expect(await oldestProcessedAt()).toBeGreaterThan(0);
      // processed_at has whole seconds: a version written after this second is newer than any before.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const replayStarted = Math.floor(Date.now() / 1000);

      const replay = expectSuccess(
        await runCli(['replay', '--from', from.toISOString(), ...options], { cwd: workDir }),
        'replay',
      );
      const replayTotals = lastJson<RunTotalsOutput>(replay.stdout);
      console.log(
        `[replay] ${sim.lines} lines: run ${live.ms} ms ${JSON.stringify(liveTotals)}; replay ${replay.ms} ms ${JSON.stringify(replayTotals)}`,
      );
      // The replay went through everything again and wrote it again …
      expect(replayTotals.recordsIn).toBe(sim.lines);
      // A background merge may already have collapsed the copies (18.16 merges small parts within
      // seconds), so a raw row count cannot tell; every reading's surviving version is the replay's.
      expect(await oldestProcessedAt()).toBeGreaterThanOrEqual(replayStarted);

      // … and the stores read the same as before.
      for (const table of comparedTables) {
        const check = await tableCheck(ch.query, database, table);
        const previous = before.get(table)!;
        expect(check.rows, `${table}: rows through FINAL`).toBe(previous.rows);
        expect(check.distinctKeys, `${table}: duplicates`).toBe(check.rows);
        const content = await tableContent(ch.query, database, table);
        expect(contentDiff(previous.content, content), `${table}: content`).toEqual({
          onlyInA: [],
          onlyInB: [],
        });
        console.log(`[replay] ${table}: ${check.rows} rows, unchanged`);
      }
    } finally {
      await ch.close();
    }
    console.log(`[replay] total ${Math.round(performance.now() - t0)} ms`);
  }, 180_000);
});
