import { Subject, type Subscription } from 'rxjs';
import {
  ConfigurationError,
  dataEvent,
  type FlowEvent,
  type Json,
  type SnapshotInProgress,
  type StateStore,
  tickEvent,
} from '../core/index.js';
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
  /**
   * Acknowledges everything returned so far. The runner calls it once the outputs derived from those
   * deliveries are written and, unless `resumesFromPosition`, the checkpoint covering them is saved.
   */
  commit(): Promise<void>;
  /**
   * `open(position)` resumes exactly after a checkpoint's position whatever was acknowledged since (the
   * JetStream sources recreate their consumer there), so acknowledgements are flow control only and
   * `commit` may run after each write of outputs instead of waiting for the next checkpoint.
   */
  readonly resumesFromPosition?: boolean;
  /** Messages waiting upstream (consumer lag); undefined when unknown. */
  pending?(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** Everything the graph produced since the last write of outputs, ready to be written. */
export interface OutputBatch {
  /**
   * The checkpoint that will cover this batch (the last saved one + 1): a worker killed before saving it
   * resumes from the previous checkpoint and writes the outputs of this epoch again.
   */
  readonly checkpoint: number;
  /** The batch's place in its epoch, from 0: batches of one epoch are written in this order. */
  readonly flush: number;
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
  /** Removes output of epochs after checkpoint `committed` that a killed worker may have left behind. */
  rollback(committed: number): Promise<void>;
  /**
   * Writes a batch durably and idempotently: the batches of an epoch replayed after a crash rewrite what
   * the killed worker wrote, never double it, even when the replay cuts the epoch into other batches.
   */
  write(batch: OutputBatch): Promise<void>;
  /**
   * Makes everything written for epoch `checkpoint` durable before its checkpoint is saved: a sink that
   * buffers across writes (the lake, which wants large files) writes the rest here. It takes what it
   * must write before its first `await`: writes of the next epoch may start before it resolves.
   */
  seal?(checkpoint: number): Promise<void>;
}

export interface Checkpoint {
  readonly seq: number;
  readonly position: Json;
  /** Serialized `StoreSnapshot`. */
  readonly state: string;
  readonly totals: RunTotals;
  /**
   * The layout of the operators' state in `state` (`RunOptions.stateFormat`); absent in checkpoints
   * written before layouts were stamped.
   */
  readonly stateFormat?: string;
}

/**
 * The last checkpoint holds operator state of another layout than this build's graph reads: an upgrade
 * changed the operators' state. Restoring it would misread every meter's history, so the worker stops.
 */
export class CheckpointFormatError extends ConfigurationError<{
  readonly checkpoint: number;
  readonly found: string | null;
  readonly expected: string;
}> {
  override readonly name = 'CheckpointFormatError';
  readonly found: string | undefined;
  readonly expected: string;
  constructor(checkpoint: Checkpoint, expected: string) {
    const found = checkpoint.stateFormat;
    super(
      `checkpoint ${checkpoint.seq} holds operator state of format ${found ?? '(unstamped: written before formats were recorded)'}, ` +
        `this build reads ${expected}: it cannot resume from it. Drain the stream with the previous release, ` +
        'or start this one from a fresh checkpoint (a new --worker id, or delete the checkpoint key / file); ' +
        'the sinks are idempotent, so a replay from the stream start rewrites the same rows.',
      { context: { checkpoint: checkpoint.seq, found: found ?? null, expected } },
    );
    this.found = found;
    this.expected = expected;
  }
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
  /** Write the buffered outputs once this many rows are buffered … */
  readonly flushRows: number;
  /** … or this long after the previous write (the latency from a reading to its row in the stores). */
  readonly flushIntervalMs: number;
  /**
   * Save a checkpoint (state snapshot + source position) this long after the previous one. Snapshots
   * cost time in proportion to the meters held, not to the readings since the last one: rare
   * checkpoints keep them cheap, at the price of more work to redo after a crash.
   */
  readonly checkpointIntervalMs: number;
  /** … or after this many writes of outputs, whichever comes first (default: time only). */
  readonly checkpointEveryFlushes?: number;
  /**
   * For a source that resumes from its position, the state is serialized between batches in slices of
   * this many ms (default 50), so a checkpoint never stalls the graph for long; 0 serializes at once.
   */
  readonly snapshotSliceMs?: number;
  /**
   * The layout of the graph's operator state (e.g. `meter-quality/2`), stamped in every checkpoint. A
   * checkpoint of another layout is refused with `CheckpointFormatError` rather than restored into
   * operators that would misread it.
   */
  readonly stateFormat?: string;
  /** Pause before polling an idle source again. */
  readonly idlePollMs: number;
  /** Called just before each pull (the job stamps the batch's processing time here). */
  readonly beforePull?: () => void;
  readonly now: () => number;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint) => void;
  /** A batch of outputs is written. */
  readonly onFlush?: (batch: OutputBatch) => void;
  /** Instrumentation: metrics, readiness and the operational alerts (see `RunObserver`). */
  readonly observer?: RunObserver;
}

/**
 * Hooks into a run for metrics, readiness and operational alerts. All are synchronous except `sinkFailed`
 * and `graphFailed`, which the runner awaits before it stops; none may throw.
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
  /**
   * A stage of the graph failed (a `StageError` naming it) in epoch `checkpoint`: its outputs are
   * incomplete, so nothing after the last checkpoint is written past it and the run stops.
   */
  graphFailed?(error: unknown, checkpoint: number): Promise<void>;
  /** A batch of outputs is written (and acknowledged, when the source resumes from its position). */
  flushed?(batch: OutputBatch): void;
  /** The graph waited this long for the previous write to land before starting the next (backpressure). */
  writeWaited?(seconds: number): void;
  /** The state was serialized for a checkpoint: how long it took and its size in UTF-16 code units. */
  snapshotted?(seconds: number, length: number): void;
  /** The checkpoint is saved and the source acknowledged. */
  checkpointed?(checkpoint: Checkpoint): void;
  /** The run ended (drained, aborted or failed). */
  stopped?(): void;
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

  get empty(): boolean {
    return (
      this.rows === 0 &&
      this.recordsIn === 0 &&
      this.deadLettered === 0 &&
      this.faultsBuf.length === 0 &&
      this.alertsBuf.length === 0 &&
      this.peaksBuf.length === 0
    );
  }

  take(checkpoint: number, flush: number): OutputBatch {
    const batch: OutputBatch = {
      checkpoint,
      flush,
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
 * buffered when `next` returns), write the buffered outputs every `flushRows` rows or `flushIntervalMs`,
 * and every `checkpointIntervalMs` save a checkpoint: the state with the source position, after every
 * write before it has landed. A write runs while the graph goes on with the next batches (the stores do
 * their work off the JS thread), one write at a time, in order. A worker killed anywhere resumes from its
 * last checkpoint and redoes the epoch after it; the sinks' idempotence keeps that from doubling anything.
 */
export async function runPipeline(options: RunOptions): Promise<RunTotals> {
  const { source, sinks, checkpoints, store } = options;
  const previous = await checkpoints.load();
  let seq = 0;
  let totals = emptyTotals();
  if (previous !== undefined) {
    if (options.stateFormat !== undefined && previous.stateFormat !== options.stateFormat) {
      throw new CheckpointFormatError(previous, options.stateFormat);
    }
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
  let lastFlush = lastCheckpoint;
  /** Writes of the current epoch started so far. */
  let flushes = 0;
  /** Records pulled since the last checkpoint: nothing to save when none. */
  let pulledSinceCheckpoint = 0;
  let writing: Promise<void> = Promise.resolve();
  let writeFailure: unknown;
  let saving: Promise<void> = Promise.resolve();
  let saveFailure: unknown;
  const throwIfFailed = (): void => {
    if (failure !== undefined) throw failure;
    if (writeFailure !== undefined) throw writeFailure;
    if (saveFailure !== undefined) throw saveFailure;
  };

  const write = async (batch: OutputBatch): Promise<void> => {
    let written = batch;
    if (observer !== undefined) {
      const pending = await consumerLag(source);
      observer.consumerLag?.(pending);
      const extra = observer.alertsFor?.(batch, pending) ?? [];
      if (extra.length > 0) written = { ...batch, alerts: [...batch.alerts, ...extra] };
    }
    const writeStarted = performance.now();
    try {
      await sinks.write(written);
    } catch (err) {
      observer?.sinkWrite?.((performance.now() - writeStarted) / 1000, false);
      await observer?.sinkFailed?.(err, written);
      throw err;
    }
    observer?.sinkWrite?.((performance.now() - writeStarted) / 1000, true);
    totals = addTotals(totals, written);
    if (source.resumesFromPosition === true) await source.commit();
    options.onFlush?.(written);
    observer?.flushed?.(written);
  };

  /** Starts writing the buffered outputs as the next write of this epoch; the previous write has landed. */
  const startWrite = (): void => {
    lastFlush = options.now();
    if (buffers.empty) return;
    const batch = buffers.take(seq + 1, flushes);
    flushes += 1;
    writing = write(batch).catch((err: unknown) => {
      writeFailure = err;
    });
  };

  /** Starts writing the buffered outputs once the previous write has landed; does not wait for this one. */
  const flush = async (): Promise<void> => {
    const waitStarted = performance.now();
    await writing;
    observer?.writeWaited?.((performance.now() - waitStarted) / 1000);
    throwIfFailed();
    startWrite();
  };

  const save = async (cp: Checkpoint): Promise<void> => {
    await checkpoints.save(cp);
    if (source.resumesFromPosition !== true) await source.commit();
    options.onCheckpoint?.(cp);
    observer?.checkpointed?.(cp);
  };

  const sliceMs = options.snapshotSliceMs ?? 50;
  /** A checkpoint whose state is being serialized between batches. */
  let capturing:
    | {
        snapshot: SnapshotInProgress;
        cp: Omit<Checkpoint, 'state' | 'totals'>;
        /** The epoch's totals, once its last write landed and it is sealed. */
        sealed: Promise<RunTotals>;
        since: number;
        spentMs: number;
      }
    | undefined;
  /** Serializes the capture in progress until `deadline`; once complete, its save starts alongside. */
  const advanceCapture = (deadline: number): void => {
    if (capturing === undefined) return;
    const started = performance.now();
    // A capture older than half the interval is finished at once: the next one must not wait for it.
    const late = options.now() - capturing.since >= options.checkpointIntervalMs / 2;
    const done = capturing.snapshot.step(late ? Number.POSITIVE_INFINITY : deadline);
    capturing.spentMs += performance.now() - started;
    if (!done) return;
    const state = capturing.snapshot.finish();
    observer?.snapshotted?.(capturing.spentMs / 1000, state.length);
    const cp = { ...capturing.cp, state };
    const sealed = capturing.sealed;
    capturing = undefined;
    saving = (async () => {
      await save({ ...cp, totals: await sealed });
    })().catch((err: unknown) => {
      saveFailure = err;
    });
  };

  /**
   * The barrier: once every write before it has landed, the epoch's last outputs, the state and the source
   * position are taken in one synchronous step, so no state change can fall between them and its outputs
   * land in another epoch than the state that records it. The epoch is sealed once its last write landed.
   * For a source that resumes from its position, the state is then serialized between the next batches
   * (an entry about to change is serialized first) and saved alongside them: their writes belong to the
   * next epoch, which a restart from the previous checkpoint removes and redoes. Any other source is
   * serialized, saved and acknowledged before it delivers more. One checkpoint at a time, in order; the
   * last one is awaited.
   */
  const checkpoint = async (last: boolean): Promise<void> => {
    const waitStarted = performance.now();
    await writing;
    advanceCapture(Number.POSITIVE_INFINITY);
    await saving;
    observer?.writeWaited?.((performance.now() - waitStarted) / 1000);
    throwIfFailed();
    const barrier = performance.now();
    const epoch = seq + 1;
    startWrite();
    // Registered before anything else awaits this write, so it runs first when the write lands: the totals
    // are the epoch's, and the seal takes the epoch's buffered rows before the next epoch's first write.
    const sealed = writing.then(async (): Promise<RunTotals> => {
      if (writeFailure !== undefined) throw writeFailure;
      const epochTotals = totals;
      await sinks.seal?.(epoch);
      return epochTotals;
    });
    const snapshot = store.beginSnapshot();
    const cp = {
      seq: epoch,
      position: source.position(),
      ...(options.stateFormat === undefined ? {} : { stateFormat: options.stateFormat }),
    };
    seq = cp.seq;
    flushes = 0;
    pulledSinceCheckpoint = 0;
    lastCheckpoint = options.now();
    if (last || source.resumesFromPosition !== true || sliceMs <= 0) {
      const state = snapshot.finish();
      observer?.snapshotted?.((performance.now() - barrier) / 1000, state.length);
      await save({ ...cp, totals: await sealed, state });
      return;
    }
    // A failed seal surfaces when the save awaits it; until then nothing may treat it as unhandled.
    sealed.catch(() => undefined);
    capturing = { snapshot, cp, sealed, since: lastCheckpoint, spentMs: performance.now() - barrier };
    advanceCapture(performance.now() + sliceMs);
  };

  /** A stage failed: raise the transformation-failure alert once, before the run stops. */
  let failureReported = false;
  const reportGraphFailure = async (): Promise<void> => {
    if (failure === undefined || failureReported) return;
    failureReported = true;
    await observer?.graphFailed?.(failure, seq + 1);
  };

  const checkpointDue = (): boolean =>
    options.now() - lastCheckpoint >= options.checkpointIntervalMs ||
    (options.checkpointEveryFlushes !== undefined && flushes >= options.checkpointEveryFlushes);

  try {
    for (;;) {
      throwIfFailed();
      if (options.signal?.aborted) {
        await checkpoint(true);
        break;
      }
      options.beforePull?.();
      const next = await source.next();
      if (next === 'end' || (next === 'idle' && options.untilIdle)) {
        input.complete();
        await checkpoint(true);
        break;
      }
      advanceCapture(performance.now() + sliceMs);
      if (next === 'idle') {
        // Processing time passes in the graph only here, between batches: idle partitions stop holding
        // the watermark back, and what that fires is buffered in this epoch like any batch's outputs.
        input.next(tickEvent(options.now()));
        throwIfFailed();
        if (!buffers.empty && options.now() - lastFlush >= options.flushIntervalMs) await flush();
        if (pulledSinceCheckpoint > 0 && checkpointDue()) await checkpoint(false);
        await sleep(options.idlePollMs, options.signal);
        continue;
      }
      observer?.pulled?.(next);
      const pulled = next.records.length + next.quarantined.length;
      buffers.recordsIn += pulled;
      buffers.deadLettered += next.deadLettered;
      pulledSinceCheckpoint += pulled + next.deadLettered;
      if (next.quarantined.length > 0) buffers.quarantine(next.quarantined);
      if (next.records.length > 0) input.next(dataEvent(next.records));
      if (next.commitSoon === true && source.resumesFromPosition !== true) {
        // Deliveries are acknowledged at checkpoints only, and the source has no room for more.
        await checkpoint(false);
      } else if (
        next.commitSoon === true ||
        buffers.rows >= options.flushRows ||
        options.now() - lastFlush >= options.flushIntervalMs
      ) {
        await flush();
        if (checkpointDue()) await checkpoint(false);
        // No room for more deliveries until this write's acknowledgements are sent.
        else if (next.commitSoon === true) await writing;
      }
    }
    throwIfFailed();
    if (!completed && !input.closed) input.complete();
    return totals;
  } catch (err) {
    await reportGraphFailure();
    throw err;
  } finally {
    // A write or save still running when the loop failed: let it settle before the source closes.
    await writing;
    await saving;
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
