/**
 * Baseline (a): the same stream drained with the same client and consumer settings, no processing — each
 * message is fetched and acknowledged on the pipeline's checkpoint cadence, and nothing else.
 */
import { JetStreamSource, type SourceMessage } from '../../connectors/jetstream.js';
import type { TaskContext } from '../child.js';
import { cpuMsSince, peakRssMb } from '../protocol.js';
import { connect, type StreamSpec } from './common.js';

export interface DrainArgs extends StreamSpec {
  readonly durable: string;
  readonly batchSize: number;
  readonly maxAckPending: number;
  /** Acknowledge after this many messages, as the pipeline does at a checkpoint. */
  readonly ackEvery: number;
}

export interface DrainFigures {
  readonly messages: number;
  readonly bytes: number;
  readonly wallMs: number;
  readonly messagesPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly fetchMs: number;
  readonly ackMs: number;
  readonly cpuMs: number;
  readonly peakRssMb: number;
}

export async function drainTask(args: DrainArgs, _context: TaskContext): Promise<DrainFigures> {
  const { nc, js } = await connect(args.natsUrl);
  try {
    const source = await JetStreamSource.open(js, {
      stream: args.stream,
      durable: args.durable,
      maxAckPending: args.maxAckPending,
      ackWaitMs: 600_000,
    });
    let count = 0;
    let bytes = 0;
    let fetchMs = 0;
    let ackMs = 0;
    let lastEmpty = 0;
    let held: SourceMessage[] = [];
    const ack = async (): Promise<void> => {
      const t = performance.now();
      if (held.length > 0) await source.ack(held);
      held = [];
      ackMs += performance.now() - t;
    };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (;;) {
      const t = performance.now();
      const fetched = await source.fetchBatch(args.batchSize, 1000);
      const spent = performance.now() - t;
      fetchMs += spent;
      if (fetched.messages.length === 0 && !fetched.stalled) {
        lastEmpty = spent;
        break;
      }
      for (const m of fetched.messages) {
        count += 1;
        bytes += m.data.byteLength;
        held.push(m);
      }
      if (held.length >= args.ackEvery || fetched.stalled) await ack();
    }
    await ack();
    const wallMs = performance.now() - t0 - lastEmpty;
    await source.close();
    return {
      messages: count,
      bytes,
      wallMs: Math.round(wallMs),
      messagesPerSecond: Math.round(count / (wallMs / 1000)),
      megabytesPerSecond: Math.round(bytes / 1048576 / (wallMs / 1000)),
      fetchMs: Math.round(fetchMs - lastEmpty),
      ackMs: Math.round(ackMs),
      cpuMs: cpuMsSince(cpu0),
      peakRssMb: peakRssMb(),
    };
  } finally {
    await nc.drain();
  }
}
