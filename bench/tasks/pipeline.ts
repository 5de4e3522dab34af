/**
 * The meter-quality job as it runs in production (`runMeterQualityJob`: JetStream durable consumer →
 * graph → ClickHouse + Parquet lake, checkpoints and acks), instrumented from outside: the source and
 * the checkpoint store are wrapped, the graph's stage clock is switched on through the job observer.
 */

import { appendFileSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { tuneHeapForStreaming } from '../../cli/heap.js';
import { sql } from '../../codecs/sql.js';
import type { HotStore } from '../../connectors/clickhouse.js';
import {
  type AckResult,
  CheckpointKv,
  type FetchedBatch,
  JetStreamSource,
  type ReadingsMessageSource,
} from '../../connectors/jetstream.js';
import type { ParquetLake } from '../../connectors/parquet-lake.js';
import type { PipelineGraph, SnapshotState } from '../../core/index.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { kvCheckpointStore, memoryCheckpointStore } from '../../pipelines/checkpoints.js';
import { type JobObserver, runMeterQualityJob } from '../../pipelines/job.js';
import type { Checkpoint, CheckpointStore, ReadingSource, StagedCheckpoint } from '../../pipelines/runner.js';
import { messageReadingSource } from '../../pipelines/sources.js';
import { threadedMessageSource } from '../../pipelines/threaded-message-source.js';
import type { TaskContext } from '../child.js';
import { cpuMsSince, type HotSpec, peakRssMb, round } from '../protocol.js';
import { connect, ensureBenchStream, hotTarget, type StreamSpec } from './common.js';

export interface PipelineArgs extends StreamSpec {
  readonly hot: HotSpec;
  /** ClickHouse database; one per part so parts never see each other's rows. */
  readonly database: string;
  readonly workDir: string;
  readonly registryPath: string;
  /** Messages per pull. */
  readonly batchSize: number;
  readonly maxAckPending: number;
  /** The job's write and checkpoint cadence (`RunOptions`); the job's defaults when left out. */
  readonly flushRows?: number;
  readonly flushIntervalMs?: number;
  readonly checkpointIntervalMs?: number;
  /** Lake rows buffered before a file set is written (`JobConfig.coldRows`). */
  readonly coldRows?: number;
  readonly lake: boolean;
  /** Switch on the graph's per-stage clock. */
  readonly stageTiming: boolean;
  /** Rule-profile overrides (the live mode's out-of-orderness). */
  readonly profile?: unknown;
  /** Where checkpoints go: the NATS KV bucket, as `greenstream run` on NATS keeps them (default), or memory. */
  readonly checkpoints?: 'kv' | 'memory';
  /** Run a full GC after each checkpoint to see the heap the run retains (slows the run: memory part only). */
  readonly measureRetainedHeap?: boolean;
  /**
   * Pull, hold and acknowledge the messages on a thread of their own (`threadedMessageSource`). The pulls
   * are then not seen from here: `fetchMs` is 0 and `decodeMs` is all of `source.next()`, waiting for
   * the thread included; `messages` counts the readings and dead letters.
   */
  readonly fetchThread?: boolean;
}

/**
 * Where the wall time goes. The first group runs one after the other on the job's loop and adds up to
 * `processingMs` with `otherMs`; writes of outputs (with their acks and lag probes) and checkpoint saves
 * run alongside the graph, so `sinkWriteMs`, `checkpointSaveMs`, `ackMs` and `lagProbeMs` overlap the
 * rest and are not part of the sum. The JS side of a write (encoding rows) runs on the same thread
 * between the loop's steps and shows up inside them, mostly in `fetchMs`.
 */
export interface StageBreakdown {
  /**
   * `source.next()` waiting for and receiving messages: for a pull the source started ahead (while the
   * graph worked on the previous batch), only what was left of it when `next()` began.
   */
  readonly fetchMs: number;
  /** Payload decoding and source bookkeeping: `source.next()` minus the fetch. */
  readonly decodeMs: number;
  /** The graph: every stage's own time plus routing between them. */
  readonly graphMs: number;
  /** The loop waiting for the previous write (or checkpoint save) to land before starting the next. */
  readonly writeWaitMs: number;
  /** State serialization at checkpoints, in slices between batches. */
  readonly snapshotMs: number;
  /** Wall time none of the above accounts for (the event loop, GC outside them). */
  readonly otherMs: number;
  /** Saving checkpoints (chunked into the KV bucket; concurrent). */
  readonly checkpointSaveMs: number;
  /** Every pull from start to end, those started ahead included (concurrent). */
  readonly pullMs: number;
  /** Deliveries lost in transit, read again after the source reopened (a starved client). */
  readonly lostDeliveries: number;
  /** `sinks.write`: ClickHouse insert and Parquet files, concurrently with each other and the graph. */
  readonly sinkWriteMs: number;
  /** Acknowledging messages after each write (concurrent). */
  readonly ackMs: number;
  /** Consumer-lag probes (one per write, for the backlog alert; concurrent). */
  readonly lagProbeMs: number;
  /** The size of the last checkpoint's state, MB of JSON. */
  readonly stateMb: number;
  /** Own time of each graph stage, ms, largest first. */
  readonly stages: Record<string, number>;
}

export interface PipelineFigures {
  readonly recordsIn: number;
  readonly readingsStored: number;
  readonly quarantined: number;
  readonly deadLettered: number;
  readonly messages: number;
  readonly checkpoints: number;
  /** Rows in the hot store's readings table afterwards (a check that they arrived). */
  readonly hotReadingsRows: number;
  /** From opening the stores to the end, including the final idle pull that proves the stream drained. */
  readonly wallMs: number;
  /** `wallMs` without the store setup and the final idle pull: the figure readings/s is computed from. */
  readonly processingMs: number;
  readonly setupMs: number;
  readonly readingsPerSecond: number;
  readonly cpuMs: number;
  readonly peakRssMb: number;
  /** RSS sampled every second, MB. */
  readonly rssTimelineMb: number[];
  /** Largest JS heap in use seen by the sampler, MB (RSS also holds chDB, DuckDB and free heap pages). */
  readonly peakHeapUsedMb: number;
  /**
   * JS heap still in use after a full GC at a checkpoint (state, registry, caches; the outputs have just
   * been written), the largest over the run, MB; -1 when not measured.
   */
  readonly retainedHeapMb: number;
  /** Who holds the memory, sampled with RSS when `GS_BENCH_MEMORY_PROBE=1` (costs a query a second). */
  readonly memoryProbe?: MemoryProbeFigures;
  readonly breakdown: StageBreakdown;
}

/** One sample of the process's memory by holder, MB. */
export interface MemorySample {
  readonly rss: number;
  readonly rssAnon: number;
  readonly rssFile: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** chDB's own tracker (`system.metrics` MemoryTracking), -1 when not read. */
  readonly chdbTracked: number;
  /** DuckDB's buffer manager (`duckdb_memory()`), -1 when not read. */
  readonly duckdbUsed: number;
}

export interface MemoryProbeFigures {
  /** The sample with the largest RSS. */
  readonly atPeak: MemorySample;
  /** The largest value of each holder over the run. */
  readonly peaks: MemorySample;
  readonly samples: number;
  /** What chDB and DuckDB report as their limits. */
  readonly limits: Record<string, string>;
  /**
   * Every sample as [seconds, rss, heapUsed, arrayBuffers, heapTotal, duckdbUsed, chdbTracked] MB (the
   * engines' as last read, up to a second old), and the seconds of each checkpoint.
   */
  readonly timeline: readonly (readonly number[])[];
  readonly checkpointsAtS: readonly number[];
  /** The seconds at which each checkpoint's state was captured (its serialization finished, before the save). */
  readonly capturedAtS: readonly number[];
  /** The heap snapshot `GS_BENCH_HEAP_SNAPSHOT_MB` asked for: its file and the sample it was taken at. */
  readonly heapSnapshot?: { readonly file: string; readonly at: readonly number[] };
}

/** What the live mode adds: a look at each checkpoint's batch as its sink write completes. */
export interface PipelineHooks {
  readonly signal?: AbortSignal;
  readonly untilIdle?: boolean;
  readonly onVisible?: (readings: readonly { readonly source: string }[], at: number) => void;
  readonly onOpened?: () => void;
}

export async function pipelineTask(args: PipelineArgs, context: TaskContext): Promise<PipelineFigures> {
  const figures = await runInstrumentedPipeline(args, context, {});
  await rm(args.workDir, { recursive: true, force: true });
  return figures;
}

export async function runInstrumentedPipeline(
  args: PipelineArgs,
  context: TaskContext,
  hooks: PipelineHooks,
): Promise<PipelineFigures> {
  // The heap settings `greenstream run` starts with.
  tuneHeapForStreaming();
  const { nc, js } = await connect(args.natsUrl);
  // A pull's start and end: `next()` is charged only the part of it that it waited for.
  const pulls: { start: number; end: number | undefined; empty: boolean }[] = [];
  let pullMs = 0;
  let fetchMs = 0;
  let lastEmptyFetchMs = 0;
  let nextMs = 0;
  let ackMs = 0;
  let lagMs = 0;
  let messagesFetched = 0;
  let sinkWriteMs = 0;
  let snapshotMs = 0;
  let writeWaitMs = 0;
  let stateChars = 0;
  let writeEnded = 0;
  let checkpoints = 0;
  let graph: PipelineGraph | undefined;
  let openedAt = 0;
  let stoppedAt = 0;
  let pending: { readings: readonly { source: string }[] } | undefined;
  let retainedHeap = -1;
  let probeStores: { hot: HotStore; lake: ParquetLake | undefined } | undefined;

  await ensureBenchStream(js, args);
  // As production opens it: the durable recreated right after the position, also when the source
  // reopens after deliveries lost in transit (a loaded machine starves the client of its heartbeats).
  const openDurable = async (resumeAfterSeq: number): Promise<JetStreamSource> => {
    if (resumeAfterSeq > 0)
      await (await js.jetstreamManager()).consumers.delete(args.stream, 'bench_pipeline');
    return JetStreamSource.open(js, {
      stream: args.stream,
      durable: 'bench_pipeline',
      maxAckPending: args.maxAckPending,
      ackWaitMs: 600_000,
      start: resumeAfterSeq === 0 ? { kind: 'all' } : { kind: 'sequence', seq: resumeAfterSeq + 1 },
    });
  };
  let messages = await openDurable(0);
  let lostDeliveries = 0;
  const timedMessages: ReadingsMessageSource = {
    fetchBatch: async (max, expiresMs): Promise<FetchedBatch> => {
      const timing = { start: performance.now(), end: undefined as number | undefined, empty: false };
      pulls.push(timing);
      const fetched = await messages.fetchBatch(max, expiresMs);
      timing.end = performance.now();
      timing.empty = fetched.messages.length === 0;
      pullMs += timing.end - timing.start;
      messagesFetched += fetched.messages.length;
      return fetched;
    },
    ack: async (list): Promise<AckResult> => {
      const t = performance.now();
      const result = await messages.ack(list);
      ackMs += performance.now() - t;
      return result;
    },
    deadLetter: (m, reason) => messages.deadLetter(m, reason),
    pending: async () => {
      const t = performance.now();
      const lag = await messages.pending();
      lagMs += performance.now() - t;
      return lag;
    },
    close: () => messages.close(),
  };
  let opened = false;
  const onDeliveriesLost = (count: number): void => {
    lostDeliveries += count;
  };
  const inner =
    args.fetchThread === true
      ? threadedMessageSource({
          nats: { servers: args.natsUrl },
          consumer: {
            kind: 'durable',
            stream: args.stream,
            durable: 'bench_pipeline',
            maxAckPending: args.maxAckPending,
            ackWaitMs: 600_000,
          },
          batchSize: args.batchSize,
          expiresMs: 1000,
          now: Date.now,
          onDeliveriesLost,
        })
      : messageReadingSource(
          async (resumeAfterSeq) => {
            if (opened) messages = await openDurable(resumeAfterSeq);
            opened = true;
            return timedMessages;
          },
          { batchSize: args.batchSize, expiresMs: 1000, now: Date.now, onDeliveriesLost },
        );
  const source: ReadingSource = {
    name: inner.name,
    open: (p) => inner.open(p),
    next: async () => {
      const t = performance.now();
      const batch = await inner.next();
      nextMs += performance.now() - t;
      if (args.fetchThread === true && typeof batch !== 'string')
        messagesFetched += batch.records.length + batch.deadLettered;
      // The pulls that ended by now were waited for from `t` (or from their start, if later).
      for (let i = 0; i < pulls.length; ) {
        const pull = pulls[i]!;
        if (pull.end === undefined) {
          i++;
          continue;
        }
        const waited = Math.max(0, pull.end - Math.max(pull.start, t));
        fetchMs += waited;
        lastEmptyFetchMs = pull.empty ? waited : 0;
        pulls.splice(i, 1);
      }
      return batch;
    },
    position: () => inner.position(),
    commit: async () => {
      if (args.fetchThread !== true) return inner.commit();
      const t = performance.now();
      await inner.commit();
      ackMs += performance.now() - t;
    },
    resumesFromPosition: inner.resumesFromPosition === true,
    pending: async () => {
      if (args.fetchThread !== true) return inner.pending!();
      const t = performance.now();
      const lag = await inner.pending!();
      lagMs += performance.now() - t;
      return lag;
    },
    close: () => inner.close(),
  };
  const kept: CheckpointStore =
    args.checkpoints === 'memory'
      ? memoryCheckpointStore()
      : kvCheckpointStore(await CheckpointKv.open(js, { bucket: `${args.stream}_checkpoints` }), 'bench');
  let saveMs = 0;
  const checkpointsStore: CheckpointStore = {
    ...(kept.chains === true ? { chains: true } : {}),
    load: () => kept.load(),
    save: async (cp: Checkpoint) => {
      const t = performance.now();
      await kept.save(cp);
      saveMs += performance.now() - t;
    },
    // Passed on as the job's own wrappers do: the chunks stored while the seal runs, then the commit.
    ...(kept.stage === undefined
      ? {}
      : {
          stage: async (seq: number, state: SnapshotState): Promise<StagedCheckpoint> => {
            const t = performance.now();
            const staged = await kept.stage!(seq, state);
            saveMs += performance.now() - t;
            return {
              commit: async (cp) => {
                const c = performance.now();
                await staged.commit(cp);
                saveMs += performance.now() - c;
              },
            };
          },
        }),
  };
  const observer: JobObserver = {
    graph: (g) => {
      graph = g;
      if (args.stageTiming) g.enableTiming();
    },
    opened: () => {
      openedAt = performance.now();
      hooks.onOpened?.();
    },
    alertsFor: (batch) => {
      pending = batch;
      return [];
    },
    sinkWrite: (seconds) => {
      sinkWriteMs += seconds * 1000;
      writeEnded = performance.now();
      if (pending !== undefined) hooks.onVisible?.(pending.readings, performance.timeOrigin + writeEnded);
      pending = undefined;
    },
    writeWaited: (seconds) => {
      writeWaitMs += seconds * 1000;
    },
    snapshotted: (seconds, length) => {
      probe?.mark('captured');
      snapshotMs += seconds * 1000;
      stateChars = length;
    },
    checkpointed: (cp) => {
      checkpoints += 1;
      probe?.mark('checkpoint');
      if (args.measureRetainedHeap === true && globalThis.gc !== undefined) {
        globalThis.gc();
        retainedHeap = Math.max(retainedHeap, process.memoryUsage().heapUsed);
      }
      if (cp.seq % 10 === 0) context.progress(`checkpoint ${cp.seq}: ${cp.totals.recordsIn} records`);
    },
    stopped: () => {
      stoppedAt = performance.now();
    },
    stores: (hot, lake) => {
      probeStores = { hot, lake };
    },
  };
  const rssTimeline: number[] = [];
  let peakHeapUsed = 0;
  const probe =
    process.env.GS_BENCH_MEMORY_PROBE === '1'
      ? memoryProbe(() => probeStores, Number(process.env.GS_BENCH_HEAP_SNAPSHOT_MB ?? 0) || 0, tmpdir())
      : undefined;
  // `GS_BENCH_MEMORY_PROBE_MS`: the probe samples this often instead of with the RSS timeline.
  const probeEvery = Number(process.env.GS_BENCH_MEMORY_PROBE_MS ?? 0) || undefined;
  const sampler = setInterval(() => {
    const usage = process.memoryUsage();
    rssTimeline.push(Math.round(usage.rss / 1048576));
    peakHeapUsed = Math.max(peakHeapUsed, usage.heapUsed);
    if (probeEvery === undefined) probe?.sample();
  }, 1000);
  const probeSampler =
    probe === undefined || probeEvery === undefined
      ? undefined
      : setInterval(() => probe.sample(), probeEvery);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { totals, hot, lake } = await runMeterQualityJob({
    source: { kind: 'custom', source, checkpoints: checkpointsStore },
    registryPath: args.registryPath,
    hot: hotTarget(args.hot, join(args.workDir, 'chdb'), args.database),
    ...(args.lake ? { coldDir: join(args.workDir, 'lake') } : {}),
    checkpointPath: join(args.workDir, 'checkpoint.json'),
    untilIdle: hooks.untilIdle ?? true,
    replay: false,
    profile: resolveRuleProfile(args.profile ?? {}),
    workerId: 'bench',
    ...(args.flushRows === undefined ? {} : { flushRows: args.flushRows }),
    ...(args.flushIntervalMs === undefined ? {} : { flushIntervalMs: args.flushIntervalMs }),
    ...(args.checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs: args.checkpointIntervalMs }),
    ...(args.coldRows === undefined ? {} : { coldRows: args.coldRows }),
    observer,
    ...(hooks.signal === undefined ? {} : { signal: hooks.signal }),
  });
  const wallMs = performance.now() - t0;
  const cpuMs = cpuMsSince(cpu0);
  clearInterval(sampler);
  clearInterval(probeSampler);
  let hotReadingsRows = -1;
  const probed = await probe?.finish();
  try {
    const rows = await hot.query<{ n: string | number }>(
      sql`SELECT count() AS n FROM ${hot.relation('readings')}`,
    );
    hotReadingsRows = Number(rows[0]?.n ?? -1);
  } finally {
    await lake?.close();
    await hot.close();
    await nc.drain();
  }
  const stages = graph?.stageTimes() ?? {};
  const graphMs = Object.values(stages).reduce((a, b) => a + b, 0);
  const processingMs = stoppedAt - openedAt - lastEmptyFetchMs;
  const decodeMs = nextMs - fetchMs;
  const accounted = fetchMs - lastEmptyFetchMs + decodeMs + graphMs + writeWaitMs + snapshotMs;
  return {
    recordsIn: totals.recordsIn,
    readingsStored: totals.measured,
    quarantined: totals.quarantined,
    deadLettered: totals.deadLettered,
    messages: messagesFetched,
    checkpoints,
    hotReadingsRows,
    wallMs: Math.round(wallMs),
    processingMs: Math.round(processingMs),
    setupMs: Math.round(openedAt - t0),
    readingsPerSecond: Math.round(totals.recordsIn / (processingMs / 1000)),
    cpuMs,
    peakRssMb: peakRssMb(),
    rssTimelineMb: rssTimeline,
    peakHeapUsedMb: Math.round(peakHeapUsed / 1048576),
    retainedHeapMb: retainedHeap < 0 ? -1 : Math.round(retainedHeap / 1048576),
    ...(probed === undefined ? {} : { memoryProbe: probed }),
    breakdown: {
      fetchMs: Math.round(fetchMs - lastEmptyFetchMs),
      decodeMs: Math.round(decodeMs),
      graphMs: Math.round(graphMs),
      writeWaitMs: Math.round(writeWaitMs),
      snapshotMs: Math.round(snapshotMs),
      otherMs: Math.round(processingMs - accounted),
      checkpointSaveMs: Math.round(saveMs),
      pullMs: Math.round(pullMs),
      lostDeliveries,
      sinkWriteMs: Math.round(sinkWriteMs),
      ackMs: Math.round(ackMs),
      lagProbeMs: Math.round(lagMs),
      stateMb: round(stateChars / 1048576),
      stages: Object.fromEntries(
        Object.entries(stages)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => [k, round(v)]),
      ),
    },
  };
}

/**
 * Samples RSS by holder: V8 (heap, external), chDB's tracker, DuckDB's buffer manager, anon/file pages.
 * With `heapSnapshotAtMb` > 0, writes one V8 heap snapshot into `dir` at the first sample whose array
 * buffers reach that many MB (what holds them: the snapshot's `system / JSArrayBufferData` nodes and their
 * retainers). Writing it stops the loop for many seconds and doubles the heap: a probe, not a bench run.
 */
function memoryProbe(
  stores: () => { hot: HotStore; lake: ParquetLake | undefined } | undefined,
  heapSnapshotAtMb = 0,
  dir = '.',
): {
  sample(): void;
  mark(event: 'checkpoint' | 'captured'): void;
  finish(): Promise<MemoryProbeFigures | undefined>;
} {
  const start = performance.now();
  const seconds = (): number => Math.round((performance.now() - start) / 100) / 10;
  const timeline: number[][] = [];
  const checkpointsAtS: number[] = [];
  const capturedAtS: number[] = [];
  const mb = (bytes: number): number => Math.round(bytes / 1048576);
  let chdbTracked = -1;
  let duckdbUsed = -1;
  let reading: Promise<void> | undefined;
  let atPeak: MemorySample | undefined;
  let peaks: MemorySample | undefined;
  let samples = 0;
  let heapSnapshot: { file: string; at: number[] } | undefined;
  const limits: Record<string, string> = {};
  const log = process.env.GS_BENCH_MEMORY_PROBE_LOG || undefined;
  const readEngines = async (): Promise<void> => {
    const s = stores();
    if (s === undefined) return;
    const [rows, lake] = await Promise.all([
      s.hot.query<{ metric: string; value: string }>(
        sql`SELECT metric, toString(value) AS value FROM system.metrics WHERE metric = 'MemoryTracking'`,
      ),
      s.lake?.memory(),
    ]);
    chdbTracked = mb(Number(rows[0]?.value ?? -1));
    if (lake !== undefined) {
      duckdbUsed = mb(lake.usedBytes);
      limits.duckdbMemoryLimit = lake.memoryLimit;
      limits.duckdbThreads = String(lake.threads);
      limits.duckdbAllocatorBackgroundThreads = String(lake.allocatorBackgroundThreads);
    }
  };
  return {
    sample() {
      const usage = process.memoryUsage();
      const status = readFileSync('/proc/self/status', 'utf8');
      const kb = (name: string): number =>
        Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
      const now: MemorySample = {
        rss: mb(usage.rss),
        rssAnon: mb(kb('RssAnon')),
        rssFile: mb(kb('RssFile')),
        heapTotal: mb(usage.heapTotal),
        heapUsed: mb(usage.heapUsed),
        external: mb(usage.external),
        arrayBuffers: mb(usage.arrayBuffers),
        chdbTracked,
        duckdbUsed,
      };
      samples += 1;
      timeline.push([
        seconds(),
        now.rss,
        now.heapUsed,
        now.arrayBuffers,
        now.heapTotal,
        duckdbUsed,
        chdbTracked,
      ]);
      // `GS_BENCH_MEMORY_PROBE_LOG=<file>`: every sample as a line with the wall clock, to line up with
      // samples taken beside the loop (`bench/mem-owners.c`, which has the wall clock too).
      if (log !== undefined)
        appendFileSync(
          log,
          `${JSON.stringify([Date.now(), now.rss, now.heapTotal, now.heapUsed, now.external, now.arrayBuffers, duckdbUsed, chdbTracked])}\n`,
        );
      if (atPeak === undefined || now.rss > atPeak.rss) atPeak = now;
      if (heapSnapshotAtMb > 0 && heapSnapshot === undefined && now.arrayBuffers >= heapSnapshotAtMb)
        heapSnapshot = {
          at: timeline.at(-1)!.slice(),
          file: writeHeapSnapshot(join(dir, `peak-${process.pid}.heapsnapshot`)),
        };
      peaks =
        peaks === undefined
          ? now
          : (Object.fromEntries(
              Object.entries(now).map(([k, v]) => [k, Math.max(v, peaks![k as keyof MemorySample])]),
            ) as unknown as MemorySample);
      reading ??= readEngines()
        .catch(() => undefined)
        .finally(() => {
          reading = undefined;
        });
    },
    mark(event) {
      (event === 'checkpoint' ? checkpointsAtS : capturedAtS).push(seconds());
    },
    async finish() {
      await reading;
      const s = stores();
      if (s !== undefined) {
        const rows = await s.hot.query<{ name: string; value: string }>(
          sql`SELECT name, value FROM system.settings WHERE name IN ('max_memory_usage', 'max_threads', 'max_insert_threads')`,
        );
        for (const r of rows) limits[`chdb.${r.name}`] = r.value;
      }
      return atPeak === undefined || peaks === undefined
        ? undefined
        : {
            atPeak,
            peaks,
            samples,
            limits,
            timeline,
            checkpointsAtS,
            capturedAtS,
            ...(heapSnapshot === undefined ? {} : { heapSnapshot }),
          };
    },
  };
}
