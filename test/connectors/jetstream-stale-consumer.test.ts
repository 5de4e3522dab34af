/**
 * A worker restarting while a cluster node catches up: `JetStreamSource.recreate` deletes its durable and
 * creates it again at the checkpoint's position, but a node that was restarting still runs the deleted
 * consumer's old copy for a moment. The lookup then finds the old copy (it would deliver from its old
 * position), or the create is answered "consumer name already in use" (10013); a worker took that for a
 * setup failure and exited for good (CI, cluster.test.ts). Injected here against a real nats-server by a
 * manager that puts the old copy back after the deletion, as the lagging node does.
 */
import { AckPolicy, DeliverPolicy, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { ensureReadingsStream, JetStreamSource } from '../../connectors/jetstream.js';
import { natsClients } from '../harness/nats-clients.js';
import { uniqueName } from '../harness/servers.js';

const nats = natsClients();

async function streamOf(count: number) {
  const stream = uniqueName('STALE');
  const subject = `${stream.toLowerCase()}.0`;
  await ensureReadingsStream(nats.jsm, {
    name: stream,
    subjects: [`${stream.toLowerCase()}.>`],
    storage: 'memory',
  });
  for (let i = 1; i <= count; i++)
    await nats.js.publish(subject, `meter_id,timestamp,value,unit\nM${i},2024-03-11T00:00:00Z,1,kW\n`);
  return stream;
}

/** The durable as a worker left it: started at `start`, three messages delivered and acknowledged. */
async function oldDurable(stream: string, durable: string, start: number) {
  const config = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: start,
  };
  await nats.jsm.consumers.add(stream, config);
  const messages = await (await nats.js.consumers.get(stream, durable)).fetch({
    max_messages: 3,
    expires: 2000,
  });
  for await (const m of messages) await m.ackAck();
}

/**
 * A client whose consumer deletions leave the old copy behind `lagging` times (the deletion succeeds, then
 * the copy is there again), and whose first create is answered 10013 when `nameInUse` is set.
 */
function laggingCluster(putBack: () => Promise<unknown>, lagging: number, nameInUse: boolean) {
  const seen = { deletes: 0, adds: 0, refusedAdds: 0 };
  const js: JetStreamClient = Object.create(nats.js);
  js.jetstreamManager = async () => {
    const jsm = await nats.js.jetstreamManager();
    const consumers = Object.create(jsm.consumers);
    consumers.delete = async (stream: string, durable: string) => {
      seen.deletes++;
      const done = await jsm.consumers.delete(stream, durable);
      if (seen.deletes <= lagging) await putBack();
      return done;
    };
    consumers.add = async (stream: string, config: Parameters<typeof jsm.consumers.add>[1]) => {
      seen.adds++;
      if (nameInUse && seen.refusedAdds === 0) {
        seen.refusedAdds++;
        throw new JetStreamApiError({
          code: 400,
          err_code: 10013,
          description: 'consumer name already in use',
        });
      }
      return jsm.consumers.add(stream, config);
    };
    return Object.assign(Object.create(jsm), { consumers });
  };
  return { js, seen };
}

/**
 * A worker's restart: its old durable (started at `oldStart`, 1–3 of it delivered) left behind by a
 * lagging node as `laggingCluster` says, then recreated after `resumeAfterSeq`; the first three delivered.
 */
async function restart(oldStart: number, lagging: number, nameInUse: boolean, resumeAfterSeq: number) {
  const stream = await streamOf(10);
  const durable = 'p1_p6';
  // The copy put back holds what the old one had delivered, as a node that missed the deletion does.
  const putBack = () => oldDurable(stream, durable, oldStart);
  await putBack();
  const { js, seen } = laggingCluster(putBack, lagging, nameInUse);
  const source = await JetStreamSource.recreate(js, { stream, durable }, resumeAfterSeq);
  const batch = await source.fetchBatch(3, 1000);
  await source.ack(batch.messages);
  return { delivered: batch.messages.map((m) => m.seq), seen, stream, durable };
}

describe('recreating a durable while a node still runs its old copy', () => {
  it('deletes the old copy again instead of binding to it, and delivers from the checkpoint', async () => {
    const { delivered, seen, stream, durable } = await restart(1, 2, false, 6);
    expect(delivered).toEqual([7, 8, 9]);
    // One deletion by recreate, then one per old copy found.
    expect(seen.deletes).toBe(3);
    const info = await nats.jsm.consumers.info(stream, durable);
    expect(info.config).toMatchObject({ deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 7 });
  });

  it('an old copy with the same start that has delivered is stale too', async () => {
    // The checkpoint is still where the old copy started (5): same start, but it delivered 5–7.
    const { delivered, seen } = await restart(5, 1, false, 4);
    expect(delivered).toEqual([5, 6, 7]);
    expect(seen.deletes).toBe(2);
  });

  it('rides out "consumer name already in use" from the create', async () => {
    const { delivered, seen } = await restart(1, 0, true, 4);
    expect(delivered).toEqual([5, 6, 7]);
    expect(seen.refusedAdds).toBe(1);
    expect(seen.adds).toBe(2);
  });
});
