/**
 * The NATS source's byte budget on a real server: batches of large messages stay within it (a larger
 * message passes alone), nothing is lost or repeated, positions follow what was handed out; and the
 * `--max-memory` flag that sizes it.
 */

import { spawnSync } from 'node:child_process';
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { UsageError } from '../../cli/main.js';
import { maxMemoryFlag } from '../../cli/run.js';
import {
  ensureReadingsStream,
  type FetchedBatch,
  JetStreamSource,
  ReplaySource,
} from '../../connectors/jetstream.js';
import { batchBudget, batchBytesForMemory } from '../../pipelines/memory-budget.js';
import type { ReadingSource, SourceBatch } from '../../pipelines/runner.js';
import { messageReadingSource, partitionedReadingSource } from '../../pipelines/sources.js';
import { uniqueName } from '../harness/servers.js';
import { ensureBuilt } from '../pipelines/helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

beforeAll(async () => {
  nc = await connect({ servers: inject('natsUrl') });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.drain();
});

async function freshStream() {
  const stream = uniqueName('BUDGET').toUpperCase();
  const prefix = stream.toLowerCase();
  await ensureReadingsStream(jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
  return { stream, prefix };
}

/** Publishes payloads of the given sizes (each filled with its index), returns their stream sequences. */
async function publishSizes(subject: string, sizes: readonly number[]): Promise<number[]> {
  const seqs: number[] = [];
  for (const [i, size] of sizes.entries()) {
    seqs.push((await js.publish(subject, new Uint8Array(size).fill(i % 251))).seq);
  }
  return seqs;
}

const bytesOf = (b: FetchedBatch) => b.messages.reduce((sum, m) => sum + m.data.byteLength, 0);

/** Fetches with a byte budget until `count` messages came; fails on a batch over the budget. */
async function fetchAll(
  source: JetStreamSource | ReplaySource,
  count: number,
  maxBytes: number,
): Promise<{ seqs: number[]; batches: number[][]; last: FetchedBatch }> {
  const seqs: number[] = [];
  const batches: number[][] = [];
  let last: FetchedBatch | undefined;
  for (let round = 0; round < count * 2 + 5 && seqs.length < count; round++) {
    last = await source.fetchBatch(256, 1000, maxBytes);
    if (last.messages.length === 0) continue;
    if (last.messages.length > 1) expect(bytesOf(last)).toBeLessThanOrEqual(maxBytes);
    batches.push(last.messages.map((m) => m.data.byteLength));
    seqs.push(...last.messages.map((m) => m.seq));
  }
  return { seqs, batches, last: last! };
}

describe('JetStream sources within a byte budget', () => {
  it('a durable consumer hands out 40 messages of 512 KiB two MiB at a time, all of them, in order', async () => {
    const { stream, prefix } = await freshStream();
    const published = await publishSizes(`${prefix}.0`, Array(40).fill(512 * KiB));
    const source = await JetStreamSource.open(js, { stream, durable: 'budget' });
    const { seqs, batches } = await fetchAll(source, 40, 2 * MiB);
    expect(seqs).toEqual(published);
    // Four messages fit a 2 MiB budget exactly; no batch held more.
    expect(Math.max(...batches.map((b) => b.length))).toBe(4);
    expect(batches.length).toBe(10);
    // Nothing held back or lost: every message acknowledged leaves the consumer with no lag.
    await source.ack(seqs);
    expect((await source.pending()).lag).toBe(0);
    expect((await jsm.consumers.info(stream, 'budget')).num_ack_pending).toBe(0);
    await source.close();
  });

  it('a message larger than the budget passes alone, the smaller ones around it in batches under it', async () => {
    const { stream, prefix } = await freshStream();
    const sizes = [...Array(6).fill(40 * KiB), 900 * KiB, ...Array(6).fill(40 * KiB)];
    const published = await publishSizes(`${prefix}.0`, sizes);
    const source = await JetStreamSource.open(js, { stream, durable: 'oversized' });
    const { seqs, batches } = await fetchAll(source, sizes.length, 100 * KiB);
    expect(seqs).toEqual(published);
    expect(batches).toContainEqual([900 * KiB]);
    for (const b of batches)
      if (b.length > 1) expect(b.reduce((x, y) => x + y)).toBeLessThanOrEqual(100 * KiB);
    await source.close();
  });

  it('a replay holds over what a pull brought beyond the budget and is done only after handing it out', async () => {
    const { stream, prefix } = await freshStream();
    // Small messages first: the first pull is sized for them, so it brings more large ones than fit.
    const sizes = [...Array(20).fill(1 * KiB), ...Array(20).fill(300 * KiB)];
    const published = await publishSizes(`${prefix}.0`, sizes);
    const replay = await ReplaySource.open(js, { stream, from: { seq: 1 } });
    const { seqs, last } = await fetchAll(replay, sizes.length, 1 * MiB);
    expect(seqs).toEqual(published);
    expect(last.done).toBe(true);
    expect(await replay.fetchBatch(256, 1000, MiB)).toMatchObject({ messages: [], done: true });
    await replay.close();
  });
});

/** A CSV payload of about `bytes` bytes: one meter's readings a minute apart. */
function csvOfAbout(meter: string, bytes: number): string {
  const lines = ['meter_id,timestamp,value,unit'];
  const start = Date.UTC(2024, 2, 11);
  for (let i = 0, size = 0; size < bytes; i++) {
    const line = `${meter},${new Date(start + i * 60_000).toISOString()},${1000 + i},kW`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join('\n')}\n`;
}

/** The stream sequences a batch's records came from (`stream:<name>:<seq>#<line>`), once each. */
const seqsOf = (batch: SourceBatch) => [
  ...new Set(batch.records.map((r) => Number(/:(\d+)#/.exec(r.source)![1]))),
];

async function drain(source: ReadingSource) {
  const batches: { seqs: number[]; position: unknown; readings: number }[] = [];
  for (;;) {
    const next = await source.next();
    if (next === 'idle' || next === 'end') return batches;
    batches.push({ seqs: seqsOf(next), position: source.position(), readings: next.records.length });
  }
}

describe('pipeline sources within a byte budget', () => {
  it('the all-partitions source: batches of at most the budget, every reading, the position at the last message', async () => {
    const { stream, prefix } = await freshStream();
    const payloads = Array.from({ length: 12 }, (_, i) => csvOfAbout(`M${i}`, 64 * KiB));
    const published: number[] = [];
    for (const p of payloads) published.push((await js.publish(`${prefix}.0`, p)).seq);
    const source = messageReadingSource(
      async () => JetStreamSource.open(js, { stream, durable: 'pipeline' }),
      { maxBytesPerBatch: 150 * KiB, now: Date.now },
    );
    await source.open(undefined);
    const batches = await drain(source);
    // 64 KiB and a little: two fit 150 KiB, three do not.
    expect(batches.map((b) => b.seqs.length)).toEqual(Array(6).fill(2));
    expect(batches.flatMap((b) => b.seqs)).toEqual(published);
    for (const b of batches) expect(b.position).toEqual({ lastSeq: b.seqs.at(-1) });
    const lines = payloads.reduce((n, p) => n + p.split('\n').length - 2, 0);
    expect(batches.reduce((n, b) => n + b.readings, 0)).toBe(lines);
    await source.commit();
    expect((await jsm.consumers.info(stream, 'pipeline')).num_ack_pending).toBe(0);
    await source.close();
  });

  it('takes one message per batch while the resident set is above --max-memory', async () => {
    const { stream, prefix } = await freshStream();
    for (let i = 0; i < 6; i++) await js.publish(`${prefix}.0`, csvOfAbout(`M${i}`, 2 * KiB));
    let rss = 10 * MiB;
    const source = messageReadingSource(async () => JetStreamSource.open(js, { stream, durable: 'rss' }), {
      memoryLimitBytes: 100 * MiB,
      rss: () => rss,
      now: Date.now,
    });
    await source.open(undefined);
    rss = 200 * MiB;
    const first = await source.next();
    expect(first !== 'idle' && first !== 'end' && seqsOf(first)).toEqual([1]);
    const second = await source.next();
    expect(second !== 'idle' && second !== 'end' && seqsOf(second)).toEqual([2]);
    rss = 10 * MiB;
    const rest = await drain(source);
    expect(rest.flatMap((b) => b.seqs)).toEqual([3, 4, 5, 6]);
    expect(rest.length).toBe(1);
    await source.close();
  });

  it('a partitioned worker keeps the budget across its partitions and the stream order', async () => {
    const { stream, prefix } = await freshStream();
    const published: number[] = [];
    for (let i = 0; i < 12; i++)
      published.push((await js.publish(`${prefix}.${i % 3}`, csvOfAbout(`M${i}`, 40 * KiB))).seq);
    const source = partitionedReadingSource(
      async (p, after) =>
        JetStreamSource.open(js, {
          stream,
          durable: `parts_p${p}`,
          filterSubjects: [`${prefix}.${p}`],
          start: after === 0 ? { kind: 'all' } : { kind: 'sequence', seq: after + 1 },
        }),
      {
        partitions: [0, 1, 2],
        maxBytesPerBatch: 100 * KiB,
        now: Date.now,
        streamLastSeq: async () => (await jsm.streams.info(stream)).state.last_seq,
      },
    );
    await source.open(undefined);
    const batches = await drain(source);
    expect(batches.flatMap((b) => b.seqs)).toEqual(published);
    // 40 KiB and a little: two fit 100 KiB, three do not.
    for (const b of batches) expect(b.seqs.length).toBeLessThanOrEqual(2);
    expect(batches.at(-1)!.position).toEqual({ partitions: { 0: 10, 1: 11, 2: 12 } });
    await source.close();
  });
});

describe('--max-memory', () => {
  it('parses MiB from the flag, else $GS_MAX_MEMORY, and sizes the batch budget as 1/64 of it within 1-64 MiB', () => {
    expect(maxMemoryFlag('1024', {})).toBe(1024 * MiB);
    expect(maxMemoryFlag(undefined, { GS_MAX_MEMORY: '512' })).toBe(512 * MiB);
    expect(maxMemoryFlag('256', { GS_MAX_MEMORY: '512' })).toBe(256 * MiB);
    expect(maxMemoryFlag(undefined, {})).toBeUndefined();
    expect(batchBytesForMemory(1024 * MiB)).toBe(16 * MiB);
    expect(batchBytesForMemory(64 * MiB)).toBe(1 * MiB);
    expect(batchBytesForMemory(16384 * MiB)).toBe(64 * MiB);
    expect(batchBudget({ maxBytesPerBatch: 5 * MiB })()).toBe(5 * MiB);
  });

  it('rejects values that are not a whole number of MiB of at least 64, naming where they came from', () => {
    for (const bad of ['0', '-5', '1.5', '1e3', 'lots', '63', '32MiB']) {
      expect(() => maxMemoryFlag(bad, {})).toThrow(UsageError);
    }
    expect(() => maxMemoryFlag('63', {})).toThrow(/--max-memory must be at least 64 MiB/);
    expect(() => maxMemoryFlag(undefined, { GS_MAX_MEMORY: 'x' })).toThrow(/\$GS_MAX_MEMORY must be a size/);
    // Sizes carry their unit; a bare number is MiB.
    expect(maxMemoryFlag('2GiB', {})).toBe(2048 * MiB);
  });

  it('is documented by run and replay, and a bad value stops them with the usage status before anything opens', async () => {
    await ensureBuilt();
    const bin = new URL('../../bin/greenstream.js', import.meta.url).pathname;
    const greenstream = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [bin, ...args], {
        encoding: 'utf8',
        env: { ...process.env, NATS_URL: '', CLICKHOUSE_URL: '', GS_MAX_MEMORY: '', ...env },
        timeout: 60_000,
      });
    for (const command of ['run', 'replay'])
      expect(greenstream([command, '--help']).stdout).toContain('--max-memory <MiB>');
    const bad = greenstream(['run', '--until-idle', '--source', 'files:./nowhere', '--max-memory', '32']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--max-memory must be at least 64 MiB');
    const badEnv = greenstream(['run', '--until-idle', '--source', 'files:./nowhere'], {
      GS_MAX_MEMORY: 'lots',
    });
    expect(badEnv.status).toBe(2);
    expect(badEnv.stderr).toContain('$GS_MAX_MEMORY must be a size');
  });
});
