/**
 * Issue 5, "done when": `greenstream run --source nats://… --hot http://…` against the harness's servers
 * processes a published simulated day, and the readings it stores as measured are exactly the lines the
 * simulator wrote minus what was quarantined or dead-lettered. A binary file published among them goes
 * whole to the dead-letter stream with its reason, and the worker carries on.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JsMsg, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { connectNats, DEAD_LETTER_STREAM, GsHeaders } from '../../connectors/jetstream.js';
import { simulate } from '../../simulator/index.js';
import { uniqueName } from '../harness/servers.js';
import {
  clickhouseQuery,
  ensureBuilt,
  expectSuccess,
  lastJson,
  type RunTotalsOutput,
  runCli,
  seededRandom,
  tableCheck,
} from './helpers.js';

let workDir: string;
let nc: NatsConnection;

beforeAll(async () => {
  await ensureBuilt();
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-e2e-'));
  nc = await connectNats({ servers: inject('natsUrl'), name: 'nats-e2e-test' });
}, 240_000);

afterAll(async () => {
  await nc?.close();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

/** Bytes no decoder accepts: NULs, invalid UTF-8, no CSV header, no JSON. */
function garbage(bytes: number): Buffer {
  const random = seededRandom(5);
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(random() * 256);
  out[0] = 0x00;
  out[1] = 0xff;
  return out;
}

/** Every message of a stream, in order (an ordered consumer; the stream is small). */
async function streamMessages(stream: string): Promise<JsMsg[]> {
  const js = jetstream(nc);
  const total = (await (await js.jetstreamManager()).streams.info(stream)).state.messages;
  const consumer = await js.consumers.get(stream);
  const out: JsMsg[] = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 2000 });
    for await (const m of batch) out.push(m);
  }
  return out;
}

describe('greenstream run on NATS and ClickHouse (the harness servers)', () => {
  it('stores every simulated line as measured unless quarantined or dead-lettered; garbage goes to READINGS_DLQ', async () => {
    const natsUrl = inject('natsUrl');
    const clickhouseUrl = inject('clickhouseUrl');
    const t0 = performance.now();
    const simDir = join(workDir, 'sim');
    const sim = await simulate({ out: simDir, meters: 1000, days: 1, start: '2024-03-11', seed: 3 });
    const garbagePath = join(workDir, 'bad', 'raw', '2024', '03', '11', '05', 'gw-binary.csv');
    await mkdir(join(garbagePath, '..'), { recursive: true });
    await writeFile(garbagePath, garbage(4096));
    const simulatedMs = performance.now() - t0;

    // The garbage first: the worker must get past it to the day's data.
    const published = lastJson<{ stored: number; failed: unknown[] }>(
      expectSuccess(await runCli(['publish', garbagePath, join(simDir, 'raw'), '--nats', natsUrl]), 'publish')
        .stdout,
    );
    expect(published.failed).toEqual([]);
    expect(published.stored).toBe(sim.files + 1);
    const publishedMs = performance.now() - t0 - simulatedMs;

    const database = uniqueName('gs_e2e');
    const worker = uniqueName('e2e');
    const run = expectSuccess(
      await runCli(
        [
          'run',
          '--source',
          natsUrl,
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
        ],
        { cwd: workDir },
      ),
      'greenstream run',
    );
    const totals = lastJson<RunTotalsOutput>(run.stdout);
    console.log(
      `[nats-e2e] simulate ${Math.round(simulatedMs)} ms, publish ${Math.round(publishedMs)} ms, run ${run.ms} ms: ${JSON.stringify(totals)}`,
    );

    const ch = clickhouseQuery(clickhouseUrl);
    try {
      const count = async (query: ReturnType<typeof sql>) => Number(await ch.query(query.text));
      const measured = await count(
        sql`SELECT count() FROM ${sql.ident(database, 'readings')} FINAL WHERE status = 'measured'`,
      );
      const quarantined = await count(sql`SELECT count() FROM ${sql.ident(database, 'quarantine')} FINAL`);
      console.log(
        `[nats-e2e] simulator lines ${sim.lines}, measured ${measured}, quarantined ${quarantined}, dead-lettered messages ${totals.deadLettered}`,
      );
      // The dead-lettered message is the garbage alone, which holds none of the simulator's lines.
      expect(totals.deadLettered).toBe(1);
      expect(measured).toBe(sim.lines - quarantined);
      expect(quarantined).toBeGreaterThan(0);
      expect(totals).toMatchObject({ recordsIn: sim.lines, measured, quarantined });
      for (const table of ['readings', 'quarantine', 'faults', 'hourly_consumption'] as const) {
        const check = await tableCheck(ch.query, database, table);
        expect(check.distinctKeys, `${table}: duplicates`).toBe(check.rows);
      }
    } finally {
      await ch.close();
    }

    const deadLetters = (await streamMessages(DEAD_LETTER_STREAM)).filter(
      (m) => m.headers?.get(GsHeaders.Source) === 'raw/2024/03/11/05/gw-binary.csv',
    );
    expect(deadLetters).toHaveLength(1);
    const letter = deadLetters[0]!;
    expect(Buffer.from(letter.data).equals(garbage(4096))).toBe(true);
    expect(letter.headers?.get(GsHeaders.Reason)).toMatch(/\w/);
    expect(letter.headers?.get(GsHeaders.SourceStream)).toBe('READINGS');
    expect(letter.subject).toMatch(/^dlq\.readings\.\d+$/);
    console.log(
      `[nats-e2e] dead letter: ${letter.subject}, reason "${letter.headers?.get(GsHeaders.Reason)}"`,
    );
    expect(run.stderr).toContain('"msg":"dead-lettered"');
    console.log(`[nats-e2e] total ${Math.round(performance.now() - t0)} ms`);
  }, 180_000);
});
