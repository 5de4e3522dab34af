/**
 * The threaded message source (pulls, message handles and acknowledgements on a fetch thread) against a
 * real nats-server: the same batches, with the same records, quarantine, dead letters and positions, as
 * the in-thread source over the same stream; nothing acknowledged before `commit` (also what the thread
 * read ahead), so a worker killed before its commit gets the messages again; a pull failure and a thread
 * that dies surface from `next()` as typed errors; `close()` leaves no thread running.
 */
import { readFileSync } from 'node:fs';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ensureDeadLetterStream,
  ensureReadingsStream,
  GsHeaders,
  JetStreamSource,
  ReplaySource,
} from '../../connectors/jetstream.js';
import { GreenStreamError } from '../../core/errors.js';
import type { Json } from '../../core/index.js';
import type { ReadingSource, SourceBatch } from '../../pipelines/runner.js';
import { messageReadingSource } from '../../pipelines/sources.js';
import {
  FetchThreadError,
  type ThreadedMessageSourceOptions,
  threadedMessageSource,
} from '../../pipelines/threaded-message-source.js';
import { natsClients } from '../harness/nats-clients.js';
import { uniqueName } from '../harness/servers.js';
import { ensureBuilt } from './helpers.js';

const nats = natsClients();

/** The thread runs the built JavaScript (a worker thread cannot load the TypeScript sources). */
const THREAD_URL = new URL('../../dist/pipelines/fetch-thread.js', import.meta.url);

beforeAll(async () => {
  await ensureBuilt();
}, 180_000);

const reading = (i: number) =>
  JSON.stringify({
    meter_id: `MTR-${i % 11}`,
    timestamp: new Date(Date.UTC(2024, 2, 11) + i * 900_000).toISOString(),
    value: (i * 1.25).toFixed(2),
    unit: 'kW',
  });

/** Payloads the fast path, the full decoder, the quarantine and the dead-letter stream each take. */
const ODD: { readonly data: Uint8Array; readonly contentType?: string }[] = [
  { data: Buffer.from('{"meter_id":"MTR-1","timestamp":') }, // bad JSON: dead letter
  {
    data: Buffer.from(
      `{ "meter_id": "MTR-3", "timestamp": "2024-03-11T01:00:00Z", "value": 3, "unit": "kW" }`,
    ),
  },
  { data: Buffer.from('{"meter_id":{"x":1},"timestamp":"t","value":"1","unit":"kW"}') }, // quarantined
  { data: Buffer.from(reading(5)), contentType: 'text/csv' }, // declared CSV: dead letter
  { data: Buffer.from(reading(6)), contentType: 'application/json' },
  {
    data: Buffer.from('meter_id,timestamp,value,unit\nM1,2024-03-11T00:00:00Z,1.5,kW\nM2,bad,1,kW\n'),
    contentType: 'text/csv',
  },
  { data: Buffer.from([0x7b, 0x00, 0x7d]) }, // binary: dead letter
];

/** `count` one-reading messages with the odd ones spread among them; returns the stream's names. */
async function published(count: number, odd = true) {
  const stream = uniqueName('FETCHT');
  const prefix = stream.toLowerCase();
  const dlq = `${stream}_DLQ`;
  await ensureReadingsStream(nats.jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
  await ensureDeadLetterStream(nats.jsm, { name: dlq, subjects: [`dlq.${prefix}.>`], storage: 'memory' });
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const payload = odd && i % 37 === 5 ? ODD[Math.floor(i / 37) % ODD.length] : undefined;
    const h = natsHeaders();
    if (payload?.contentType !== undefined) h.set('Content-Type', payload.contentType);
    acks.push(
      nats.js.publish(
        `${prefix}.${i % 4}`,
        payload?.data ?? Buffer.from(reading(i)),
        payload?.contentType === undefined ? {} : { headers: h },
      ),
    );
    if (acks.length >= 500) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
  return { stream, prefix, dlq };
}

const NOW = 1_800_000_000_000;

function inThread(stream: string, dlq: string, durable: string, batchSize: number): ReadingSource {
  return messageReadingSource(
    (resumeAfterSeq) =>
      JetStreamSource.recreate(nats.js, { stream, durable, deadLetter: { stream: dlq } }, resumeAfterSeq),
    { batchSize, now: () => NOW },
  );
}

function threaded(
  stream: string,
  dlq: string,
  durable: string,
  batchSize: number,
  more: Partial<ThreadedMessageSourceOptions> = {},
): ReadingSource {
  return threadedMessageSource({
    nats: { servers: inject('natsUrl') },
    consumer: { kind: 'durable', stream, durable, deadLetter: { stream: dlq } },
    batchSize,
    now: () => NOW,
    threadUrl: THREAD_URL,
    ...more,
  });
}

/** Every batch until idle, each with the position after it; commits after each when asked. */
async function batches(source: ReadingSource, position: Json | undefined, commit: boolean) {
  const out: { batch: SourceBatch; position: Json }[] = [];
  await source.open(position);
  for (let i = 0; i < 500; i++) {
    const batch = await source.next();
    if (batch === 'idle' || batch === 'end') break;
    out.push({ batch, position: source.position() });
    if (commit) await source.commit();
  }
  return out;
}

/** What a batch holds, `commitSoon` aside (a flow-control hint, not content). */
const content = ({ batch, position }: { batch: SourceBatch; position: Json }) => ({
  records: batch.records,
  quarantined: batch.quarantined,
  deadLettered: batch.deadLettered,
  position,
});

async function ackPending(stream: string, durable: string): Promise<number> {
  return (await nats.jsm.consumers.info(stream, durable)).num_ack_pending;
}

describe('threaded message source', () => {
  it('hands over the batches, positions, quarantine and dead letters of the in-thread source', async () => {
    const { stream, dlq } = await published(3000);
    const want = await batches(inThread(stream, dlq, 'in_thread', 256), undefined, true);
    const dlqAfterInThread = (await nats.jsm.streams.info(dlq)).state.messages;
    // The thread dead-letters the same messages again: the dead-letter stream keeps one copy of each.
    const source = threaded(stream, dlq, 'threaded', 256);
    const got = await batches(source, undefined, true);
    expect(await source.pending!()).toBe(0);
    await source.close();
    expect(got.map(content)).toEqual(want.map(content));
    expect(want.length).toBeGreaterThan(10);
    const all = want.flatMap((b) => b.batch.records);
    expect(all.length).toBeGreaterThan(2900);
    expect(want.reduce((n, b) => n + b.batch.deadLettered, 0)).toBeGreaterThan(5);
    expect(want.reduce((n, b) => n + b.batch.quarantined.length, 0)).toBeGreaterThan(3);
    expect((await nats.jsm.streams.info(dlq)).state.messages).toBe(dlqAfterInThread);
    const letter = await nats.jsm.streams.getMessage(dlq, { seq: 1 });
    expect(letter?.header.get(GsHeaders.Reason)).toMatch(/^invalid JSON/);
    // From a position in the middle, both read the same rest.
    const middle = want[Math.floor(want.length / 2)]!.position;
    const restWant = await batches(inThread(stream, dlq, 'in_thread', 256), middle, true);
    const rest = threaded(stream, dlq, 'threaded', 256);
    const restGot = await batches(rest, middle, true);
    await rest.close();
    expect(restGot.map(content)).toEqual(restWant.map(content));
    expect(restGot.length).toBeGreaterThan(3);
  });

  it('replays a range as the in-thread replay does, to its end', async () => {
    const { stream, dlq } = await published(1000);
    const want = await batches(
      messageReadingSource(
        (after) =>
          ReplaySource.open(nats.js, {
            stream,
            from: after === 0 ? { time: new Date(0) } : { seq: after + 1 },
            deadLetter: { stream: dlq },
          }),
        { batchSize: 128, now: () => NOW },
      ),
      undefined,
      true,
    );
    const source = threadedMessageSource({
      nats: { servers: inject('natsUrl') },
      consumer: { kind: 'replay', stream, fromMs: 0, deadLetter: { stream: dlq } },
      batchSize: 128,
      now: () => NOW,
      threadUrl: THREAD_URL,
    });
    const got = await batches(source, undefined, true);
    expect(await source.next()).toBe('end');
    await source.close();
    expect(got.map(content)).toEqual(want.map(content));
    expect(got.flatMap((b) => b.batch.records).length).toBeGreaterThan(950);
  });

  it('acknowledges only what was committed, not what the thread read ahead; killed before its commit, the rest comes again', async () => {
    const { stream, dlq } = await published(2000);
    const source = threaded(stream, dlq, 'acks', 200, { ahead: 3 });
    await source.open(undefined);
    const first = await source.next();
    const second = await source.next();
    if (typeof first === 'string' || typeof second === 'string') throw new Error('expected batches');
    const position = source.position();
    // Three more pulls are read ahead: five pulls (the first of 16 messages, before the sizes are known,
    // then 200 each), none acknowledged before a commit. Nor are the batches' dead letters: the consumer
    // acknowledges cumulatively, so a dead letter's ack waits for the commit of the messages before it.
    expect(first.deadLettered + second.deadLettered).toBeGreaterThan(0);
    await expect.poll(() => ackPending(stream, 'acks'), { timeout: 10_000 }).toBe(816);
    await source.commit();
    // The two batches taken are acknowledged, what was read ahead is not.
    expect(await ackPending(stream, 'acks')).toBe(600);
    // A third batch taken and never committed, then the worker dies (closed without a commit).
    const third = await source.next();
    if (typeof third === 'string') throw new Error('expected a batch');
    await source.close();
    // Restarted from the checkpoint's position (after the second batch), the third batch comes again.
    const again = threaded(stream, dlq, 'acks', 200);
    const rest = await batches(again, position, true);
    await again.close();
    const restRecords = rest.flatMap((b) => b.batch.records);
    expect(restRecords.slice(0, third.records.length)).toEqual(third.records);
    const total = [first, second].reduce(
      (n, b) => n + b.records.length + b.deadLettered + b.quarantined.length,
      0,
    );
    expect(
      total +
        rest.reduce(
          (n, b) => n + b.batch.records.length + b.batch.deadLettered + b.batch.quarantined.length,
          0,
        ),
    ).toBeGreaterThanOrEqual(1990);
  });

  it('deliveries lost in transit: the thread reopens after what it handed over and every message comes once', async () => {
    const { stream, dlq } = await published(1200, false);
    const lost: number[] = [];
    const source = threaded(stream, dlq, 'lost', 100, {
      ahead: 1,
      onDeliveriesLost: (count) => lost.push(count),
    });
    await source.open(undefined);
    const seqs: number[] = [];
    const take = (batch: SourceBatch | 'idle' | 'end') => {
      if (typeof batch === 'string') return false;
      for (const r of batch.records) seqs.push(Number(r.source.split(':').pop()));
      return true;
    };
    take(await source.next());
    take(await source.next());
    // Another client takes deliveries of the same consumer and never acknowledges them.
    const consumer = await nats.js.consumers.get(stream, 'lost');
    const stolen = await consumer.fetch({ max_messages: 5, expires: 2000 });
    for await (const m of stolen) void m;
    for (let i = 0; i < 100 && take(await source.next()); i++) await source.commit();
    await source.close();
    expect(lost.reduce((a, b) => a + b, 0)).toBe(5);
    expect(seqs).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
  });

  it('a pull that fails for good surfaces from next() with its class; close() still ends the thread', async () => {
    const { stream, dlq } = await published(300);
    const source = threaded(stream, dlq, 'fails', 100, { unavailableAfterMs: 1500, reopenAfterMs: 100_000 });
    await source.open(undefined);
    expect(typeof (await source.next())).toBe('object');
    // The stream goes away: every pull fails from now on.
    await nats.jsm.streams.delete(stream);
    const error = await (async () => {
      for (let i = 0; i < 200; i++) {
        try {
          await source.next();
        } catch (e) {
          return e;
        }
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(GreenStreamError);
    expect(String((error as Error).message)).toMatch(/^fetch thread: /);
    // Sticky: the next call fails the same way instead of waiting for a thread that stopped pulling.
    await expect(source.next()).rejects.toBe(error);
    await source.close();
  });

  it('a thread that dies stops the source with FetchThreadError; nothing is acknowledged', async () => {
    const { stream, dlq } = await published(300);
    const crashing = new URL('./fetch-thread-crash.fixture.mjs', import.meta.url);
    const source = threaded(stream, dlq, 'dies', 100, {
      threadUrl: crashing,
    });
    await source.open(undefined);
    await expect(
      (async () => {
        for (let i = 0; i < 50; i++) await source.next();
      })(),
    ).rejects.toSatisfy((e) => e instanceof FetchThreadError && e.retryable);
    await expect(source.commit()).rejects.toBeInstanceOf(FetchThreadError);
    await source.close();
    // The messages it pulled are still unacknowledged: they come again.
    const info = await nats.jsm.consumers.info(stream, 'dies');
    expect(info.ack_floor.stream_seq).toBe(0);
    expect(info.num_ack_pending).toBeGreaterThan(0);
  });

  it('close() leaves no thread running', async () => {
    const { stream, dlq } = await published(50);
    const before = threadsOf();
    const source = threaded(stream, dlq, 'closes', 16);
    await source.open(undefined);
    expect(threadsOf()).toBeGreaterThan(before);
    await source.next();
    await source.close();
    await expect.poll(() => threadsOf()).toBe(before);
  });
});

/** The process's threads, from `/proc` (a worker thread is one of them until it ends). */
function threadsOf(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
}
