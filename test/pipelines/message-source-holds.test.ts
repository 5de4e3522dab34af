/**
 * What the all-partitions message source keeps between a pull and the commit that acknowledges it: the
 * stream sequences, not the messages (a commit comes a write, ~100,000 one-reading messages, later).
 */
import { describe, expect, it } from 'vitest';
import type {
  AckResult,
  FetchedBatch,
  ReadingsMessageSource,
  SourceMessage,
} from '../../connectors/jetstream-source.js';
import { messageReadingSource } from '../../pipelines/sources.js';
import { alive, collectGarbage } from '../harness/gc.js';
import { sourceMessage } from '../harness/source-messages.js';

function message(seq: number): SourceMessage {
  return sourceMessage(
    seq,
    Buffer.from(`{"meter_id":"MTR-${seq}","timestamp":"2024-03-11T00:00:00.000Z","value":"1.5","unit":"kW"}`),
  );
}

/** One pull of messages 1–5, then nothing; what it hands out is watched, what is acknowledged recorded. */
function watchedMessages() {
  const handedOut: WeakRef<SourceMessage>[] = [];
  const acked: (number | SourceMessage)[] = [];
  let pulled = false;
  const messages: ReadingsMessageSource = {
    async fetchBatch(): Promise<FetchedBatch> {
      const batch = pulled ? [] : [1, 2, 3, 4, 5].map(message);
      pulled = true;
      for (const m of batch) handedOut.push(new WeakRef(m));
      return { messages: batch, pending: 0, done: false, stalled: false, interrupted: null };
    },
    async ack(ms): Promise<AckResult> {
      acked.push(...ms);
      return { acked: [], failed: [], unknown: [] };
    },
    deadLetter: async () => {
      throw new Error('not expected');
    },
    pending: async () => ({ numPending: 0, numAckPending: 0, lag: 0, numRedelivered: 0 }),
    close: async () => {},
  };
  return { messages, handedOut, acked };
}

describe('the all-partitions message source between a pull and its commit', () => {
  it('holds the stream sequences, not the messages, and acknowledges exactly those at the commit', async () => {
    const { messages, handedOut, acked } = watchedMessages();
    const source = messageReadingSource(async () => messages, { now: () => 0 });
    await source.open(undefined);
    const batch = await source.next();
    expect(batch !== 'idle' && batch !== 'end' && batch.records.map((r) => r.meterId)).toEqual([
      'MTR-1',
      'MTR-2',
      'MTR-3',
      'MTR-4',
      'MTR-5',
    ]);
    await collectGarbage();
    expect(handedOut).toHaveLength(5);
    expect(alive(handedOut)).toBe(0);
    expect(acked).toEqual([]);
    await source.commit();
    expect(acked).toEqual([1, 2, 3, 4, 5]);
    await source.close();
  });
});
