/**
 * The repartition publisher batches hourly rows per neighborhood, and every row comes back out of the
 * stream exactly once and in order, on a real nats-server.
 */
import type { JsMsg } from '@nats-io/jetstream';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodeRepartitionMessage,
  ensureRepartitionStream,
  hourlySubject,
  REPARTITION_STREAM,
  RepartitionPublisher,
  watermarkSubject,
} from '../../connectors/jetstream-repartition.js';
import type { HourlyConsumption } from '../../schemas/reading.js';
import { natsClients } from '../harness/nats-clients.js';
import { uniqueName } from '../harness/servers.js';

const HOUR = 3_600_000;
const nats = natsClients();

beforeAll(async () => {
  await ensureRepartitionStream(nats.js);
});

function rowsOf(neighborhood: string, meters: number, hours: number): HourlyConsumption[] {
  const rows: HourlyConsumption[] = [];
  for (let h = 0; h < hours; h++)
    for (let m = 0; m < meters; m++)
      rows.push({
        meterId: `${neighborhood}-m${m}`,
        neighborhood,
        hour: Date.UTC(2026, 0, 1) + h * HOUR,
        avgKw: m + h / 10,
        minKw: 0,
        maxKw: m + 1,
        stddevKw: 0.25,
        count: 4,
      });
  return rows;
}

/** Every message on the subject, in stream order (one filter: nats-server 2.9 takes no more). */
async function messagesOn(subject: string): Promise<JsMsg[]> {
  const consumer = await nats.js.consumers.get(REPARTITION_STREAM, { filter_subjects: subject });
  // The stream's own count for the subject, so the read ends without waiting for an empty pull.
  const info = await nats.jsm.streams.info(REPARTITION_STREAM, { subjects_filter: subject });
  const stored = info.state.subjects?.[subject] ?? 0;
  const out: JsMsg[] = [];
  while (out.length < stored) {
    const batch = await consumer.fetch({ max_messages: stored - out.length, expires: 5000 });
    for await (const m of batch) out.push(m);
  }
  return out;
}

describe('RepartitionPublisher', () => {
  it('sends a neighborhood’s rows in messages of at most maxRowsPerMessage, each row once, in order', async () => {
    // A name with characters a subject token cannot hold, next to plain ones.
    const names = [uniqueName('nb.a b'), uniqueName('nb_b'), uniqueName('nb_c')];
    const byName = new Map(names.map((n, i) => [n, rowsOf(n, [37, 5, 1][i]!, 24)]));
    const interleaved = [...byName.values()].flat().sort((a, b) => a.hour - b.hour);
    const publisher = new RepartitionPublisher(nats.js, { maxRowsPerMessage: 100 });
    await publisher.publish(interleaved, undefined);

    for (const [name, rows] of byName) {
      const messages = await messagesOn(hourlySubject(name));
      expect(messages.length).toBe(Math.ceil(rows.length / 100));
      const decoded = messages.flatMap((m) => {
        const d = decodeRepartitionMessage(m.subject, m.data);
        if (d.kind !== 'hourly') throw new Error('expected hourly rows');
        expect(d.rows.length).toBeLessThanOrEqual(100);
        return d.rows;
      });
      expect(decoded).toEqual(rows);
    }
  });

  it('stores nothing twice when an epoch is published again with the same rows', async () => {
    const name = uniqueName('nb_replay');
    const rows = rowsOf(name, 30, 3);
    const publisher = new RepartitionPublisher(nats.js, { maxRowsPerMessage: 40 });
    await publisher.publish(rows, undefined);
    await publisher.publish(rows, undefined);
    const messages = await messagesOn(hourlySubject(name));
    expect(messages.length).toBe(Math.ceil(rows.length / 40));
  });

  it('publishes the watermark only after every row it passes', async () => {
    const name = uniqueName('nb_mark');
    const worker = uniqueName('w');
    const rows = rowsOf(name, 250, 2);
    await new RepartitionPublisher(nats.js, { maxRowsPerMessage: 50 }).publish(rows, {
      worker,
      partitions: [0, 1],
      time: Date.UTC(2026, 0, 1) + 2 * HOUR,
    });
    const hourly = await messagesOn(hourlySubject(name));
    const marks = await messagesOn(watermarkSubject(worker));
    expect(hourly.length).toBe(10);
    expect(marks.length).toBe(1);
    expect(marks[0]!.seq).toBeGreaterThan(Math.max(...hourly.map((m) => m.seq)));
    const mark = decodeRepartitionMessage(marks[0]!.subject, marks[0]!.data);
    expect(mark).toEqual({
      kind: 'watermark',
      mark: { worker, partitions: [0, 1], time: Date.UTC(2026, 0, 1) + 2 * HOUR },
    });
  });

  it('rejects a batch size that is not a positive integer', () => {
    expect(() => new RepartitionPublisher(nats.js, { maxRowsPerMessage: 0 })).toThrow(RangeError);
    expect(() => new RepartitionPublisher(nats.js, { maxRowsPerMessage: 2.5 })).toThrow(RangeError);
  });
});

describe('decodeRepartitionMessage', () => {
  it('reads the one-row messages of earlier releases', () => {
    const [row] = rowsOf('n', 1, 1);
    const decoded = decodeRepartitionMessage(
      hourlySubject('n'),
      new TextEncoder().encode(JSON.stringify(row)),
    );
    expect(decoded).toEqual({ kind: 'hourly', rows: [row] });
  });

  it('rejects an array on a watermark subject and any other subject', () => {
    const body = new TextEncoder().encode('[]');
    expect(() => decodeRepartitionMessage(watermarkSubject('w'), body)).toThrow(RangeError);
    expect(() => decodeRepartitionMessage('readings.x', body)).toThrow(RangeError);
  });
});
