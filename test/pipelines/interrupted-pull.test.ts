/**
 * A pull cut short by a transient failure (a NATS cluster node restarting: "server shutdown", a leader
 * change, a timeout) is not idleness: the message sources hand out an empty batch instead of `idle`, so a
 * bounded run (`--until-idle`, which stops at the first `idle`) does not end with messages still pending.
 * The real cut is injected in test/pipelines/cluster.test.ts; here the sources see it through their
 * `ReadingsMessageSource` port.
 */
import { describe, expect, it } from 'vitest';
import type {
  FetchedBatch,
  ReadingsMessageSource,
  SourceMessage,
} from '../../connectors/jetstream-source.js';
import { MAX_EMPTY_WHILE_PENDING } from '../../pipelines/message-source.js';
import { messageReadingSource, partitionedReadingSource } from '../../pipelines/sources.js';
import { sourceMessage } from '../harness/source-messages.js';

const csv = new TextEncoder().encode('meter_id,timestamp,value,unit\nM1,2024-03-11T00:00:00.000Z,1.5,kW\n');

function message(seq: number): SourceMessage {
  return sourceMessage(seq, csv);
}

/**
 * Delivers message 1 after one pull that a node's shutdown cut short and one that came back empty although
 * the consumer still held it, then nothing.
 */
function flakyMessages(): ReadingsMessageSource {
  const pulls: Partial<FetchedBatch>[] = [{ interrupted: 'server shutdown' }, {}, { messages: [message(1)] }];
  return {
    async fetchBatch() {
      const next = pulls.shift() ?? {};
      return {
        messages: [],
        pending: next.messages === undefined ? 1 : 0,
        done: false,
        stalled: false,
        interrupted: null,
        ...next,
      };
    },
    ack: async () => ({ acked: [], failed: [], unknown: [] }),
    deadLetter: async () => {
      throw new Error('not expected');
    },
    pending: async () => {
      const left = pulls.some((p) => p.messages !== undefined) ? 1 : 0;
      return { numPending: left, numAckPending: 0, lag: left, numRedelivered: 0 };
    },
    close: async () => {},
  };
}

describe('a pull cut short by a cluster node restarting', () => {
  it('is an empty batch for the all-partitions source, not idle; the message comes with the next pull', async () => {
    const source = messageReadingSource(async () => flakyMessages(), { now: () => 0 });
    await source.open(undefined);
    expect(await source.next()).toMatchObject({ records: [] });
    expect(await source.next()).toMatchObject({ records: [] });
    const third = await source.next();
    expect(third !== 'idle' && third !== 'end' && third.records.length).toBe(1);
    expect(await source.next()).toBe('idle');
  });

  it('is an empty batch for a partition set too, never idle while the message is pending', async () => {
    const source = partitionedReadingSource(async () => flakyMessages(), {
      partitions: [0],
      now: () => 0,
      streamLastSeq: async () => 1,
    });
    await source.open(undefined);
    expect(await source.next()).toMatchObject({ records: [] });
    const seen: (number | 'idle' | 'end')[] = [];
    for (let i = 0; i < 4 && !seen.includes(1); i++) {
      const next = await source.next();
      seen.push(next === 'idle' || next === 'end' ? next : next.records.length);
    }
    expect(seen.at(-1)).toBe(1);
    expect(seen).not.toContain('idle');
    expect(await source.next()).toBe('idle');
  });

  it('counts a consumer that keeps reporting messages it never delivers as idle after a bounded wait', async () => {
    const stuck: ReadingsMessageSource = {
      ...flakyMessages(),
      fetchBatch: async () => ({ messages: [], pending: 1, done: false, stalled: false, interrupted: null }),
      pending: async () => ({ numPending: 1, numAckPending: 0, lag: 1, numRedelivered: 0 }),
    };
    const source = messageReadingSource(async () => stuck, { now: () => 0 });
    await source.open(undefined);
    let polls = 0;
    while ((await source.next()) !== 'idle') polls++;
    expect(polls).toBe(MAX_EMPTY_WHILE_PENDING);
  });
});
