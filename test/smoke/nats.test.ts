import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../harness/servers.js';

describe('nats-server with JetStream (shared test server)', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connect({ servers: inject('natsUrl') });
    console.log(`nats-server ${nc.info?.version} (harness says ${inject('natsVersion')})`);
  });

  afterAll(async () => {
    await nc?.drain();
  });

  it('delivers published messages once to a durable pull consumer and leaves nothing pending', async () => {
    const stream = uniqueName('SMOKE');
    const subject = `${stream}.readings`;
    const durable = `${stream}_reader`;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
    await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit });

    const js = jetstream(nc);
    const sent = ['reading-1', 'reading-2', 'reading-3'];
    const acks = await Promise.all(sent.map((body) => js.publish(subject, body)));
    expect(acks.map((ack) => ack.seq)).toEqual([1, 2, 3]);

    const consumer = await js.consumers.get(stream, durable);
    const received: string[] = [];
    const batch = await consumer.fetch({ max_messages: 3, expires: 2_000 });
    for await (const message of batch) {
      received.push(message.string());
      await message.ackAck();
    }

    expect(received).toEqual(sent);
    const info = await consumer.info();
    expect(info.num_pending).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(info.delivered.stream_seq).toBe(3);

    await jsm.streams.delete(stream);
  });
});
