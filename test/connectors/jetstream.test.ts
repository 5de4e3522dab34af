import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeReadings, encodeReadingsCsv, type RecordDecodeFailure } from '../../codecs/decode.js';
import {
  alertSubject,
  CheckpointKv,
  ensureDeadLetterStream,
  ensureReadingsStream,
  GsHeaders,
  JetStreamSource,
  type LimitDifference,
  PayloadTooLargeError,
  partitionOf,
  publishAlert,
  ReadingsPublisher,
  ReplaySource,
  type SourceMessage,
} from '../../connectors/jetstream.js';
import type { Alert, RawReading } from '../../schemas/reading.js';
import { alive, collectGarbage } from '../harness/gc.js';
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

/** A readings stream and dead-letter stream of its own, so test files sharing the server never meet. */
async function freshStreams(options: { duplicateWindowMs?: number } = {}) {
  const name = uniqueName('R');
  const prefix = name.toLowerCase();
  await ensureReadingsStream(jsm, { name, subjects: [`${prefix}.>`], storage: 'memory', ...options });
  const dlq = `${name}_DLQ`;
  await ensureDeadLetterStream(jsm, { name: dlq, subjects: [`dlq.${prefix}.>`], storage: 'memory' });
  return { stream: name, prefix, dlq };
}

function csvFile(meters: readonly string[], rowsPerMeter: number, hour = '2024/03/15/14'): Buffer {
  const rows: Pick<RawReading, 'meterId' | 'timestamp' | 'value' | 'unit'>[] = [];
  const start = Date.UTC(2024, 2, 15, 14);
  for (const meterId of meters) {
    for (let i = 0; i < rowsPerMeter; i++) {
      rows.push({
        meterId,
        timestamp: new Date(start + i * 60_000).toISOString(),
        value: String(1000 + i),
        unit: 'W',
      });
    }
  }
  return Buffer.from(encodeReadingsCsv(rows, [{ name: 'location', get: () => `Zone_${hour.slice(-2)}` }]));
}

/** `count` one-reading files of meters M0, M1, … published under `prefix`: stream sequences 1 … count. */
async function publishMeterFiles(prefix: string, count: number): Promise<void> {
  await new ReadingsPublisher(js, { subjectPrefix: prefix }).publishFiles(
    Array.from({ length: count }, (_, i) => ({
      path: `raw/2024/03/15/14/M${i}.csv`,
      bytes: csvFile([`M${i}`], 1),
    })),
  );
}

function decodeMessage(m: SourceMessage) {
  return decodeReadings(m.data, {
    source: m.source,
    receivedAt: m.receivedAt,
    contentType: m.headers['Content-Type'],
  });
}

/** Fetches until the source is done or has nothing pending (or, with `count`, until that many came). */
async function drain(
  source: JetStreamSource | ReplaySource,
  max = 100,
  options: { count?: number; rounds?: number } = {},
): Promise<SourceMessage[]> {
  const out: SourceMessage[] = [];
  for (let i = 0; i < (options.rounds ?? 20); i++) {
    const batch = await source.fetchBatch(max, 1000);
    out.push(...batch.messages);
    if (batch.done) break;
    if (options.count !== undefined) {
      if (out.length >= options.count) break;
      continue;
    }
    if (batch.interrupted !== null) continue;
    if (batch.messages.length === 0 || batch.pending === 0) break;
  }
  return out;
}

describe('streams', () => {
  it('creates the readings stream with the documented limits, idempotently, and never changes an existing one', async () => {
    const name = uniqueName('R');
    const subjects = [`${name.toLowerCase()}.>`];
    const warnings: { stream: string; differences: readonly LimitDifference[] }[] = [];
    const onLimitsDiffer = (stream: string, differences: readonly LimitDifference[]) =>
      warnings.push({ stream, differences });
    const created = await ensureReadingsStream(jsm, { name, subjects, storage: 'memory', onLimitsDiffer });
    expect(created.config).toMatchObject({
      retention: 'limits',
      discard: 'old',
      max_age: 7 * 24 * 3600 * 1e9,
      duplicate_window: 3600 * 1e9,
      num_replicas: 1,
      subjects,
    });
    const again = await ensureReadingsStream(jsm, { name, subjects, storage: 'memory', onLimitsDiffer });
    expect(again.created).toBe(created.created);
    expect(warnings).toEqual([]);
    // The operator shortened the retention on purpose: a worker asking for the defaults keeps it.
    await jsm.streams.update(name, { ...created.config, max_age: 3600 * 1e9, duplicate_window: 60 * 1e9 });
    const kept = await ensureReadingsStream(jsm, { name, subjects, storage: 'memory', onLimitsDiffer });
    expect(kept.config.max_age).toBe(3600 * 1e9);
    expect(kept.config.duplicate_window).toBe(60 * 1e9);
    expect((await jsm.streams.info(name)).config.max_age).toBe(3600 * 1e9);
    expect(warnings).toEqual([
      {
        stream: name,
        differences: [
          { limit: 'max_age', actual: 3600 * 1e9, recommended: 7 * 24 * 3600 * 1e9 },
          { limit: 'duplicate_window', actual: 60 * 1e9, recommended: 3600 * 1e9 },
        ],
      },
    ]);
    // Asking for 3 replicas of a stream that has 1 warns and changes nothing either.
    warnings.length = 0;
    await ensureReadingsStream(jsm, { name, subjects, storage: 'memory', replicas: 3, onLimitsDiffer });
    expect(warnings[0]?.differences).toContainEqual({ limit: 'num_replicas', actual: 1, recommended: 3 });
    expect((await jsm.streams.info(name)).config.num_replicas).toBe(1);
    await jsm.streams.delete(name);
  });

  it('with manage: false creates nothing and names the missing stream or bucket', async () => {
    const name = uniqueName('R');
    const subjects = [`${name.toLowerCase()}.>`];
    await expect(
      ensureDeadLetterStream(jsm, { name, subjects, storage: 'memory', manage: false }),
    ).rejects.toThrow(new RegExp(`stream ${name} does not exist and streams are not managed here`));
    await expect(jsm.streams.info(name)).rejects.toThrow(/stream not found/);
    const bucket = uniqueName('cp');
    await expect(CheckpointKv.open(js, { bucket, manage: false })).rejects.toThrow(
      new RegExp(`checkpoint bucket ${bucket} does not exist`),
    );
    await expect(jsm.streams.info(`KV_${bucket}`)).rejects.toThrow(/stream not found/);
    // Once the owner created them, an unmanaged worker uses them as they are.
    await ensureDeadLetterStream(jsm, { name, subjects, storage: 'memory' });
    expect((await ensureDeadLetterStream(jsm, { name, subjects, manage: false })).config.name).toBe(name);
    const created = await CheckpointKv.open(js, { bucket, storage: 'memory' });
    await created.put('k', 'v');
    const differences: LimitDifference[] = [];
    const opened = await CheckpointKv.open(js, {
      bucket,
      manage: false,
      replicas: 3,
      onLimitsDiffer: (_s, d) => differences.push(...d),
    });
    expect((await opened.get('k'))?.value).toBe('v');
    expect(differences).toEqual([{ limit: 'num_replicas', actual: 1, recommended: 3 }]);
    await jsm.streams.delete(name);
    await jsm.streams.delete(`KV_${bucket}`);
  });
});

describe('publisher and durable source', () => {
  it('publishes a CSV file as one message with its headers, and the source hands it over for decoding', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = ReadingsPublisher.forConnection(nc, js, { subjectPrefix: prefix, partitions: 4 });
    const bytes = csvFile(['MTR-78910'], 4);
    const path = 'raw/2024/03/15/14/MTR-78910.csv';
    const result = await publisher.publishFile({ path, bytes });
    expect(result).toMatchObject({ path, stored: 1, duplicates: 0 });
    expect(result.messages[0].subject).toBe(`${prefix}.${partitionOf('MTR-78910', 4)}`);

    const source = await JetStreamSource.open(js, { stream, durable: 'reader' });
    const batch = await source.fetchBatch(10, 1000);
    expect(batch.messages).toHaveLength(1);
    const [message] = batch.messages;
    expect(message).toMatchObject({
      stream,
      seq: 1,
      subject: result.messages[0].subject,
      source: `stream:${stream}:1`,
      deliveryCount: 1,
      redelivered: false,
      receivedAt: Date.UTC(2024, 2, 15, 15),
    });
    expect(message.headers[GsHeaders.ContentType]).toBe('text/csv');
    expect(message.headers[GsHeaders.Source]).toBe(path);
    expect(Buffer.from(message.data).equals(bytes)).toBe(true);
    const decoded = decodeMessage(message);
    if (!decoded.ok) throw new Error(decoded.failure.reason);
    expect(decoded.readings.map((r) => [r.meterId, r.value, r.source])).toEqual([
      ['MTR-78910', '1000', `stream:${stream}:1`],
      ['MTR-78910', '1001', `stream:${stream}:1`],
      ['MTR-78910', '1002', `stream:${stream}:1`],
      ['MTR-78910', '1003', `stream:${stream}:1`],
    ]);
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 1, lag: 1 });
    expect(await source.ack([message])).toEqual({ acked: [1], failed: [], unknown: [] });
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 0, lag: 0 });
    expect(await source.ack([message])).toEqual({ acked: [], failed: [], unknown: [1] });
    await source.close();
  });

  it('caps a Gs-Received-At header at the time the stream stored the message (a header of 2200)', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix });
    const before = Date.now();
    await publisher.publishFiles([
      {
        path: 'raw/2200/01/01/00/MTR-1.csv',
        bytes: csvFile(['MTR-1'], 1),
        receivedAt: Date.UTC(2200, 0, 1, 1),
      },
    ]);
    const source = await JetStreamSource.open(js, { stream, durable: 'reader' });
    const [message] = (await source.fetchBatch(10, 1000)).messages;
    expect(message!.headers[GsHeaders.ReceivedAt]).toBe(String(Date.UTC(2200, 0, 1, 1)));
    expect(message!.receivedAt).toBe(message!.storedAt);
    expect(message!.receivedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(message!.receivedAt).toBeLessThanOrEqual(Date.now());
    await source.close();
  });

  it('stores a file uploaded twice once (message id = SHA-256 of the content)', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix });
    const files = [0, 1, 2].map((i) => ({
      path: `raw/2024/03/15/14/MTR-${i}.csv`,
      bytes: csvFile([`MTR-${i}`], 3),
    }));
    const first = await publisher.publishFiles(files);
    expect(first).toMatchObject({ messages: 3, stored: 3, duplicates: 0, failed: [] });
    const second = await publisher.publishFiles(files);
    expect(second).toMatchObject({ messages: 3, stored: 0, duplicates: 3, failed: [] });
    expect(second.files.flatMap((f) => f.messages.map((m) => m.duplicate))).toEqual([true, true, true]);
    expect((await jsm.streams.info(stream)).state.messages).toBe(3);
  });

  it('cuts a large file into chunks under the message limit, each with the header, losing no line', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = ReadingsPublisher.forConnection(nc, js, { subjectPrefix: prefix });
    const meters = Array.from({ length: 60 }, (_, i) => `MTR-${String(i).padStart(5, '0')}`);
    const bytes = csvFile(meters, 1000); // ~3 MB
    expect(bytes.length).toBeGreaterThan(2.5 * 1024 * 1024);
    const result = await publisher.publishFile({ path: 'raw/2024/03/15/14/batch.csv', bytes });
    expect(result.messages.length).toBeGreaterThanOrEqual(3);
    expect(result.messages.every((m) => m.bytes <= publisher.maxBodyBytes)).toBe(true);

    const source = await JetStreamSource.open(js, { stream, durable: 'reader' });
    const messages = await drain(source);
    expect(messages.map((m) => m.headers[GsHeaders.Chunk])).toEqual(
      result.messages.map((_, i) => `${i + 1}/${result.messages.length}`),
    );
    const lines: string[] = [];
    for (const m of messages) {
      expect(
        Buffer.from(m.data).toString('utf8').startsWith('meter_id,timestamp,value,unit,location\n'),
      ).toBe(true);
      const decoded = decodeMessage(m);
      if (!decoded.ok) throw new Error(decoded.failure.reason);
      expect(decoded.failures).toEqual([]);
      lines.push(...decoded.readings.map((r) => r.raw));
    }
    expect(lines).toEqual(bytes.toString('utf8').trimEnd().split('\n').slice(1));
    expect((await publisher.publishFile({ path: 'raw/2024/03/15/14/batch.csv', bytes })).duplicates).toBe(
      result.messages.length,
    );
  });

  it('can split a many-meter file by meter partition, keeping each meter in one partition', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, {
      subjectPrefix: prefix,
      partitions: 4,
      partitionBy: 'meter',
    });
    const meters = ['MTR-1', 'MTR-2', 'MTR-3', 'MTR-4', 'MTR-5', 'MTR-6'];
    await publisher.publishFile({ path: 'raw/2024/03/15/14/all.csv', bytes: csvFile(meters, 5) });
    const source = await JetStreamSource.open(js, { stream, durable: 'reader' });
    const seen = new Map<string, number>();
    for (const m of await drain(source)) {
      const decoded = decodeMessage(m);
      if (!decoded.ok) throw new Error(decoded.failure.reason);
      for (const r of decoded.readings) {
        expect(m.subject).toBe(`${prefix}.${partitionOf(r.meterId, 4)}`);
        seen.set(r.meterId, (seen.get(r.meterId) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(seen)).toEqual(Object.fromEntries(meters.map((m) => [m, 5])));
  });

  it('refuses a 50 MB file it cannot cut with a clear error, and still publishes the other files', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = ReadingsPublisher.forConnection(nc, js, { subjectPrefix: prefix });
    const garbage = Buffer.alloc(50 * 1024 * 1024, 0xff);
    expect(() => publisher.plan({ path: 'raw/2024/03/15/14/blob.csv', bytes: garbage })).toThrow(
      PayloadTooLargeError,
    );
    expect(() => publisher.plan({ path: 'raw/2024/03/15/14/blob.csv', bytes: garbage })).toThrow(
      /52428800 bytes exceed the message limit of \d+ bytes and are not UTF-8 text/,
    );
    const oneHugeLine = Buffer.from(
      `meter_id,timestamp,value,unit\nM1,t,${'9'.repeat(2 * 1024 * 1024)},kW\n`,
    );
    const summary = await publisher.publishFiles([
      { path: 'raw/2024/03/15/14/blob.csv', bytes: garbage },
      { path: 'raw/2024/03/15/14/line.csv', bytes: oneHugeLine },
      { path: 'raw/2024/03/15/14/ok.csv', bytes: csvFile(['MTR-1'], 2) },
    ]);
    expect(summary.failed.map((f) => [f.path, f.error.name])).toEqual([
      ['raw/2024/03/15/14/blob.csv', 'PayloadTooLargeError'],
      ['raw/2024/03/15/14/line.csv', 'PayloadTooLargeError'],
    ]);
    expect(summary.failed[1].error.message).toMatch(/single record larger than the message limit/);
    expect(summary.files.map((f) => f.path)).toEqual(['raw/2024/03/15/14/ok.csv']);
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
  });
});

describe('acknowledgement after commit', () => {
  it('redelivers messages not acknowledged before a crash to the next instance, after ack_wait', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix });
    await publisher.publishFiles(
      [0, 1, 2, 3].map((i) => ({ path: `raw/2024/03/15/14/M${i}.csv`, bytes: csvFile([`M${i}`], 1) })),
    );
    // ack_wait of 2.5 s: a loaded machine holding a redelivered message past it sees a third delivery.
    const crashed = await JetStreamSource.open(js, { stream, durable: 'worker', ackWaitMs: 2500 });
    const first = await crashed.fetchBatch(10, 1000);
    expect(first.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    // Seqs 1 and 2 were committed and acknowledged; 3 and 4 were in the batch that never committed.
    expect((await crashed.ack([1, 2])).acked).toEqual([1, 2]);
    await crashed.close({ nak: false }); // a crash sends no nak

    const next = await JetStreamSource.open(js, { stream, durable: 'worker', ackWaitMs: 2500 });
    const started = Date.now();
    // Asking for exactly what is due returns as soon as it arrives, well inside the ack_wait
    // (a message held past ack_wait is queued for redelivery again and shows up as pending).
    const redelivered = await drain(next, 2, { count: 2, rounds: 8 });
    expect(redelivered.map((m) => m.seq)).toEqual([3, 4]);
    expect(redelivered.every((m) => m.redelivered && m.deliveryCount === 2)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect((await next.ack(redelivered)).acked).toEqual([3, 4]);
    expect(await next.pending()).toMatchObject({ lag: 0 });
    await next.close();
  });

  it('never asks for more than max_ack_pending allows, and says when it must ack first', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix });
    await publisher.publishFiles(
      Array.from({ length: 8 }, (_, i) => ({
        path: `raw/2024/03/15/14/M${i}.csv`,
        bytes: csvFile([`M${i}`], 1),
      })),
    );
    const source = await JetStreamSource.open(js, { stream, durable: 'small', maxAckPending: 5 });
    const first = await source.fetchBatch(10, 1000);
    expect(first.messages).toHaveLength(5);
    const stalled = await source.fetchBatch(10, 1000);
    expect(stalled).toMatchObject({ messages: [], stalled: true });
    await source.ack(first.messages);
    const rest = await source.fetchBatch(10, 1000);
    expect(rest.messages.map((m) => m.seq)).toEqual([6, 7, 8]);
    await source.close();
  });

  it('acknowledges a whole batch with one confirmed round trip', async () => {
    const { stream, prefix } = await freshStreams();
    await publishMeterFiles(prefix, 50);
    const source = await JetStreamSource.open(js, { stream, durable: 'w' });
    const batch = await source.fetchBatch(100, 1000);
    expect(batch.messages).toHaveLength(50);
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 50 });
    const result = await source.ack([...batch.messages].reverse());
    expect(result.acked).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    // Confirmed means applied: the server already counts none of them as pending.
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 0, lag: 0 });
    await source.close();
  });

  it('a consumer it creates acknowledges cumulatively: a commit of 50 messages is one ack on the wire', async () => {
    const { stream, prefix } = await freshStreams();
    await publishMeterFiles(prefix, 50);
    const source = await JetStreamSource.open(js, { stream, durable: 'w' });
    expect((await jsm.consumers.info(stream, 'w')).config.ack_policy).toBe(AckPolicy.All);
    const batch = await source.fetchBatch(100, 1000);
    expect(batch.messages).toHaveLength(50);
    const sent = nc.stats().outMsgs;
    expect((await source.ack(batch.messages)).acked).toHaveLength(50);
    // Fifty acks with explicit acknowledgement (49 published and one confirmed), one here.
    expect(nc.stats().outMsgs - sent).toBe(1);
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 0, lag: 0 });
    await source.close();
  });

  it('never acknowledges past a message handed out and not yet committed: the later ones wait for it', async () => {
    const { stream, prefix } = await freshStreams();
    await publishMeterFiles(prefix, 10);
    const source = await JetStreamSource.open(js, { stream, durable: 'w' });
    expect((await source.fetchBatch(100, 1000)).messages).toHaveLength(10);
    // 4 and 5 are still being processed: one cumulative ack for 7 would acknowledge them too.
    expect((await source.ack([1, 2, 3, 6, 7])).acked).toEqual([1, 2, 3]);
    expect(await source.pending()).toMatchObject({ numAckPending: 7 });
    expect(source.unacknowledged).toBe(7);
    // Their commit takes 6 and 7 along.
    expect((await source.ack([4, 5])).acked).toEqual([4, 5, 6, 7]);
    expect(await source.pending()).toMatchObject({ numAckPending: 3 });
    expect((await source.ack([8, 9, 10])).acked).toEqual([8, 9, 10]);
    expect(await source.pending()).toMatchObject({ numAckPending: 0, lag: 0 });
    await source.close();
  });

  it('a consumer found with explicit acks keeps them, one per message', async () => {
    const { stream, prefix } = await freshStreams();
    await publishMeterFiles(prefix, 5);
    await jsm.consumers.add(stream, { durable_name: 'old', ack_policy: AckPolicy.Explicit });
    const source = await JetStreamSource.open(js, { stream, durable: 'old' });
    expect((await source.fetchBatch(100, 1000)).messages).toHaveLength(5);
    expect((await source.ack([1, 3])).acked).toEqual([1, 3]);
    expect(await source.pending()).toMatchObject({ numAckPending: 3 });
    expect((await source.ack([2, 4, 5])).acked).toEqual([2, 4, 5]);
    expect(await source.pending()).toMatchObject({ numAckPending: 0, lag: 0 });
    await source.close();
  });

  it('keeps only an ack subject per unacknowledged message: a fetched message is collectable before its ack', async () => {
    const { stream, prefix } = await freshStreams();
    // One reading a message, without headers: a message's payload is then the very bytes its handle holds.
    for (let i = 0; i < 20; i++)
      await js.publish(
        `${prefix}.${i % 4}`,
        Buffer.from(`{"meter_id":"M${i}","timestamp":"2024-03-15T14:00:00Z","value":"1","unit":"W"}`),
      );
    const source = await JetStreamSource.open(js, { stream, durable: 'w' });
    // Made in a function of its own, so nothing on this frame refers to the messages afterwards.
    const fetch = async () => {
      const batch = await source.fetchBatch(100, 1000);
      return {
        seqs: batch.messages.map((m) => m.seq),
        payloads: batch.messages.map((m) => new WeakRef(m.data)),
      };
    };
    const { seqs, payloads } = await fetch();
    expect(seqs).toHaveLength(20);
    expect(source.unacknowledged).toBe(20);
    await collectGarbage();
    // Held until the commit (a write, ~100,000 one-reading messages later), a message's handle kept its
    // payload and the client's parse of it alive into the old generation.
    expect(alive(payloads)).toBe(0);
    expect((await source.ack(seqs)).acked).toEqual(seqs);
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 0, lag: 0 });
    await source.close();
  });

  it('a caught-up consumer hands over a message as soon as it is published, not when the pull expires', async () => {
    const { stream, prefix } = await freshStreams();
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix });
    const source = await JetStreamSource.open(js, { stream, durable: 'live' });
    // Nothing pending: a pull asking for a full batch of 64 would wait its whole 20 s expiry for the other 63.
    const started = Date.now();
    const fetching = source.fetchBatch(64, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    await publisher.publishFile({ path: 'raw/2024/03/15/14/M0.csv', bytes: csvFile(['M0'], 1) });
    const first = await fetching;
    expect(first.messages.map((m) => m.seq)).toEqual([1]);
    expect(Date.now() - started).toBeLessThan(10_000);
    // Messages that piled up meanwhile come in one pull: the pull grows with what the last message said is pending.
    await publisher.publishFiles(
      [1, 2, 3].map((i) => ({ path: `raw/2024/03/15/14/M${i}.csv`, bytes: csvFile([`M${i}`], 1) })),
    );
    const next = await drain(source, 64, { count: 3, rounds: 5 });
    expect(next.map((m) => m.seq)).toEqual([2, 3, 4]);
    await source.close();
  });

  it('a graceful close hands unacknowledged messages back at once (nak)', async () => {
    const { stream, prefix } = await freshStreams();
    await new ReadingsPublisher(js, { subjectPrefix: prefix }).publishFile({
      path: 'raw/2024/03/15/14/M.csv',
      bytes: csvFile(['M'], 1),
    });
    const first = await JetStreamSource.open(js, { stream, durable: 'w', ackWaitMs: 60_000 });
    expect((await first.fetchBatch(1, 1000)).messages).toHaveLength(1);
    await first.close();
    const second = await JetStreamSource.open(js, { stream, durable: 'w', ackWaitMs: 60_000 });
    const again = await second.fetchBatch(1, 2000);
    expect(again.messages.map((m) => [m.seq, m.redelivered])).toEqual([[1, true]]);
    await second.close();
  });
});

describe('replay', () => {
  async function publishNumbered(prefix: string, from: number, to: number) {
    const publisher = new ReadingsPublisher(js, { subjectPrefix: prefix, partitions: 2 });
    await publisher.publishFiles(
      Array.from({ length: to - from + 1 }, (_, i) => ({
        path: `raw/2024/03/15/14/M${from + i}.csv`,
        bytes: csvFile([`M${from + i}`], 1),
      })),
    );
  }

  it('replays from a sequence up to a stop sequence, then reports done', async () => {
    const { stream, prefix } = await freshStreams();
    await publishNumbered(prefix, 1, 10);
    const replay = await ReplaySource.open(js, { stream, from: { seq: 4 }, to: { seq: 8 } });
    const messages = await drain(replay, 3);
    expect(messages.map((m) => m.seq)).toEqual([4, 5, 6, 7, 8]);
    expect(await replay.fetchBatch(3)).toMatchObject({ messages: [], done: true });
    await replay.close();
  });

  it('stops at the end of the stream as it was when the replay opened, though publishing goes on', async () => {
    const { stream, prefix } = await freshStreams();
    await publishNumbered(prefix, 1, 5);
    const replay = await ReplaySource.open(js, { stream, from: { seq: 2 } });
    await publishNumbered(prefix, 6, 8);
    const started = Date.now();
    expect((await drain(replay, 100)).map((m) => m.seq)).toEqual([2, 3, 4, 5]);
    expect(Date.now() - started).toBeLessThan(3000);
    await replay.close();
    const empty = await ReplaySource.open(js, { stream, from: { seq: 100 } });
    expect(await empty.fetchBatch(10)).toMatchObject({ messages: [], done: true });
    await empty.close();
  });

  it('replays from a time up to a time, and within a partition', async () => {
    const { stream, prefix } = await freshStreams();
    await publishNumbered(prefix, 1, 4);
    await new Promise((r) => setTimeout(r, 50));
    const from = new Date();
    await new Promise((r) => setTimeout(r, 20));
    await publishNumbered(prefix, 5, 8);
    await new Promise((r) => setTimeout(r, 50));
    const to = new Date();
    await new Promise((r) => setTimeout(r, 20));
    await publishNumbered(prefix, 9, 10);

    const replay = await ReplaySource.open(js, { stream, from: { time: from }, to: { time: to } });
    const messages = await drain(replay, 100);
    expect(messages.map((m) => m.seq)).toEqual([5, 6, 7, 8]);
    expect(messages.every((m) => m.storedAt >= from.getTime() && m.storedAt <= to.getTime())).toBe(true);
    await replay.close();

    const partition = `${prefix}.1`;
    const filtered = await ReplaySource.open(js, { stream, from: { seq: 1 }, filterSubjects: [partition] });
    const inPartition = await drain(filtered, 100);
    expect(inPartition.length).toBeGreaterThan(0);
    expect(inPartition.every((m) => m.subject === partition)).toBe(true);
    await filtered.close();
  });
});

describe('dead letters', () => {
  it('moves an undecodable message whole to the dead-letter stream with why and where, then acks it', async () => {
    const { stream, prefix, dlq } = await freshStreams();
    const garbage = Buffer.from([0x00, 0xff, 0xfe, 0x01, 0x02, 0x7b]);
    await new ReadingsPublisher(js, { subjectPrefix: prefix }).publishFile({
      path: 'raw/2024/03/15/14/garbage.csv',
      bytes: garbage,
      contentType: 'text/csv',
    });
    const source = await JetStreamSource.open(js, {
      stream,
      durable: 'w',
      ackWaitMs: 1000,
      deadLetter: { stream: dlq },
    });
    const [message] = (await source.fetchBatch(1, 1000)).messages;
    const decoded = decodeMessage(message);
    expect(decoded.ok).toBe(false);
    if (decoded.ok) return;
    const receipt = await source.deadLetter(message, decoded.failure.reason);
    expect(receipt).toMatchObject({ stream: dlq, subject: `dlq.${message.subject}`, duplicate: false });

    const stored = await jsm.streams.getMessage(dlq, { seq: receipt.seq });
    expect(stored).not.toBeNull();
    if (stored === null) return;
    expect(Buffer.from(stored.data).equals(garbage)).toBe(true);
    expect(stored.header.get(GsHeaders.Reason)).toBe('payload contains NUL bytes (binary data?)');
    expect(stored.header.get(GsHeaders.SourceStream)).toBe(stream);
    expect(stored.header.get(GsHeaders.SourceSeq)).toBe(String(message.seq));
    expect(stored.header.get(GsHeaders.SourceSubject)).toBe(message.subject);
    expect(stored.header.get(GsHeaders.Source)).toBe('raw/2024/03/15/14/garbage.csv');

    // Acked on the source: nothing comes back after ack_wait.
    await new Promise((r) => setTimeout(r, 1200));
    expect(await source.pending()).toMatchObject({ lag: 0 });
    // Dead-lettering the same message again (a redelivered copy) stores nothing new.
    expect((await source.deadLetter(message, 'again')).duplicate).toBe(true);
    expect((await jsm.streams.info(dlq)).state.messages).toBe(1);
    await source.close();
  });

  it('keeps per-record failures apart from dead letters: they travel with the good records', async () => {
    const { stream, prefix } = await freshStreams();
    const bytes = Buffer.from('meter_id,timestamp,value,unit\nM1,t,1,kW\nM2,t\nM3,t,3,kW\n');
    await new ReadingsPublisher(js, { subjectPrefix: prefix }).publishFile({
      path: 'raw/2024/03/15/14/M.csv',
      bytes,
    });
    const source = await JetStreamSource.open(js, { stream, durable: 'w' });
    const [message] = (await source.fetchBatch(1, 1000)).messages;
    const decoded = decodeMessage(message);
    if (!decoded.ok) throw new Error('should decode');
    expect(decoded.readings.map((r) => r.meterId)).toEqual(['M1', 'M3']);
    expect(decoded.failures.map((f: RecordDecodeFailure) => [f.raw, f.source])).toEqual([
      ['M2,t', `stream:${stream}:1#3`],
    ]);
    await source.close();
  });
});

describe('checkpoint KV', () => {
  it('compare-and-set rejects a stale revision so an old worker cannot overwrite a newer checkpoint', async () => {
    const kv = await CheckpointKv.open(js, { bucket: uniqueName('ckpt'), storage: 'memory' });
    expect(await kv.get('pipeline.p0')).toBeNull();
    const created = await kv.compareAndSet('pipeline.p0', '{"seq":10}', 0);
    expect(created.ok).toBe(true);
    if (!created.ok) return;
    const updated = await kv.compareAndSet('pipeline.p0', '{"seq":20}', created.revision);
    expect(updated.ok).toBe(true);
    if (!updated.ok) return;
    // A worker that still holds the first revision tries to write.
    expect(await kv.compareAndSet('pipeline.p0', '{"seq":15}', created.revision)).toEqual({
      ok: false,
      reason: 'stale_revision',
      currentRevision: updated.revision,
    });
    expect(await kv.compareAndSet('pipeline.p0', '{"seq":1}', 0)).toMatchObject({
      ok: false,
      reason: 'stale_revision',
    });
    expect(await kv.get('pipeline.p0')).toMatchObject({ value: '{"seq":20}', revision: updated.revision });
    // Opening the bucket again is idempotent and sees the same value.
    const reopened = await CheckpointKv.open(js, { bucket: kv.bucket, storage: 'memory' });
    expect((await reopened.get('pipeline.p0'))?.value).toBe('{"seq":20}');
  });
});

describe('alerts', () => {
  it('publishes an alert as JSON on greenstream.alerts.<severity>.<kind>', async () => {
    const alert: Alert = {
      severity: 'critical',
      kind: 'meter_fault',
      meterId: uniqueName('MTR'),
      ts: 1_710_511_200_000,
      message: 'stuck',
    };
    expect(alertSubject(alert)).toBe('greenstream.alerts.critical.meter_fault');
    const sub = nc.subscribe('greenstream.alerts.critical.>');
    const received = (async () => {
      for await (const m of sub) {
        const body = m.json<Alert>();
        if (body.meterId === alert.meterId) return { subject: m.subject, body };
      }
      return null;
    })();
    await nc.flush();
    await publishAlert(nc, alert, { flush: true });
    const got = await Promise.race([received, new Promise((r) => setTimeout(() => r('timeout'), 3000))]);
    sub.unsubscribe();
    expect(got).toEqual({ subject: 'greenstream.alerts.critical.meter_fault', body: alert });
  });
});
