/**
 * The meter-quality job on N graph threads of one process (`run --threads N`): the main thread owns the
 * stores (chDB binds its folder to one process and is not known to be safe from several threads; the lake
 * is one DuckDB), every thread's checkpoints, and the cross-meter stages; each thread runs the per-meter
 * graph over its own partitions and hands its outputs, hourly aggregates and hourly watermark here.
 *
 * Exactness after a crash: the cross-meter state is checkpointed under the worker's own key, each thread's
 * under `<worker>-t<i>`. A thread's checkpoint is saved only after a cross-meter checkpoint that holds every
 * hourly row the thread sent before it, so whatever a restarted thread sends again is either held already
 * (replaced by its identity) or of an hour already released (dropped), as between processes over the
 * repartition stream, and nothing it will not send again is missing.
 */
import type { Worker } from 'node:worker_threads';
import { BehaviorSubject } from 'rxjs';
import {
  type HotStore,
  type HotStoreOptions,
  type HotStoreTarget,
  openHotStore,
} from '../connectors/clickhouse.js';
import type { Lease } from '../connectors/lease.js';
import { openParquetLake, type ParquetLake } from '../connectors/parquet-lake.js';
import { ConfigurationError, type Json, SideInput, StateStore, type UpstreamRecord } from '../core/index.js';
import type { MeterRegistry } from '../operators/outputs.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type { Alert, HourlyConsumption } from '../schemas/reading.js';
import type { Source } from './contracts.js';
import { EpochCoordinator } from './epoch-coordinator.js';
import type { StoredExclusionInputs } from './exclusion-inputs.js';
import { fencedCheckpoints, fencedSinks } from './fencing.js';
import { exclusionInputsFor, JOB_DEFAULTS, type JobObserver, type JobResult, loadRegistry } from './job.js';
import { type EngineMemory, engineMemory } from './memory-budget.js';
import { METER_QUALITY_RESTORES_STATE_FORMATS, METER_QUALITY_STATE_FORMAT } from './meter-quality.js';
import { emptyTotals, type OutputBatch, type RunTotals } from './meter-quality-outputs.js';
import { formatPartitionSet } from './partition-set.js';
import {
  CROSS_METER_STATE_FORMAT,
  type CrossMeterPull,
  crossMeterEpochGraph,
  crossMeterGraph,
} from './repartition.js';
import type { Checkpoint, CheckpointStore, PipelineSinks } from './runner.js';
import { DEFAULT_COLD_ROWS, storeSinks } from './sinks.js';
import { type IdentifiedCheckpoint, identifiedCheckpoints, sinkIdentity } from './store-identity.js';
import {
  deserializeError,
  type MainMessage,
  serializeError,
  type ThreadMessage,
  type ThreadRequest,
} from './thread-protocol.js';

/** One graph thread: its index, its id (checkpoint key, consumers, lake files) and its partitions. */
export interface ThreadPlan {
  readonly index: number;
  readonly id: string;
  readonly partitions: readonly number[];
}

/**
 * `threads` disjoint, contiguous partition sets covering `partitions` (sizes differing by at most one), one
 * per thread, named `<worker>-t<i>`: a `-` is in no worker id, so no other worker's keys can be the same.
 */
export function threadPlans(workerId: string, partitions: readonly number[], threads: number): ThreadPlan[] {
  const sorted = [...new Set(partitions)].sort((a, b) => a - b);
  if (!(Number.isInteger(threads) && threads >= 1 && threads <= sorted.length))
    throw new RangeError(`${threads} threads cannot split ${sorted.length} partitions`);
  const plans: ThreadPlan[] = [];
  let from = 0;
  for (let i = 0; i < threads; i++) {
    const size = Math.floor(sorted.length / threads) + (i < sorted.length % threads ? 1 : 0);
    plans.push({ index: i, id: threadId(workerId, i), partitions: sorted.slice(from, from + size) });
    from += size;
  }
  return plans;
}

export function threadId(workerId: string, index: number): string {
  return `${workerId}-t${index}`;
}

export interface ThreadedJobConfig {
  readonly threads: readonly ThreadPlan[];
  /** Starts the graph thread of a plan (the command line gives it its settings). */
  readonly spawn: (plan: ThreadPlan) => Worker;
  /** The checkpoint store under a key (the cross-meter state: the worker id; a thread: its id). */
  readonly checkpointsOf: (key: string) => CheckpointStore;
  /** Names a key's checkpoint in messages. */
  readonly checkpointName: (key: string) => string;
  readonly registryPath: string;
  readonly hot: HotStoreTarget;
  readonly hotOptions?: HotStoreOptions;
  readonly coldDir?: string;
  readonly coldRows?: number;
  /** The worker id's lease: every write and checkpoint save, of any thread, is guarded by it. */
  readonly lease: Lease;
  readonly profile: RuleProfile;
  readonly workerId: string;
  readonly untilIdle: boolean;
  readonly resetCheckpoint?: boolean;
  readonly onCheckpointReset?: (checkpoint: IdentifiedCheckpoint, key: string) => void;
  readonly flushIntervalMs?: number;
  readonly checkpointIntervalMs?: number;
  readonly checkpointEveryFlushes?: number;
  readonly signal?: AbortSignal;
  /** A checkpoint saved: a thread's (`key` its id) or the cross-meter state's (`key` the worker id). */
  readonly onCheckpoint?: (checkpoint: Checkpoint, key: string) => void;
  readonly publishAlerts?: (alerts: readonly Alert[]) => Promise<void>;
  /** The main thread's metrics: opened, every thread's writes, the cross-meter graph. */
  readonly observer?: JobObserver;
  readonly onExclusionInputError?: (table: string, error: unknown) => void;
  /** How long stopping threads and the cross-meter stage may take after a failure (default 10 s). */
  readonly failureGraceMs?: number;
  /** What chDB and DuckDB may use (one of each, in this thread); default `engineMemory()`. */
  readonly memory?: EngineMemory;
}

/** Runs the threads and the cross-meter stage until every thread ended (or a failure, or the signal). */
export async function runThreadedJob(config: ThreadedJobConfig): Promise<JobResult> {
  const registrySubject = new BehaviorSubject<MeterRegistry>(await loadRegistry(config.registryPath));
  const memory = config.memory ?? engineMemory();
  const hot: HotStore = openHotStore(config.hot, {
    embeddedMemoryBytes: memory.chdbBytes,
    ...config.hotOptions,
  });
  let lake: ParquetLake | undefined;
  let exclusions: StoredExclusionInputs | undefined;
  try {
    await hot.migrate();
    await hot.insert('meters', [...registrySubject.value.values()]);
    exclusions = await exclusionInputsFor(config.profile, true, hot, config.onExclusionInputError);
    lake =
      config.coldDir === undefined
        ? undefined
        : await openParquetLake({ dir: config.coldDir, memoryLimitBytes: memory.duckdbBytes });
    const runSinks = await sinkIdentity(config.hot, hot, lake);
    const { lease } = config;
    const openedLake = lake;
    const sinksOf = (id: string, sourceName: string): PipelineSinks =>
      fencedSinks(
        storeSinks({
          hot,
          ...(openedLake === undefined ? {} : { lake: openedLake }),
          sourceName,
          workerId: id,
          coldRows: config.coldRows ?? DEFAULT_COLD_ROWS,
          now: Date.now,
          ...(config.publishAlerts === undefined ? {} : { publishAlerts: config.publishAlerts }),
        }),
        lease,
      );
    const checkpointsOf = (key: string): CheckpointStore => {
      const identified = identifiedCheckpoints(config.checkpointsOf(key), runSinks, {
        name: config.checkpointName(key),
        ...(config.resetCheckpoint === undefined ? {} : { reset: config.resetCheckpoint }),
        onReset: (cp) => config.onCheckpointReset?.(cp, key),
      });
      const fenced = fencedCheckpoints(identified, lease);
      return {
        load: () => fenced.load(),
        save: async (cp) => {
          await fenced.save(cp);
          config.onCheckpoint?.(cp, key);
        },
      };
    };

    const partitions = config.threads.flatMap((t) => t.partitions);
    const store = new StateStore();
    const { graph, connect } = crossMeterGraph({
      profile: config.profile,
      registry: new SideInput<MeterRegistry>('registry', registrySubject),
      store,
      partitions,
      ...(exclusions === undefined ? {} : { exclusions: exclusions.inputs }),
    });
    config.observer?.graph?.(graph);
    const cross = new ThreadedCrossSource(config.flushIntervalMs ?? JOB_DEFAULTS.flushIntervalMs);
    const crossStop = new AbortController();
    const observer = config.observer;
    const crossRun = new EpochCoordinator<CrossMeterPull, OutputBatch, RunTotals>({
      source: cross,
      sinks: sinksOf(config.workerId, `threads ${formatPartitionSet(partitions)}`),
      checkpoints: refusingSingleThread(
        checkpointsOf(config.workerId),
        config.checkpointName(config.workerId),
      ),
      store,
      graph: crossMeterEpochGraph(connect),
      stateFormat: CROSS_METER_STATE_FORMAT,
      untilIdle: config.untilIdle,
      flushRows: JOB_DEFAULTS.flushRows,
      flushIntervalMs: config.flushIntervalMs ?? JOB_DEFAULTS.flushIntervalMs,
      checkpointIntervalMs: config.checkpointIntervalMs ?? JOB_DEFAULTS.checkpointIntervalMs,
      // Saved at least as often as the threads', which wait for it anyway.
      ...(config.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: config.checkpointEveryFlushes }),
      idlePollMs: 500,
      now: Date.now,
      signal: crossStop.signal,
      observer: {
        ...(observer?.opened === undefined ? {} : { opened: () => observer.opened?.() }),
        ...(observer?.sinkWrite === undefined ? {} : { sinkWrite: (s, ok) => observer.sinkWrite?.(s, ok) }),
        ...(observer?.flushed === undefined ? {} : { flushed: (b) => observer.flushed?.(b) }),
      },
    }).run();

    let failure: Error | undefined;
    const threads = config.threads.map((plan) => new GraphThread(plan, config.spawn(plan)));
    const fail = (error: Error) => {
      if (failure !== undefined) return;
      failure = error;
      cross.fail(error);
      for (const t of threads) t.terminate();
      crossStop.abort();
    };
    const onAbort = () => {
      for (const t of threads) t.stop();
    };
    if (config.signal?.aborted === true) onAbort();
    config.signal?.addEventListener('abort', onAbort, { once: true });
    crossRun.catch((error: unknown) => fail(asError(error)));
    for (const t of threads) {
      t.checkpoints = checkpointsOf(t.plan.id);
      t.serve({
        load: async (sourceName) => {
          t.sinks = sinksOf(t.plan.id, sourceName);
          return (await t.checkpoints.load()) ?? null;
        },
        rollback: (committed) => t.sinksOrThrow().rollback(committed),
        write: async (batch) => {
          const started = performance.now();
          try {
            await t.sinksOrThrow().write(batch);
          } catch (error) {
            observer?.sinkWrite?.((performance.now() - started) / 1000, false);
            throw error;
          }
          observer?.sinkWrite?.((performance.now() - started) / 1000, true);
          observer?.flushed?.(batch);
          cross.push(t.plan, batch.hourly, batch.hourlyWatermark);
        },
        seal: (checkpoint) => t.sinksOrThrow().seal?.(checkpoint) ?? Promise.resolve(),
        save: async (checkpoint) => {
          await cross.barrier();
          await t.checkpoints.save(checkpoint);
        },
        empty: () => cross.empty(t.plan),
      });
    }
    const ended = threads.map((t) =>
      t.ended.then(
        ({ totals, drained }) => {
          if (drained) cross.ended(t.plan, config.threads);
          return totals;
        },
        (error: unknown) => {
          fail(asError(error));
          throw error;
        },
      ),
    );
    const settled = await Promise.allSettled(ended);
    config.signal?.removeEventListener('abort', onAbort);
    // Every thread ended (its last checkpoint saved, or a failure). Drained, the stage across meters ends
    // with its input (firing what the final watermarks close); stopped, it saves its state as it stands.
    if (!config.untilIdle || failure !== undefined || config.signal?.aborted === true) crossStop.abort();
    const crossTotals = await (failure === undefined
      ? crossRun
      : withTimeout(crossRun, config.failureGraceMs ?? 10_000).catch(() => emptyTotals()));
    if (failure !== undefined) throw failure;
    let totals = crossTotals;
    for (const s of settled) if (s.status === 'fulfilled') totals = sumTotals(totals, s.value);
    return { totals, hot, lake };
  } catch (err) {
    await lake?.close();
    await hot.close();
    throw err;
  } finally {
    exclusions?.close();
  }
}

/** What the main thread does for each request of a thread; `seal` must take its buffers synchronously. */
interface ThreadServices {
  load(sourceName: string): Promise<Checkpoint | null>;
  rollback(committed: number): Promise<void>;
  write(batch: OutputBatch): Promise<void>;
  seal(checkpoint: number): Promise<void>;
  save(checkpoint: Checkpoint): Promise<void>;
  /** The thread caught up without a record: see `ThreadedCrossSource.empty`. */
  empty(): void;
}

/** A thread's end: its totals, and whether its source was drained (a bounded run) or it was stopped. */
interface ThreadEnd {
  readonly totals: RunTotals;
  readonly drained: boolean;
}

/** A graph thread seen from the main thread: its requests served, its end or failure as one promise. */
class GraphThread {
  sinks: PipelineSinks | undefined;
  checkpoints!: CheckpointStore;
  readonly ended: Promise<ThreadEnd>;
  private settle!: { resolve: (t: ThreadEnd) => void; reject: (e: Error) => void };
  private settled = false;

  constructor(
    readonly plan: ThreadPlan,
    private readonly worker: Worker,
  ) {
    this.ended = new Promise<ThreadEnd>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Handled where it is awaited; a failure must not count as unhandled before then.
    this.ended.catch(() => undefined);
    const where = `thread ${plan.index} (${plan.id}, partitions ${formatPartitionSet(plan.partitions)})`;
    worker.on('error', (error) => this.finish(undefined, prefixed(asError(error), where)));
    worker.on('exit', (code) => {
      this.finish(undefined, new Error(`${where} exited with status ${code} before its end`));
    });
    this.where = where;
  }

  private readonly where: string;

  sinksOrThrow(): PipelineSinks {
    if (this.sinks === undefined) throw new Error(`${this.where} wrote before loading its checkpoint`);
    return this.sinks;
  }

  serve(services: ThreadServices): void {
    this.worker.on('message', (message: ThreadMessage) => {
      if (message.type === 'done')
        this.finish({ totals: message.totals, drained: message.drained }, undefined);
      else if (message.type === 'failed') this.finish(undefined, deserializeError(message.error, this.where));
      else if (message.type === 'empty') services.empty();
      else this.answer(message, services);
    });
  }

  /** Starts the request's work at once (in arrival order), and answers when it settles. */
  private answer(request: ThreadRequest, services: ThreadServices): void {
    let work: Promise<unknown>;
    try {
      if (request.type === 'load') work = services.load(request.sourceName);
      else if (request.type === 'rollback') work = services.rollback(request.committed);
      else if (request.type === 'write') work = services.write(request.batch);
      else if (request.type === 'seal') work = services.seal(request.checkpoint);
      else work = services.save(request.checkpoint);
    } catch (error) {
      work = Promise.reject(error);
    }
    work.then(
      (value) => this.post({ type: 'reply', id: request.id, value: value ?? null }),
      (error: unknown) => this.post({ type: 'reply', id: request.id, error: serializeError(error) }),
    );
  }

  private post(message: MainMessage): void {
    if (!this.settled) this.worker.postMessage(message);
  }

  private finish(end: ThreadEnd | undefined, error: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    // Its last message is in (or it failed): nothing of the thread is needed any more.
    void this.worker.terminate();
    if (error === undefined) this.settle.resolve(end!);
    else this.settle.reject(error);
  }

  /** Asks the thread to stop: it saves a last checkpoint and ends. */
  stop(): void {
    this.post({ type: 'stop' });
  }

  /** Ends the thread at once, without a checkpoint (after a failure elsewhere: as if the process died). */
  terminate(): void {
    this.finish(undefined, new Error(`${this.where} stopped after a failure elsewhere`));
  }
}

/**
 * The cross-meter stage's source on the main thread: the threads' hourly rows and watermarks, as they
 * land in the stores. `barrier()` resolves once a cross-meter checkpoint holding everything pushed before
 * it was saved (the pull that takes it asks for a checkpoint at once). Its position is no position: after
 * a crash the threads send again what came after their own checkpoints.
 */
export class ThreadedCrossSource implements Source<CrossMeterPull> {
  readonly name = 'threads';
  private records: UpstreamRecord<HourlyConsumption>[] = [];
  /** Barriers asked for, not yet in a pull. */
  private requested: Deferred[] = [];
  /** Barriers in a pull taken: resolved at the next commit, which follows the next checkpoint's save. */
  private covered: Deferred[] = [];
  private threadsEnded = new Set<number>();
  /** Each thread's latest hourly watermark (by index): kept in the checkpoint for the final one. */
  private lastMarks: Record<string, number> = {};
  private allEnded = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  /** `waitMs`: the longest a pull waits for records (an empty pull lets the coordinator write on time). */
  constructor(private readonly waitMs: number) {}

  push(plan: ThreadPlan, rows: readonly HourlyConsumption[], watermark: number | undefined): void {
    for (const item of rows) this.records.push({ kind: 'element', item });
    if (watermark !== undefined) {
      this.records.push({ kind: 'watermark', partitions: plan.partitions, time: watermark });
      const key = String(plan.index);
      this.lastMarks[key] = Math.max(this.lastMarks[key] ?? Number.NEGATIVE_INFINITY, watermark);
    }
    this.notify();
  }

  /**
   * A live thread caught up without having read a single record: its partitions carry no readings (yet),
   * and hold the stages across meters back no more than a partition without readings holds back the
   * watermark of one graph.
   */
  empty(plan: ThreadPlan): void {
    if (this.lastMarks[String(plan.index)] !== undefined) return;
    this.push(plan, [], Number.MAX_SAFE_INTEGER);
  }

  barrier(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const d = deferred();
    this.requested.push(d);
    this.notify();
    return d.promise;
  }

  /**
   * A thread's bounded run ended (its last rows and watermark pushed). Once every thread's has, each
   * thread's partitions get the latest of the threads' final watermarks, as one graph's final watermark
   * follows the latest reading of all, and the source ends.
   */
  ended(plan: ThreadPlan, plans: readonly ThreadPlan[]): void {
    this.threadsEnded.add(plan.index);
    if (this.threadsEnded.size < plans.length) return;
    const marks = Object.values(this.lastMarks).filter((t) => t < Number.MAX_SAFE_INTEGER);
    if (marks.length > 0) {
      const final = Math.max(...marks);
      for (const p of plans) this.push(p, [], final);
    }
    this.allEnded = true;
    this.notify();
  }

  fail(error: Error): void {
    this.failure = error;
    for (const d of [...this.requested, ...this.covered]) d.reject(error);
    this.requested = [];
    this.covered = [];
    this.notify();
  }

  async open(position: Json | undefined): Promise<void> {
    const marks =
      position !== null && typeof position === 'object' && !Array.isArray(position)
        ? position.lastMarks
        : undefined;
    if (marks !== null && typeof marks === 'object' && !Array.isArray(marks))
      for (const [k, v] of Object.entries(marks))
        if (typeof v === 'number') this.lastMarks[k] = Math.max(this.lastMarks[k] ?? v, v);
  }

  async next(): Promise<CrossMeterPull | 'end'> {
    for (;;) {
      if (this.records.length > 0 || this.requested.length > 0) {
        const pull: CrossMeterPull = { records: this.records, commitSoon: this.requested.length > 0 };
        this.records = [];
        this.covered.push(...this.requested);
        this.requested = [];
        return pull;
      }
      if (this.allEnded) return 'end';
      if (this.failure !== undefined) return { records: [] };
      const woken = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), this.waitMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      this.wake = undefined;
      if (!woken) return { records: [] };
    }
  }

  /** The threads' latest watermarks; no read position: the threads send again what followed their own. */
  position(): Json {
    return { lastMarks: { ...this.lastMarks } };
  }

  async commit(): Promise<void> {
    const covered = this.covered;
    this.covered = [];
    for (const d of covered) d.resolve();
  }

  async close(): Promise<void> {}

  private notify(): void {
    this.wake?.();
  }
}

/**
 * The cross-meter checkpoint store, refusing a checkpoint a single-thread run left under the same worker
 * id: its per-meter state belongs to one graph and cannot be split among threads.
 */
function refusingSingleThread(store: CheckpointStore, name: string): CheckpointStore {
  return {
    async load() {
      const cp = await store.load();
      const format = cp?.stateFormat;
      if (
        cp !== undefined &&
        format !== undefined &&
        (format === METER_QUALITY_STATE_FORMAT || METER_QUALITY_RESTORES_STATE_FORMATS.includes(format))
      )
        throw new ConfigurationError(
          `${name} is the checkpoint of a single-thread run (--threads 1): its state cannot be split among threads. ` +
            'Resume it with --threads 1, or start --threads N under a new --worker id (the stores replace rather than double rows)',
          { context: { checkpoint: cp.seq } },
        );
      return cp;
    },
    save: (cp) => store.save(cp),
  };
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function sumTotals(a: RunTotals, b: RunTotals): RunTotals {
  return {
    recordsIn: a.recordsIn + b.recordsIn,
    readings: a.readings + b.readings,
    measured: a.measured + b.measured,
    quarantined: a.quarantined + b.quarantined,
    deadLettered: a.deadLettered + b.deadLettered,
    faults: a.faults + b.faults,
    alerts: a.alerts + b.alerts,
  };
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function prefixed(error: Error, where: string): Error {
  error.message = `${where}: ${error.message}`;
  return error;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
