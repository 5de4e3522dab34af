/**
 * Publishing the benchmark's data: a simulated fleet's gateway-hour CSV files (one message per file, as
 * `greenstream publish` sends them), or the same readings one JSON object per message.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { JetStreamClient } from '@nats-io/jetstream';
import { decodeReadings } from '../../codecs/decode.js';
import { partitionOf, ReadingsPublisher } from '../../connectors/jetstream.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { createSimulation } from '../../simulator/index.js';
import type { TaskContext } from '../child.js';
import { cpuMsSince, peakRssMb } from '../protocol.js';
import { connect, ensureBenchStream, type SimSpec, type StreamSpec } from './common.js';

export interface PublishFilesArgs extends StreamSpec {
  readonly sim: SimSpec;
  /** Where registry.csv goes. */
  readonly registryPath: string;
  /** When set, the same files are written there too (the DuckDB baseline reads them). */
  readonly landingDir?: string;
}

export interface PublishFigures {
  readonly messages: number;
  /** Data lines published (readings, and the simulator's malformed and unknown-meter lines). */
  readonly lines: number;
  readonly bytes: number;
  readonly generateMs: number;
  readonly publishMs: number;
  readonly messagesPerSecond: number;
  readonly linesPerSecond: number;
  readonly cpuMs: number;
  readonly peakRssMb: number;
}

export async function publishFilesTask(
  args: PublishFilesArgs,
  context: TaskContext,
): Promise<PublishFigures> {
  const g0 = performance.now();
  const sim = createSimulation(args.sim);
  mkdirSync(dirname(args.registryPath), { recursive: true });
  writeFileSync(args.registryPath, sim.registryCsv());
  const generateMs = performance.now() - g0;
  const { nc, js } = await connect(args.natsUrl);
  try {
    await ensureBenchStream(js, args);
    const publisher = ReadingsPublisher.forConnection(nc, js, {
      subjectPrefix: args.subjectPrefix,
      maxInFlight: 256,
    });
    let lines = 0;
    let bytes = 0;
    let files = 0;
    let renderMs = 0;
    const landing = args.landingDir;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // Rendering the files (the simulator) is interleaved with publishing; its time is taken out below.
    function* files_(): Generator<{ path: string; bytes: Uint8Array }> {
      let folder = '';
      const it = sim.hours();
      for (;;) {
        const r0 = performance.now();
        const next = it.next();
        if (next.done === true) return;
        const file = next.value;
        const content = Buffer.from(file.csv, 'utf8');
        if (landing !== undefined) {
          const path = join(landing, file.path);
          if (dirname(path) !== folder) {
            folder = dirname(path);
            mkdirSync(folder, { recursive: true });
          }
          writeFileSync(path, content);
        }
        renderMs += performance.now() - r0;
        lines += file.lines;
        bytes += content.length;
        files += 1;
        if (files % 2000 === 0) context.progress(`published ${files} files`);
        yield { path: file.path, bytes: content };
      }
    }
    const summary = await publisher.publishFiles(files_());
    if (summary.failed.length > 0) throw summary.failed[0]!.error;
    const publishMs = performance.now() - t0 - renderMs;
    return {
      messages: summary.messages,
      lines,
      bytes,
      generateMs: Math.round(generateMs + renderMs),
      publishMs: Math.round(publishMs),
      messagesPerSecond: Math.round(summary.messages / (publishMs / 1000)),
      linesPerSecond: Math.round(lines / (publishMs / 1000)),
      cpuMs: cpuMsSince(cpu0),
      peakRssMb: peakRssMb(),
    };
  } finally {
    await nc.drain();
  }
}

export interface PublishJsonArgs extends StreamSpec {
  readonly sim: SimSpec;
  readonly registryPath: string;
  /** How many readings (= messages) to publish. */
  readonly readings: number;
  readonly partitions: number;
}

/**
 * Meters that publish each reading on its own: `{"meter_id","timestamp","value","unit"}` per message, no
 * headers (the stream's time stands in for the receive time), on `<prefix>.<partition of the meter>`.
 * The readings are the simulated fleet's, hour by hour, until the count is reached.
 */
export async function publishJsonTask(args: PublishJsonArgs, context: TaskContext): Promise<PublishFigures> {
  const g0 = performance.now();
  const sim = createSimulation(args.sim);
  mkdirSync(dirname(args.registryPath), { recursive: true });
  writeFileSync(args.registryPath, sim.registryCsv());
  const messages: { subject: string; data: Uint8Array }[] = [];
  let bytes = 0;
  for (const file of sim.hours()) {
    const decoded = decodeReadings(Buffer.from(file.csv), {
      source: file.path,
      receivedAt: landingReceivedAt(file.path) ?? 0,
      contentType: 'text/csv',
    });
    if (!decoded.ok) continue;
    for (const r of decoded.readings) {
      const data = Buffer.from(
        JSON.stringify({ meter_id: r.meterId, timestamp: r.timestamp, value: r.value, unit: r.unit }),
      );
      bytes += data.length;
      messages.push({ subject: `${args.subjectPrefix}.${partitionOf(r.meterId, args.partitions)}`, data });
      if (messages.length === args.readings) break;
    }
    if (messages.length === args.readings) break;
  }
  const generateMs = performance.now() - g0;
  const { nc, js } = await connect(args.natsUrl);
  try {
    await ensureBenchStream(js, args);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let reported = 0;
    await publishAll(js, messages, (n) => {
      if (n - reported >= 250_000) {
        reported = n;
        context.progress(`published ${n} messages`);
      }
    });
    const publishMs = performance.now() - t0;
    return {
      messages: messages.length,
      lines: messages.length,
      bytes,
      generateMs: Math.round(generateMs),
      publishMs: Math.round(publishMs),
      messagesPerSecond: Math.round(messages.length / (publishMs / 1000)),
      linesPerSecond: Math.round(messages.length / (publishMs / 1000)),
      cpuMs: cpuMsSince(cpu0),
      peakRssMb: peakRssMb(),
    };
  } finally {
    await nc.drain();
  }
}

/** Publishes with up to `window` acknowledgements outstanding: awaiting each one caps at ~21 K msgs/s here. */
export async function publishAll(
  js: JetStreamClient,
  messages: readonly { subject: string; data: Uint8Array }[],
  onProgress: (published: number) => void,
  window = 4096,
): Promise<void> {
  for (let i = 0; i < messages.length; i += window) {
    const acks: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(messages.length, i + window); j++) {
      acks.push(js.publish(messages[j]!.subject, messages[j]!.data));
    }
    await Promise.all(acks);
    onProgress(Math.min(messages.length, i + window));
  }
}
