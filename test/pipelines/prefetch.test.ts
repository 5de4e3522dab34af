/**
 * The message source starts its next pull as soon as it hands out a batch (the server's reply travels
 * while the graph works), hands out nothing ahead of `next()`, and neither loses a failure of that pull
 * nor leaves it running after `close()`. Against a real nats-server, plus `PullAhead` on its own.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FetchedBatch } from '../../connectors/jetstream.js';
import { ensureReadingsStream, JetStreamSource } from '../../connectors/jetstream.js';
import { PullAhead } from '../../pipelines/message-source.js';
import { messageReadingSource } from '../../pipelines/sources.js';
import { uniqueName } from '../harness/servers.js';

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

async function streamOf(count: number) {
  const stream = uniqueName('AHEAD');
  const prefix = stream.toLowerCase();
  await ensureReadingsStream(jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
  for (let i = 1; i <= count; i++) {
    const ts = new Date(Date.UTC(2024, 2, 11) + i * 900_000).toISOString();
    await js.publish(`${prefix}.0`, `meter_id,timestamp,value,unit\nM${i % 7},${ts},1.5,kW\n`);
  }
  return stream;
}

function sourceOver(stream: string, durable: string, prefetch: boolean) {
  // As the worker opens it: the durable recreated right after the position.
  return messageReadingSource(
    async (after) => {
      await jsm.consumers.delete(stream, durable).catch(() => undefined);
      return JetStreamSource.open(js, {
        stream,
        durable,
        start: after === 0 ? { kind: 'all' } : { kind: 'sequence', seq: after + 1 },
      });
    },
    { batchSize: 10, now: Date.now, prefetch },
  );
}

/** The consumer's deliveries not yet acknowledged, once they stop changing (or after ~2 s). */
async function settledAckPending(stream: string, durable: string): Promise<number> {
  let last = -1;
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const n = (await jsm.consumers.info(stream, durable)).num_ack_pending;
    if (n === last) return n;
    last = n;
  }
  return last;
}

const seqOf = (source: string) => Number(/:(\d+)/.exec(source)?.[1]);

describe('the message source pulling ahead', () => {
  it('has the next batch delivered while the first is worked on, yet hands out and positions only what next() returned', async () => {
    const stream = await streamOf(35);
    const source = sourceOver(stream, 'ahead', true);
    await source.open(undefined);
    const first = await source.next();
    if (first === 'idle' || first === 'end') throw new Error('expected a batch');
    expect(first.records.map((r) => seqOf(r.source))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // The server delivered the next 10 before next() was called again.
    expect(await settledAckPending(stream, 'ahead')).toBe(20);
    expect(source.position()).toEqual({ lastSeq: 10 });
    await source.commit();
    const seqs: number[] = first.records.map((r) => seqOf(r.source));
    for (;;) {
      const batch = await source.next();
      if (batch === 'idle' || batch === 'end') break;
      seqs.push(...batch.records.map((r) => seqOf(r.source)));
      await source.commit();
    }
    await source.close();
    expect(seqs).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
  });

  it('without prefetch, pulls only when asked', async () => {
    const stream = await streamOf(35);
    const source = sourceOver(stream, 'asked', false);
    await source.open(undefined);
    const first = await source.next();
    if (first === 'idle' || first === 'end') throw new Error('expected a batch');
    expect(await settledAckPending(stream, 'asked')).toBe(10);
    await source.close();
  });

  it('closes with a pull still on its way, and a restart resumes after what was handed out', async () => {
    const stream = await streamOf(25);
    const source = sourceOver(stream, 'closing', true);
    await source.open(undefined);
    const first = await source.next();
    if (first === 'idle' || first === 'end') throw new Error('expected a batch');
    const position = source.position();
    await source.close();
    const again = sourceOver(stream, 'closing', true);
    await again.open(position);
    const next = await again.next();
    if (next === 'idle' || next === 'end') throw new Error('expected a batch');
    expect(seqOf(next.records[0]!.source)).toBe(11);
    await again.close();
  });
});

describe('PullAhead', () => {
  const batch = { messages: [], pending: 0, done: false, stalled: false, interrupted: null } as FetchedBatch;

  it('gives the pull started ahead once, then nothing', async () => {
    const ahead = new PullAhead();
    expect(await ahead.take()).toBeUndefined();
    ahead.start(async () => batch);
    expect(await ahead.take()).toBe(batch);
    expect(await ahead.take()).toBeUndefined();
  });

  it('throws what the pull threw at take(), not as an unhandled rejection before', async () => {
    const ahead = new PullAhead();
    ahead.start(async () => {
      throw new Error('connection closed');
    });
    // A rejection nobody awaited yet would fail the test run here.
    await new Promise((r) => setTimeout(r, 20));
    await expect(ahead.take()).rejects.toThrow('connection closed');
  });

  it('discards a pull by waiting for it, failed or not', async () => {
    const ahead = new PullAhead();
    let settled = false;
    ahead.start(
      () =>
        new Promise<FetchedBatch>((_, reject) =>
          setTimeout(() => {
            settled = true;
            reject(new Error('late failure'));
          }, 30),
        ),
    );
    await ahead.discard();
    expect(settled).toBe(true);
    expect(await ahead.take()).toBeUndefined();
  });
});
