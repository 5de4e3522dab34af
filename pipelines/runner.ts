import { Subject, type Subscription } from 'rxjs';
import { dataEvent, type FlowEvent, type Json, type StateStore } from '../core/index.js';
import type {
  Alert,
  DailyPeak,
  FaultEvent,
  HourlyConsumption,
  QuarantineRecord,
  RawReading,
  Reading,
} from '../schemas/reading.js';
import type { MeterQualitySink } from './meter-quality.js';

/** One pull from a source: decoded records, plus how many whole messages or files it dead-lettered. */
export interface SourceBatch {
  readonly records: readonly RawReading[];
  /** Records that never became a RawReading because their whole message/file could not be decoded. */
  readonly deadLettered: number;
  /** Record-level decode failures already turned into quarantine records by the source. */
  readonly quarantined: readonly QuarantineRecord[];
  /** The source needs its deliveries acknowledged soon (e.g. JetStream's max_ack_pending is reached). */
  readonly commitSoon?: boolean;
}

/**
 * What the runner needs of a source. Delivery is at-least-once; `commit` acknowledges everything returned
 * so far and is only called after the sinks and the checkpoint have committed.
 */
export interface ReadingSource {
  readonly name: string;
  /** Resumes after `position` (from the last checkpoint), or from the start. */
  open(position: Json | undefined): Promise<void>;
  /** The next batch, `idle` when nothing is available now, `end` when a bounded source is drained. */
  next(): Promise<SourceBatch | 'idle' | 'end'>;
  /** Position after everything returned so far, stored in the checkpoint. */
  position(): Json;
  commit(): Promise<void>;
  /** Messages waiting upstream (consumer lag); undefined when unknown. */
  pending?(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** Everything the graph produced since the last checkpoint, ready to be written. */
export interface OutputBatch {
  readonly checkpoint: number;
  readonly readings: Reading[];
  readonly quarantine: QuarantineRecord[];
  readonly faults: FaultEvent[];
  readonly alerts: Alert[];
  readonly hourly: HourlyConsumption[];
  readonly dailyPeaks: DailyPeak[];
  /** Counts for the quality log. */
  readonly recordsIn: number;
  readonly deadLettered: number;
}

export interface PipelineSinks {
  /** Removes output of checkpoints after `committed` that a killed worker may have left behind. */
  rollback(committed: number): Promise<void>;
  /** Writes a batch durably (idempotently: a replayed checkpoint rewrites, never doubles). */
  write(batch: OutputBatch): Promise<void>;
}

export interface Checkpoint {
  readonly seq: number;
  readonly position: Json;
  /** Serialized `StoreSnapshot`. */
  readonly state: string;
  readonly totals: RunTotals;
}

export interface CheckpointStore {
  load(): Promise<Checkpoint | undefined>;
  save(checkpoint: Checkpoint): Promise<void>;
}

export interface RunTotals {
  recordsIn: number;
  readings: number;
  measured: number;
  quarantined: number;
  deadLettered: number;
  faults: number;
  alerts: number;
}

export interface RunOptions {
  readonly source: ReadingSource;
  readonly sinks: PipelineSinks;
  readonly checkpoints: CheckpointStore;
  readonly store: StateStore;
  readonly connect: (
    input: Subject<FlowEvent<RawReading>>,
    sink: MeterQualitySink,
  ) => import('rxjs').Observable<void>;
  /** Stop once the source is drained and the final watermark's windows have fired. */
  readonly untilIdle: boolean;
  /** Checkpoint when this many output rows are buffered … */
  readonly checkpointRows: number;
  /** … or this long after the previous checkpoint. */
  readonly checkpointIntervalMs: number;
  /** Pause before polling an idle source again. */
  readonly idlePollMs: number;
  readonly now: () => number;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint, batch: OutputBatch) => void;
  /** Instrumentation: metrics, readiness and the operational alerts (see `RunObserver`). */
  readonly observer?: RunObserver;
}

/**
 * Hooks into a run for metrics, readiness and operational alerts. All are synchronous except `sinkFailed`,
 * which the runner awaits before it stops; none may throw.
 */
export interface RunObserver {
  /** The source is open (the job has migrated its stores before): the worker takes work. */
  opened?(): void;
  /** A pull from the source, before it enters the graph. */
  pulled?(batch: SourceBatch): void;
  /** The source's pending messages, read at each checkpoint; undefined when the source cannot tell. */
  consumerLag?(pending: number | undefined): void;
  /** Processing-time alerts to store and publish with this checkpoint's batch. */
  alertsFor?(batch: OutputBatch, pending: number | undefined): readonly Alert[];
  /** Wall time of `sinks.write`, successful or not. */
  sinkWrite?(seconds: number, ok: boolean): void;
  /** `sinks.write` failed after the sinks' own retries; the batch is not acknowledged and the run stops. */
  sinkFailed?(error: unknown, batch: OutputBatch): Promise<void>;
  /** The checkpoint is saved and the source acknowledged. */
  checkpointed?(checkpoint: Checkpoint, batch: OutputBatch): void;
  /** The run ended (drained, aborted or failed). */
  stopped?(): void;
}

export class PipelineStoppedError extends Error {
  override readonly name = 'PipelineStoppedError';
}

const emptyTotals = (): RunTotals => ({
  recordsIn: 0,
  readings: 0,
  measured: 0,
  quarantined: 0,
  deadLettered: 0,
  faults: 0,
  alerts: 0,
});

class Buffers implements MeterQualitySink {
  readingsBuf: Reading[] = [];
  quarantineBuf: QuarantineRecord[] = [];
  faultsBuf: FaultEvent[] = [];
  alertsBuf: Alert[] = [];
  hourlyBuf: HourlyConsumption[] = [];
  peaksBuf: DailyPeak[] = [];
  recordsIn = 0;
  deadLettered = 0;

  readings(b: readonly Reading[]): void {
    for (const r of b) this.readingsBuf.push(r);
  }
  quarantine(b: readonly QuarantineRecord[]): void {
    for (const r of b) this.quarantineBuf.push(r);
  }
  faults(b: readonly FaultEvent[]): void {
    for (const r of b) this.faultsBuf.push(r);
  }
  alerts(b: readonly Alert[]): void {
    for (const r of b) this.alertsBuf.push(r);
  }
  hourly(b: readonly HourlyConsumption[]): void {
    for (const r of b) this.hourlyBuf.push(r);
  }
  dailyPeaks(b: readonly DailyPeak[]): void {
    for (const r of b) this.peaksBuf.push(r);
  }

  get rows(): number {
    return this.readingsBuf.length + this.quarantineBuf.length + this.hourlyBuf.length;
  }

  take(checkpoint: number): OutputBatch {
    const batch: OutputBatch = {
      checkpoint,
      readings: this.readingsBuf,
      quarantine: this.quarantineBuf,
      faults: this.faultsBuf,
      alerts: this.alertsBuf,
      hourly: this.hourlyBuf,
      dailyPeaks: this.peaksBuf,
      recordsIn: this.recordsIn,
      deadLettered: this.deadLettered,
    };
    this.readingsBuf = [];
    this.quarantineBuf = [];
    this.faultsBuf = [];
    this.alertsBuf = [];
    this.hourlyBuf = [];
    this.peaksBuf = [];
    this.recordsIn = 0;
    this.deadLettered = 0;
    return batch;
  }
}

/**
 * Drives the graph: pull a batch, push it through (synchronously, so every output derived from it is
 * buffered when `next` returns), and at checkpoints write the outputs, save state with the source
 * position, then acknowledge the source. A worker killed anywhere redoes at most the work since its last
 * checkpoint, and the sinks' idempotence keeps that from doubling anything.
 */
export async function runPipeline(options: RunOptions): Promise<RunTotals> {
  const { source, sinks, checkpoints, store } = options;
  const previous = await checkpoints.load();
  let seq = 0;
  let totals = emptyTotals();
  if (previous !== undefined) {
    const { deserializeSnapshot } = await import('../core/index.js');
    store.restore(deserializeSnapshot(previous.state));
    seq = previous.seq;
    totals = { ...previous.totals };
  }
  await sinks.rollback(seq);
  await source.open(previous?.position);
  const observer = options.observer;
  observer?.opened?.();

  const input = new Subject<FlowEvent<RawReading>>();
  const buffers = new Buffers();
  let failure: unknown;
  let completed = false;
  const subscription: Subscription = options.connect(input, buffers).subscribe({
    error: (err: unknown) => {
      failure = err;
    },
    complete: () => {
      completed = true;
    },
  });

  let lastCheckpoint = options.now();
  const checkpoint = async (): Promise<void> => {
    if (failure !== undefined) throw failure;
    seq += 1;
    let batch = buffers.take(seq);
    if (observer !== undefined) {
      const pending = await consumerLag(source);
      observer.consumerLag?.(pending);
      const extra = observer.alertsFor?.(batch, pending) ?? [];
      if (extra.length > 0) batch = { ...batch, alerts: [...batch.alerts, ...extra] };
    }
    const writeStarted = performance.now();
    try {
      await sinks.write(batch);
    } catch (err) {
      observer?.sinkWrite?.((performance.now() - writeStarted) / 1000, false);
      await observer?.sinkFailed?.(err, batch);
      throw err;
    }
    observer?.sinkWrite?.((performance.now() - writeStarted) / 1000, true);
    totals = addTotals(totals, batch);
    const cp: Checkpoint = {
      seq,
      position: source.position(),
      state: store.serialize(),
      totals,
    };
    await checkpoints.save(cp);
    await source.commit();
    lastCheckpoint = options.now();
    options.onCheckpoint?.(cp, batch);
    observer?.checkpointed?.(cp, batch);
  };

  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      if (options.signal?.aborted) {
        await checkpoint();
        break;
      }
      const next = await source.next();
      if (next === 'end' || (next === 'idle' && options.untilIdle)) {
        input.complete();
        await checkpoint();
        break;
      }
      if (next === 'idle') {
        if (buffers.rows > 0 && options.now() - lastCheckpoint >= options.checkpointIntervalMs)
          await checkpoint();
        await sleep(options.idlePollMs, options.signal);
        continue;
      }
      observer?.pulled?.(next);
      buffers.recordsIn += next.records.length + next.quarantined.length;
      buffers.deadLettered += next.deadLettered;
      if (next.quarantined.length > 0) buffers.quarantine(next.quarantined);
      if (next.records.length > 0) input.next(dataEvent(next.records));
      if (
        next.commitSoon === true ||
        buffers.rows >= options.checkpointRows ||
        options.now() - lastCheckpoint >= options.checkpointIntervalMs
      ) {
        await checkpoint();
      }
    }
    if (failure !== undefined) throw failure;
    if (!completed && !input.closed) input.complete();
    return totals;
  } finally {
    options.observer?.stopped?.();
    subscription.unsubscribe();
    await source.close();
  }
}

/** A lag probe that fails (e.g. a consumer-info timeout) makes the lag unknown; it never stops the worker. */
async function consumerLag(source: ReadingSource): Promise<number | undefined> {
  if (source.pending === undefined) return undefined;
  try {
    return await source.pending();
  } catch {
    return undefined;
  }
}

function addTotals(t: RunTotals, b: OutputBatch): RunTotals {
  let measured = 0;
  for (const r of b.readings) if (r.status === 'measured') measured++;
  return {
    recordsIn: t.recordsIn + b.recordsIn,
    readings: t.readings + b.readings.length,
    measured: t.measured + measured,
    quarantined: t.quarantined + b.quarantine.length,
    deadLettered: t.deadLettered + b.deadLettered,
    faults: t.faults + b.faults.length,
    alerts: t.alerts + b.alerts.length,
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // The listener is removed when the timer wins, or an idle worker would add one per poll.
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
