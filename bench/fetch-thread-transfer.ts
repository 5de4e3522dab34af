/**
 * What it costs the graph's thread to receive one-reading JSON messages decoded on another thread, by
 * the way the batches cross: structured clones of the `RawReading` objects, or the payload bytes
 * transferred (not copied) with the readings rebuilt from them on the receiving thread. Measured as the
 * receiving thread's own busy time (event-loop utilization), which is what the graph loses.
 *
 *   node --expose-gc dist/bench/fetch-thread-transfer.js [--readings 1000000] [--batch 4096]
 */
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { decodeOneReadingJson } from '../codecs/one-reading-json.js';
import type { RawReading } from '../schemas/reading.js';

type Way = 'inThread' | 'clone' | 'bytes';

interface Args {
  readonly readings: number;
  readonly batch: number;
  readonly way: Way;
}

/** The bench's payload: one reading per message, ~100 bytes, 50,000 meters. */
function payload(i: number): Uint8Array {
  const meter = `MTR-${String(i % 50_000).padStart(6, '0')}`;
  const minute = Math.floor(i / 50_000) * 15;
  const ts = new Date(Date.UTC(2024, 2, 11, 0, minute)).toISOString().replace('.000Z', 'Z');
  const value = ((i * 7919) % 5000) / 100;
  return Buffer.from(JSON.stringify({ meter_id: meter, timestamp: ts, value: String(value), unit: 'kW' }));
}

const STREAM = 'BENCH_JSON';

/** The messages of batch `b`, their bytes end to end, and where each starts. */
function batchBytes(args: Args, b: number): { bytes: Uint8Array; starts: Int32Array; seq0: number } {
  const seq0 = b * args.batch + 1;
  const n = Math.min(args.batch, args.readings - b * args.batch);
  const parts: Uint8Array[] = [];
  const starts = new Int32Array(n + 1);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const p = payload(seq0 + i);
    parts.push(p);
    starts[i] = at;
    at += p.length;
  }
  starts[n] = at;
  return { bytes: Buffer.concat(parts), starts, seq0 };
}

/** The worker: prepares every batch first (untimed), then sends them all as fast as it can. */
function sender(args: Args): void {
  const port = parentPort!;
  const batches = Math.ceil(args.readings / args.batch);
  const ready: unknown[] = [];
  const transfers: ArrayBuffer[][] = [];
  for (let b = 0; b < batches; b++) {
    const { bytes, starts, seq0 } = batchBytes(args, b);
    if (args.way === 'clone') {
      const records: RawReading[] = [];
      for (let i = 0; i + 1 < starts.length; i++) {
        const seq = seq0 + i;
        const r = decodeOneReadingJson(
          bytes.subarray(starts[i], starts[i + 1]),
          `stream:${STREAM}:${seq}`,
          1,
        );
        records.push(r!);
      }
      ready.push(records);
      transfers.push([]);
    } else {
      // Copies of their own, so each transfer detaches only its own buffers.
      const own = bytes.slice();
      const ownStarts = starts.slice();
      ready.push({ bytes: own, starts: ownStarts, seq0 });
      transfers.push([own.buffer as ArrayBuffer, ownStarts.buffer as ArrayBuffer]);
    }
  }
  port.once('message', () => {
    for (let b = 0; b < ready.length; b++) port.postMessage(ready[b], transfers[b]!);
    port.postMessage('end');
  });
  port.postMessage('ready');
}

/** Builds the readings of a transferred batch the way the threaded source does. */
function rebuild(bytes: Uint8Array, starts: Int32Array, seq0: number, into: RawReading[]): void {
  for (let i = 0; i + 1 < starts.length; i++) {
    const r = decodeOneReadingJson(
      bytes.subarray(starts[i], starts[i + 1]),
      `stream:${STREAM}:${seq0 + i}`,
      1,
    );
    into.push(r!);
  }
}

async function receiver(args: Args): Promise<Record<string, number>> {
  globalThis.gc?.();
  let count = 0;
  let checksum = 0;
  const take = (records: readonly RawReading[]): void => {
    count += records.length;
    checksum += records[records.length - 1]!.meterId.length;
  };
  if (args.way === 'inThread') {
    // The source as it is: every message its own `Uint8Array`, decoded on this thread.
    const batches = Math.ceil(args.readings / args.batch);
    const prepared: { messages: Uint8Array[]; seq0: number }[] = [];
    for (let b = 0; b < batches; b++) {
      const { bytes, starts, seq0 } = batchBytes(args, b);
      const messages: Uint8Array[] = [];
      for (let i = 0; i + 1 < starts.length; i++) messages.push(bytes.slice(starts[i], starts[i + 1]));
      prepared.push({ messages, seq0 });
    }
    globalThis.gc?.();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const { messages, seq0 } of prepared) {
      const records: RawReading[] = [];
      for (let i = 0; i < messages.length; i++)
        records.push(decodeOneReadingJson(messages[i]!, `stream:${STREAM}:${seq0 + i}`, 1)!);
      take(records);
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { count, checksum, busyMs: ms, wallMs: ms, cpuMs: (cpu.user + cpu.system) / 1000 };
  }
  const worker = new Worker(new URL(import.meta.url), { workerData: args });
  await new Promise<void>((resolve) => worker.once('message', () => resolve()));
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    worker.on('error', reject);
    worker.on('message', (m: unknown) => {
      if (m === 'end') return resolve();
      if (Array.isArray(m)) return take(m as RawReading[]);
      const { bytes, starts, seq0 } = m as { bytes: Uint8Array; starts: Int32Array; seq0: number };
      const records: RawReading[] = [];
      rebuild(bytes, starts, seq0, records);
      take(records);
    });
    worker.postMessage('go');
  });
  const wallMs = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  await worker.terminate();
  return { count, checksum, busyMs: elu.active, wallMs, cpuMs: (cpu.user + cpu.system) / 1000 };
}

if (isMainThread) {
  const { values } = parseArgs({
    options: {
      readings: { type: 'string', default: '1000000' },
      batch: { type: 'string', default: '4096' },
      rounds: { type: 'string', default: '3' },
    },
  });
  const readings = Number(values.readings);
  const batch = Number(values.batch);
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const way of ['inThread', 'clone', 'bytes'] as const) {
      const r = await receiver({ readings, batch, way });
      const perReading = (ms: number) => ((ms * 1e6) / readings).toFixed(0);
      console.log(
        `${way.padEnd(8)} ${r.count} readings: receiving thread busy ${Math.round(r.busyMs!)} ms ` +
          `(${perReading(r.busyMs!)} ns a reading), wall ${Math.round(r.wallMs!)} ms, process CPU ${Math.round(r.cpuMs!)} ms`,
      );
    }
  }
} else {
  sender(workerData as Args);
}
