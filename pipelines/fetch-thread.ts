/**
 * The fetch thread of a threaded message source (started by `threaded-message-source.ts`): its own NATS
 * connection and consumer, the pulls (`messagePuller`, as the in-thread source pulls), a few of them read
 * ahead of the graph, the JetStream message handles held until the graph's thread says the batch's
 * outputs are committed, the acknowledgements, and the dead-letter publishes the graph's thread decides.
 * The payloads cross as bytes: rebuilding the readings there costs that thread less than receiving them
 * as cloned objects (`bench/fetch-thread-transfer.ts`).
 */

import { parentPort, workerData } from 'node:worker_threads';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../connectors/jetstream-connection.js';
import {
  JetStreamSource,
  type ReadingsMessageSource,
  ReplaySource,
  type SourceMessage,
} from '../connectors/jetstream-source.js';
import type {
  FetchThreadConsumer,
  FetchThreadItem,
  FetchThreadRequest,
  FetchThreadSettings,
  FromFetchThread,
  ToFetchThread,
  WireBatch,
} from './fetch-thread-protocol.js';
import {
  type MessagePuller,
  messagePuller,
  type OpenMessages,
  type PulledMessages,
} from './message-source.js';
import { serializeError } from './thread-protocol.js';

/** What an item handed over leaves in this thread until it is committed. */
interface Held {
  /** The stream sequences to acknowledge at the commit. */
  readonly acks: number[];
  /** The new messages, until the graph's thread decided which ones to dead-letter. */
  fresh: readonly SourceMessage[] | undefined;
  /** The consumer that delivered them (it dead-letters them). */
  readonly from: ReadingsMessageSource | undefined;
}

function openerFor(nc: NatsConnection, consumer: FetchThreadConsumer): OpenMessages {
  const js = jetstream(nc);
  const filters =
    consumer.filterSubjects === undefined ? {} : { filterSubjects: [...consumer.filterSubjects] };
  const deadLetter = consumer.deadLetter === undefined ? {} : { deadLetter: consumer.deadLetter };
  const stream = consumer.stream === undefined ? {} : { stream: consumer.stream };
  if (consumer.kind === 'durable')
    return (resumeAfterSeq) =>
      JetStreamSource.recreate(
        js,
        {
          ...stream,
          durable: consumer.durable,
          ...filters,
          ...deadLetter,
          ...(consumer.maxAckPending === undefined ? {} : { maxAckPending: consumer.maxAckPending }),
          ...(consumer.ackWaitMs === undefined ? {} : { ackWaitMs: consumer.ackWaitMs }),
        },
        resumeAfterSeq,
      );
  return (resumeAfterSeq) =>
    ReplaySource.open(js, {
      ...stream,
      from: resumeAfterSeq === 0 ? { time: new Date(consumer.fromMs) } : { seq: resumeAfterSeq + 1 },
      ...(consumer.toMs === undefined ? {} : { to: { time: new Date(consumer.toMs) } }),
      ...filters,
      ...deadLetter,
    });
}

/** The pulled messages as one transferable batch: payloads end to end, their sequences and times. */
function wireBatch(item: number, fresh: readonly SourceMessage[], lastSeq: number): WireBatch {
  const n = fresh.length;
  const starts = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    starts[i] = total;
    total += fresh[i]!.data.byteLength;
  }
  starts[n] = total;
  const bytes = new Uint8Array(total);
  const seqs = new Float64Array(n);
  const receivedAt = new Float64Array(n);
  const headers: [number, Readonly<Record<string, string>>][] = [];
  for (let i = 0; i < n; i++) {
    const m = fresh[i]!;
    bytes.set(m.data, starts[i]!);
    seqs[i] = m.seq;
    receivedAt[i] = m.receivedAt;
    if (Object.keys(m.headers).length > 0) headers.push([i, m.headers]);
  }
  return {
    type: 'batch',
    item,
    stream: fresh[0]?.stream ?? '',
    bytes,
    starts,
    seqs,
    receivedAt,
    headers,
    lastSeq,
  };
}

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('fetch-thread.js runs as a worker thread');
  const settings = workerData as FetchThreadSettings;
  const post = (message: FromFetchThread, transfer?: ArrayBuffer[]): void =>
    port.postMessage(message, transfer);
  let nc: NatsConnection | undefined;
  let puller: MessagePuller | undefined;
  const held = new Map<number, Held>();
  let items = 0;
  let credit = settings.ahead;
  let closing = false;
  let commits = 0;
  /** Wakes the pull loop: an item was taken, a commit landed, or the source closes. */
  let wake: (() => void) | undefined;
  const signal = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForSignal = (): Promise<void> => new Promise((resolve) => (wake = resolve));

  const hand = (item: FetchThreadItem, transfer?: ArrayBuffer[]): void => {
    credit -= 1;
    post(item, transfer);
  };

  const handOver = (pulled: PulledMessages & { kind: 'messages' }): void => {
    const item = ++items;
    const batch = wireBatch(item, pulled.fresh, puller!.lastSeq);
    const acks = pulled.covered.map((m) => m.seq);
    for (const m of pulled.fresh) acks.push(m.seq);
    held.set(item, { acks, fresh: pulled.fresh.length > 0 ? pulled.fresh : undefined, from: pulled.from });
    hand({ ...batch, commitSoon: pulled.stalled }, [
      batch.bytes.buffer as ArrayBuffer,
      batch.starts.buffer as ArrayBuffer,
      batch.seqs.buffer as ArrayBuffer,
      batch.receivedAt.buffer as ArrayBuffer,
    ]);
  };

  /** Pulls while the graph's thread has room for more, until the source ends, fails or closes. */
  const pullLoop = async (): Promise<void> => {
    try {
      for (;;) {
        while (credit <= 0 && !closing) await waitForSignal();
        if (closing) return;
        const pulled = await puller!.pull();
        if (closing) return;
        switch (pulled.kind) {
          case 'messages':
            handOver(pulled);
            break;
          case 'stalled': {
            // Nothing can come before the graph's thread commits: hand the request over, then wait for it.
            const item = ++items;
            const seen = commits;
            hand({ ...wireBatch(item, [], puller!.lastSeq), commitSoon: true });
            while (commits === seen && !closing) await waitForSignal();
            break;
          }
          case 'empty': {
            hand(wireBatch(++items, [], puller!.lastSeq));
            break;
          }
          case 'idle':
            hand({ type: 'idle', item: ++items });
            break;
          case 'end':
            hand({ type: 'end', item: ++items });
            return;
        }
      }
    } catch (error) {
      if (!closing) hand({ type: 'failed', item: ++items, error: serializeError(error) });
    }
  };

  const answer = async (request: FetchThreadRequest): Promise<unknown> => {
    switch (request.type) {
      case 'open': {
        nc = await connectNats({ ...settings.nats, name: `${settings.nats.name ?? 'greenstream'} fetch` });
        puller = messagePuller(openerFor(nc, settings.consumer), {
          ...(settings.batchSize === undefined ? {} : { batchSize: settings.batchSize }),
          ...(settings.expiresMs === undefined ? {} : { expiresMs: settings.expiresMs }),
          ...(settings.maxBytesPerBatch === undefined ? {} : { maxBytesPerBatch: settings.maxBytesPerBatch }),
          ...(settings.memoryLimitBytes === undefined ? {} : { memoryLimitBytes: settings.memoryLimitBytes }),
          ...(settings.reopenAfterMs === undefined ? {} : { reopenAfterMs: settings.reopenAfterMs }),
          ...(settings.unavailableAfterMs === undefined
            ? {}
            : { unavailableAfterMs: settings.unavailableAfterMs }),
          now: Date.now,
          onDeliveriesLost: (count, resumeAfterSeq) =>
            post({ type: 'deliveriesLost', count, resumeAfterSeq }),
          onPullsFailing: ({ action, reason, failingForMs }) =>
            post({ type: 'pullsFailing', action, reason, failingForMs }),
        });
        await puller.open(request.lastSeq);
        void pullLoop();
        return undefined;
      }
      case 'deadLetter': {
        const entry = held.get(request.item);
        const fresh = entry?.fresh ?? [];
        const source = entry?.from ?? puller!.current();
        for (const [seq, reason] of request.failed) {
          const m = fresh.find((f) => f.seq === seq);
          if (m === undefined) throw new Error(`no message ${seq} in item ${request.item} to dead-letter`);
          // Acknowledged by the dead-letter publish (as the in-thread source does), not at the commit.
          await source.deadLetter(m, reason);
          const at = entry!.acks.indexOf(seq);
          if (at !== -1) entry!.acks.splice(at, 1);
        }
        return undefined;
      }
      case 'commit': {
        const acks: number[] = [];
        for (const [item, entry] of held) {
          if (item > request.through) continue;
          for (const seq of entry.acks) acks.push(seq);
          held.delete(item);
        }
        commits += 1;
        signal();
        if (acks.length > 0) await puller!.current().ack(acks);
        return undefined;
      }
      case 'pending':
        return (await puller!.current().pending()).lag;
      case 'close':
        closing = true;
        signal();
        await puller?.close();
        await nc?.close();
        return undefined;
    }
  };

  port.on('message', (message: ToFetchThread) => {
    if (message.type === 'taken') {
      credit += 1;
      // The graph's thread is done with it: its dead letters, if any, are published.
      const entry = held.get(message.item);
      if (entry !== undefined) entry.fresh = undefined;
      signal();
      return;
    }
    answer(message).then(
      (value) => post({ type: 'reply', id: message.id, value }),
      (error: unknown) => post({ type: 'reply', id: message.id, error: serializeError(error) }),
    );
  });
}

await main();
