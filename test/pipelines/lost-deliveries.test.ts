/**
 * Deliveries lost in transit: the server hands a pull's messages to the consumer, the client never reads
 * them (it gave up on the pull: missed heartbeats while the process was starved of CPU). They stay
 * acknowledgement-pending until `ack_wait`, then come back behind later messages; a source that had read
 * on took them for redeliveries of what it handed out and dropped them, and a bounded run ended without
 * them. Injected here against a real nats-server by a second client pulling from the same durable
 * consumer and never acknowledging: the sources must notice the gap and read every message exactly once.
 */
import { describe, expect, it } from 'vitest';
import { ensureReadingsStream, JetStreamSource } from '../../connectors/jetstream.js';
import type { ReadingSource } from '../../pipelines/runner.js';
import { messageReadingSource, partitionedReadingSource } from '../../pipelines/sources.js';
import { natsClients } from '../harness/nats-clients.js';
import { uniqueName } from '../harness/servers.js';

const nats = natsClients();

/** A stream of `count` one-reading CSV messages, spread over `partitions` subjects `<prefix>.<p>`. */
async function streamOf(count: number, partitions = 1) {
  const stream = uniqueName('LOST');
  const prefix = stream.toLowerCase();
  await ensureReadingsStream(nats.jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
  for (let i = 1; i <= count; i++) {
    const ts = new Date(Date.UTC(2024, 2, 11) + i * 900_000).toISOString();
    await nats.js.publish(
      `${prefix}.${i % partitions}`,
      `meter_id,timestamp,value,unit\nM${i},${ts},1.5,kW\n`,
    );
  }
  return { stream, prefix };
}

/** The durable recreated right after `resumeAfterSeq`, as the worker opens it. */
function durableOpener(stream: string, durable: string, subject?: string) {
  return async (resumeAfterSeq: number) => {
    try {
      await nats.jsm.consumers.delete(stream, durable);
    } catch {
      // not there yet
    }
    return JetStreamSource.open(nats.js, {
      stream,
      durable,
      start: resumeAfterSeq === 0 ? { kind: 'all' } : { kind: 'sequence', seq: resumeAfterSeq + 1 },
      ...(subject === undefined ? {} : { filterSubjects: [subject] }),
    });
  };
}

/** Pulls `count` messages from the durable through another client and never acknowledges them. */
async function steal(stream: string, durable: string, count: number): Promise<number[]> {
  const consumer = await nats.js.consumers.get(stream, durable);
  const stolen: number[] = [];
  const messages = await consumer.fetch({ max_messages: count, expires: 2000 });
  for await (const m of messages) stolen.push(m.seq);
  return stolen;
}

/** Reads until idle (committing every batch), returning the stream sequence of every record read. */
async function drain(source: ReadingSource, firstBatches: number[] = []): Promise<number[]> {
  const seqs = [...firstBatches];
  for (let i = 0; i < 200; i++) {
    const batch = await source.next();
    if (batch === 'idle' || batch === 'end') return seqs;
    for (const r of batch.records) seqs.push(Number(/:(\d+)/.exec(r.source)?.[1]));
    await source.commit();
  }
  throw new Error('the source never went idle');
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/**
 * An all-partitions source over `count` messages that has handed out its first batch of 10 and committed
 * it, after which a thief takes `stolen` deliveries of its consumer: the sequences read to idleness.
 */
async function readAfterTheft(count: number, stolen: number) {
  const { stream } = await streamOf(count);
  const durable = `lost_${count}_${stolen}`;
  const lost: number[] = [];
  const source = messageReadingSource(durableOpener(stream, durable), {
    batchSize: 10,
    now: Date.now,
    onDeliveriesLost: (n) => lost.push(n),
  });
  await source.open(undefined);
  const first = await source.next();
  if (first === 'idle' || first === 'end') throw new Error('expected a batch');
  expect(first.records).toHaveLength(10);
  await source.commit();
  const taken = await steal(stream, durable, stolen);
  const seqs = await drain(source, range(10));
  await source.close();
  return { taken, lost, seqs: seqs.sort((a, b) => a - b) };
}

describe('deliveries lost in transit', () => {
  it('in the middle of a stream: the gap is seen at the next pull and every message is read once', async () => {
    const { taken, lost, seqs } = await readAfterTheft(40, 5);
    expect(taken).toEqual([11, 12, 13, 14, 15]);
    expect(lost).toEqual([5]);
    expect(seqs).toEqual(range(40));
  });

  it('at the end of a stream: an empty pull with deliveries unaccounted for is not idle', async () => {
    const { taken, lost, seqs } = await readAfterTheft(20, 10);
    expect(taken).toEqual(range(20).slice(10));
    expect(lost).toEqual([10]);
    expect(seqs).toEqual(range(20));
  });

  it('on one partition of a partition set: that lane starts again, the others read on', async () => {
    const { stream, prefix } = await streamOf(40, 2);
    const lost: number[] = [];
    const durableOf = (p: number) => `lost_p${p}`;
    const source = partitionedReadingSource(
      (p, after) => durableOpener(stream, durableOf(p), `${prefix}.${p}`)(after),
      {
        partitions: [0, 1],
        batchSize: 8,
        now: Date.now,
        streamLastSeq: async () => (await nats.jsm.streams.info(stream)).state.last_seq,
        onDeliveriesLost: (count) => lost.push(count),
      },
    );
    await source.open(undefined);
    const seqs: number[] = [];
    const first = await source.next();
    if (first === 'idle' || first === 'end') throw new Error('expected a batch');
    for (const r of first.records) seqs.push(Number(/:(\d+)/.exec(r.source)?.[1]));
    await source.commit();
    // Partition 1 holds the odd sequences; its lane has fetched some already, the thief takes the next 3.
    const stolen = await steal(stream, durableOf(1), 3);
    expect(stolen).toHaveLength(3);
    for (const s of stolen) expect(s % 2).toBe(1);
    seqs.push(...(await drain(source)));
    await source.close();
    expect(lost.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
    expect(seqs.sort((a, b) => a - b)).toEqual(range(40));
  });
});
