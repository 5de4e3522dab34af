/**
 * Live mode. A publisher process plays meters that each send their reading as it is taken — one JSON
 * reading per message, timestamped with the publish time — at a steady rate, in steps; the pipeline
 * process runs the job live (durable consumer, short checkpoint interval) and notes when each message's
 * reading became visible in ClickHouse, i.e. when the insert carrying it returned (ClickHouse inserts
 * are synchronous: a query issued after that sees the row). Messages are matched by stream sequence,
 * which the reading's `source` (`stream:<name>:<seq>`) carries.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { partitionOf } from '../../connectors/jetstream.js';
import { generateRegistry } from '../../simulator/index.js';
import type { TaskContext } from '../child.js';
import { wallNow } from '../protocol.js';
import { connect, ensureBenchStream, type SimSpec, type StreamSpec } from './common.js';
import { type PipelineArgs, type PipelineFigures, runInstrumentedPipeline } from './pipeline.js';

export interface LiveStep {
  /** Messages (= readings) per second; 0 for the warm-up, one reading of every meter as fast as it goes. */
  readonly rate: number;
  readonly seconds: number;
}

export interface LivePublishArgs extends StreamSpec {
  readonly sim: SimSpec;
  readonly steps: readonly LiveStep[];
  readonly partitions: number;
  /** Pause between steps so one step's backlog does not spill into the next. */
  readonly pauseMs: number;
  /**
   * First send one reading of every meter and wait this long, so the steps run against a fleet the
   * pipeline already holds state for (as a running worker does), not against an empty one. 0: no warm-up.
   */
  readonly warmupPauseMs: number;
}

export interface LivePublishResult {
  /** Per step: the stream sequences and publish times (epoch ms) of its messages, and the rate reached. */
  readonly steps: {
    readonly rate: number;
    readonly achievedRate: number;
    readonly seqs: number[];
    readonly publishedAt: number[];
  }[];
}

export async function livePublishTask(
  args: LivePublishArgs,
  context: TaskContext,
): Promise<LivePublishResult> {
  const meters = generateRegistry(args.sim).map((m) => m.meterId);
  const { nc, js } = await connect(args.natsUrl);
  try {
    await ensureBenchStream(js, args);
    const steps: LivePublishResult['steps'] = [];
    let meterIndex = 0;
    if (args.warmupPauseMs > 0) {
      context.progress(`live: warm-up, one reading of each of ${meters.length} meters`);
      const seqs: number[] = [];
      const publishedAt: number[] = [];
      const start = wallNow();
      for (let i = 0; i < meters.length; i += 4096) {
        const acks: Promise<void>[] = [];
        for (let j = i; j < Math.min(meters.length, i + 4096); j++) {
          acks.push(publishOne(js, args, meters[j]!, seqs, publishedAt));
        }
        await Promise.all(acks);
      }
      steps.push({
        rate: 0,
        achievedRate: Math.round(meters.length / ((wallNow() - start) / 1000)),
        seqs,
        publishedAt,
      });
      await new Promise((resolve) => setTimeout(resolve, args.warmupPauseMs));
    }
    for (const step of args.steps) {
      context.progress(`live: publishing ${step.rate}/s for ${step.seconds} s`);
      const seqs: number[] = [];
      const publishedAt: number[] = [];
      const acks: Promise<void>[] = [];
      const start = wallNow();
      let sent = 0;
      const total = Math.round(step.rate * step.seconds);
      while (sent < total) {
        const due = Math.min(total, Math.floor(((wallNow() - start) / 1000) * step.rate));
        for (; sent < due; sent++) {
          const meter = meters[meterIndex++ % meters.length]!;
          acks.push(publishOne(js, args, meter, seqs, publishedAt));
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await Promise.all(acks);
      const achievedRate = total / ((wallNow() - start) / 1000);
      steps.push({ rate: step.rate, achievedRate: Math.round(achievedRate), seqs, publishedAt });
      await new Promise((resolve) => setTimeout(resolve, args.pauseMs));
    }
    return { steps };
  } finally {
    await nc.drain();
  }
}

async function publishOne(
  js: JetStreamClient,
  args: LivePublishArgs,
  meter: string,
  seqs: number[],
  publishedAt: number[],
): Promise<void> {
  const at = wallNow();
  // A household's load in kW, varying enough that no stuck or low-variance rule trips.
  const kw = (0.3 + ((at / 7) % 4.2)).toFixed(4);
  const data = Buffer.from(
    JSON.stringify({
      meter_id: meter,
      // Whole seconds, as meters send them: a fraction is quarantined (subsecond_timestamp), which left
      // almost no reading visible. Latency is still measured from `at`.
      timestamp: new Date(Math.floor(at / 1000) * 1000).toISOString(),
      value: kw,
      unit: 'kW',
    }),
  );
  const ack = await js.publish(`${args.subjectPrefix}.${partitionOf(meter, args.partitions)}`, data);
  seqs.push(ack.seq);
  publishedAt.push(at);
}

export interface LivePipelineResult {
  readonly figures: PipelineFigures;
  /** Stream sequence and the epoch ms its reading became visible. */
  readonly seqs: number[];
  readonly visibleAt: number[];
}

/** Runs the job live until the parent says stop; reports when each sequence became visible. */
export async function livePipelineTask(
  args: PipelineArgs,
  context: TaskContext,
): Promise<LivePipelineResult> {
  const abort = new AbortController();
  void context.stopped.then(() => abort.abort());
  const seqs: number[] = [];
  const visibleAt: number[] = [];
  const seen = new Set<number>();
  const figures = await runInstrumentedPipeline(args, context, {
    untilIdle: false,
    signal: abort.signal,
    onOpened: () => context.ready(),
    onVisible: (readings, at) => {
      for (const r of readings) {
        // `stream:<name>:<seq>` (a JSON object message has no element suffix).
        const seq = Number(r.source.slice(r.source.lastIndexOf(':') + 1));
        if (Number.isInteger(seq) && !seen.has(seq)) {
          seen.add(seq);
          seqs.push(seq);
          visibleAt.push(at);
        }
      }
    },
  });
  return { figures, seqs, visibleAt };
}
