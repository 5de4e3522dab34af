import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeReadingsCsv } from '../../codecs/decode.js';
import {
  connectNats,
  DEAD_LETTER_STREAM,
  ensureDeadLetterStream,
  ensureReadingsStream,
  JetStreamSource,
  READINGS_STREAM,
  ReadingsPublisher,
} from '../../connectors/jetstream.js';
import { type NatsServer, startNatsServer } from '../harness/servers.js';

// A server of its own: this test stops and restarts it, which the shared server must not see.
let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats({ servers: server.url, reconnectTimeWaitMs: 100, name: 'restart-test' });
});

afterAll(async () => {
  await nc?.close();
  await server?.dispose();
});

function file(i: number) {
  const rows = [{ meterId: `MTR-${i}`, timestamp: '2024-03-15T14:00:00Z', value: String(i), unit: 'kW' }];
  return { path: `raw/2024/03/15/14/MTR-${i}.csv`, bytes: Buffer.from(encodeReadingsCsv(rows)) };
}

describe('NATS server restarted mid-stream', () => {
  it('the durable consumer reconnects and carries on; publishes retry through the outage; nothing is lost', async () => {
    const js = jetstream(nc);
    // The default names and subjects: this server is ours alone.
    const readings = await ensureReadingsStream(js);
    expect(readings.config).toMatchObject({
      name: READINGS_STREAM,
      subjects: ['readings.>'],
      storage: 'file',
    });
    expect((await ensureDeadLetterStream(js)).config).toMatchObject({
      name: DEAD_LETTER_STREAM,
      subjects: ['dlq.readings.>'],
    });

    const publisher = ReadingsPublisher.forConnection(nc, js, {
      retries: 30,
      retryDelayMs: 100,
      publishTimeoutMs: 1000,
    });
    expect((await publisher.publishFiles(Array.from({ length: 30 }, (_, i) => file(i)))).stored).toBe(30);

    const source = await JetStreamSource.open(js, {
      durable: 'pipeline',
      ackWaitMs: 2000,
      ackTimeoutMs: 1000,
    });
    const seen = new Map<number, number>();
    const take = async (max: number) => {
      const batch = await source.fetchBatch(max, 1000);
      for (const m of batch.messages) seen.set(m.seq, (seen.get(m.seq) ?? 0) + 1);
      // Commit is instant here; acknowledge after it, as the pipeline does.
      const acked = await source.ack(batch.messages);
      return { batch, acked };
    };
    await take(10);
    expect(seen.size).toBe(10);
    // A batch in hand, not yet committed, when the server goes down: its ack comes after the restart.
    const inHand = await source.fetchBatch(10, 1000);
    expect(inHand.messages.map((m) => m.seq)).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    for (const m of inHand.messages) seen.set(m.seq, 1);

    await server.stop();
    // While the server is down: the worker keeps fetching, the publisher keeps publishing.
    const publishing = publisher.publishFiles(Array.from({ length: 10 }, (_, i) => file(30 + i)));
    const interruptions: string[] = [];
    let fetchesWhileDown = 0;
    const consuming = (async () => {
      const deadline = Date.now() + 40_000;
      while (seen.size < 40 && Date.now() < deadline) {
        if (!server.running) fetchesWhileDown++;
        const { batch } = await take(10);
        if (batch.interrupted !== null) interruptions.push(batch.interrupted);
      }
    })();
    await new Promise((r) => setTimeout(r, 1500));
    await server.restart();
    const lateAck = await source.ack(inHand.messages);
    await consuming;
    const published = await publishing;
    expect(fetchesWhileDown).toBeGreaterThan(0);
    expect(published.failed).toEqual([]);
    expect(published.stored + published.duplicates).toBe(10);

    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // Every file once in the stream: retried publishes were de-duplicated by message id.
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(READINGS_STREAM)).state.messages).toBe(40);
    // Anything delivered twice was one whose ack was lost in the outage: redelivery, not loss.
    await new Promise((r) => setTimeout(r, 2500));
    // A caught-up source pulls one message at a time (for live latency) until a delivery reports more
    // pending; redeliveries report none, so they come over several pulls.
    for (let i = 0; i < 20 && (await take(10)).batch.messages.length > 0; i++);
    expect(await source.pending()).toMatchObject({ numPending: 0, numAckPending: 0 });
    console.log(
      `restart: ${fetchesWhileDown} fetches while down, ${interruptions.length} interrupted (${[...new Set(interruptions)].join('; ')}), ` +
        `late acks ${lateAck.acked.length} ok / ${lateAck.failed.length} failed (${lateAck.failed[0]?.error}), ` +
        `${[...seen.values()].filter((n) => n > 1).length} redeliveries`,
    );
    await source.close();
  });
});
