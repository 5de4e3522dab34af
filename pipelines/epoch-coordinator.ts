/**
 * The epoch coordinator: the graph's only driver. It pulls from the source and pushes each pull through
 * the graph (synchronously: when `next` returns, every output derived from it is buffered), injects idle
 * ticks, writes the buffered outputs at their cadence, and at checkpoints takes the epoch's last outputs,
 * the state snapshot and the source position in one step. It owns the checkpoint sequence, the writes'
 * numbering within an epoch, the running totals, and the stop on any failure.
 */

import { Subject, type Subscription } from 'rxjs';
import {
  deserializeSnapshot,
  type FlowEvent,
  type SnapshotInProgress,
  type SnapshotState,
  type StateStore,
  snapshotLength,
  tickEvent,
} from '../core/index.js';
import { sleep } from '../core/sleep.js';
import {
  type Checkpoint,
  CheckpointFormatError,
  type CheckpointStore,
  type EpochBatch,
  type EpochGraph,
  type EpochObserver,
  type EpochSinks,
  type Pull,
  type Source,
} from './contracts.js';

export interface EpochCoordinatorOptions<P extends Pull, B extends EpochBatch, T> {
  readonly source: Source<P>;
  readonly sinks: EpochSinks<B>;
  readonly checkpoints: CheckpointStore<T>;
  readonly store: StateStore;
  readonly graph: EpochGraph<P, B, T>;
  /** Stop once the source is drained and the final watermark's windows have fired. */
  readonly untilIdle: boolean;
  /** Write the buffered outputs once this many rows are buffered … */
  readonly flushRows: number;
  /** … or this long after the previous write (the latency from a reading to its row in the stores). */
  readonly flushIntervalMs: number;
  /**
   * Save a checkpoint (state snapshot + source position) this long after the previous one. Snapshots
   * cost time in proportion to the keys held, not to the elements since the last one: rare checkpoints
   * keep them cheap, at the price of more work to redo after a crash.
   */
  readonly checkpointIntervalMs: number;
  /** … or after this many writes of outputs, whichever comes first (default: time only). */
  readonly checkpointEveryFlushes?: number;
  /**
   * Incremental checkpoints, for a checkpoint store that keeps chains and a state with numeric rows: a
   * checkpoint saves only what changed since the previous one (a delta), and a full snapshot is taken
   * every this many checkpoints (default 10: the full one and 9 deltas), or sooner once the chain's
   * deltas add up to the full snapshot's size, or when most rows and lists changed since the last one (a
   * bulk run: a delta would cost what a full snapshot does). 1: every checkpoint is a full snapshot.
   */
  readonly fullCheckpointEvery?: number;
  /**
   * For a source that resumes from its position, the state is serialized between pulls in slices of
   * this many ms (default 50), so a checkpoint never stalls the graph for long; 0 serializes at once.
   */
  readonly snapshotSliceMs?: number;
  /**
   * The layout of the graph's operator state, stamped in every checkpoint. A checkpoint of another
   * layout is refused with `CheckpointFormatError` rather than restored into operators that would
   * misread it.
   */
  readonly stateFormat?: string;
  /** Earlier layouts this build's operators still restore (they upgrade the state as they read it). */
  readonly restoresStateFormats?: readonly string[];
  /**
   * Pause before polling an idle source again, counted from the start of the pull that found it idle (a
   * source that waits for messages before it answers idle has spent part or all of it).
   */
  readonly idlePollMs: number;
  /** Called just before each pull (the job stamps the batch's processing time here). */
  readonly beforePull?: () => void;
  readonly now: () => number;
  readonly signal?: AbortSignal;
  readonly onCheckpoint?: (checkpoint: Checkpoint<T>) => void;
  /** A batch of outputs is written. */
  readonly onFlush?: (batch: B) => void;
  readonly observer?: EpochObserver<P, B, T>;
}

/**
 * The shortest slice of a capture between pulls (see `sliceDeadline`), and the first one, at the barrier:
 * a live loop that works a fraction of a millisecond a pull still finishes a capture of 50,000 meters
 * (~2 s of work) within seconds, while a reading arriving during a slice waits no longer than this.
 */
const MIN_SLICE_MS = 5;

/** See `EpochCoordinatorOptions.fullCheckpointEvery`. */
export const DEFAULT_FULL_CHECKPOINT_EVERY = 10;

/** A checkpoint whose state is being serialized between pulls. */
interface Capture<T> {
  readonly snapshot: SnapshotInProgress;
  readonly cp: Omit<Checkpoint<T>, 'state' | 'totals'>;
  /** The epoch's totals, once its last write landed and it is sealed. */
  readonly sealed: Promise<T>;
  readonly since: number;
  spentMs: number;
}

/**
 * Runs one worker's epochs. A write runs while the graph goes on with the next pulls (the stores do
 * their work off the JS thread), one write at a time, in order. A worker killed anywhere resumes from
 * its last checkpoint and redoes the epoch after it; the sinks' idempotence keeps that from doubling.
 */
export class EpochCoordinator<P extends Pull, B extends EpochBatch, T> {
  /** The last checkpoint saved or being saved; the current epoch is `seq + 1`. */
  private seq = 0;
  /** Writes of the current epoch started so far. */
  private flushes = 0;
  private totals: T;
  private lastCheckpoint = 0;
  private lastFlush = 0;
  /** Elements pulled since the last checkpoint: nothing to save when none. */
  private pulledSinceCheckpoint = 0;
  private writing: Promise<void> = Promise.resolve();
  /** `writing` has not settled yet. */
  private writeInFlight = false;
  private saving: Promise<void> = Promise.resolve();
  private capturing: Capture<T> | undefined;
  private graphFailure: unknown;
  private writeFailure: unknown;
  private saveFailure: unknown;
  private graphFailureReported = false;
  private completed = false;
  private readonly sliceMs: number;
  /** When the last slice of a capture between pulls ended (`performance.now()`). */
  private sliceEnded = 0;
  /** Of the time since then, how long the loop waited (pulls, writes, idle polls) rather than worked. */
  private waitedSinceSlice = 0;
  /** The incremental chain saved so far: snapshots in it (the full one included), and their bytes. */
  private chainLength = 0;
  private fullBytes = 0;
  private deltaBytes = 0;

  constructor(private readonly options: EpochCoordinatorOptions<P, B, T>) {
    this.totals = options.graph.initialTotals();
    this.sliceMs = options.snapshotSliceMs ?? 50;
  }

  /** Restores the last checkpoint, then runs until the source ends, the signal aborts, or a failure. */
  async run(): Promise<T> {
    const { source, sinks, checkpoints, store, graph, observer } = this.options;
    const previous = await checkpoints.load();
    if (previous !== undefined) {
      const expected = this.options.stateFormat;
      const upgradable =
        previous.stateFormat !== undefined &&
        (this.options.restoresStateFormats ?? []).includes(previous.stateFormat);
      if (expected !== undefined && previous.stateFormat !== expected && !upgradable)
        throw new CheckpointFormatError(previous, expected);
      store.restore(deserializeSnapshot(previous.state));
      store.applyDeltas(previous.deltas ?? []);
      // The first checkpoint after a start is a delta on the restored chain when the store still holds it
      // and the state is of this build's layout (an upgraded one is rewritten: a full state first).
      if (
        checkpoints.chains === true &&
        checkpoints.extendsLoaded === true &&
        (expected === undefined || previous.stateFormat === expected) &&
        store.continueRestoredChain()
      ) {
        this.chainLength = 1 + (previous.deltas?.length ?? 0);
        this.fullBytes = snapshotLength(previous.state);
        this.deltaBytes = (previous.deltas ?? []).reduce((sum, d) => sum + d.byteLength, 0);
      }
      this.seq = previous.seq;
      this.totals = previous.totals;
    }
    await sinks.rollback(this.seq);
    await source.open(previous?.position);
    observer?.opened?.();

    const input = new Subject<FlowEvent<unknown>>();
    const subscription: Subscription = graph.connect(input).subscribe({
      error: (err: unknown) => {
        this.graphFailure = err;
      },
      complete: () => {
        this.completed = true;
      },
    });
    this.lastCheckpoint = this.options.now();
    this.lastFlush = this.lastCheckpoint;

    try {
      await this.loop(input);
      this.throwIfFailed();
      if (!this.completed && !input.closed) input.complete();
      return this.totals;
    } catch (err) {
      await this.reportGraphFailure();
      throw err;
    } finally {
      // A write or save still running when the loop failed: let it settle before the source closes.
      await this.writing;
      await this.saving;
      observer?.stopped?.();
      subscription.unsubscribe();
      await source.close();
    }
  }

  private async loop(input: Subject<FlowEvent<unknown>>): Promise<void> {
    const { source, graph, observer } = this.options;
    const opts = this.options;
    for (;;) {
      this.throwIfFailed();
      if (opts.signal?.aborted) {
        await this.checkpoint(true);
        return;
      }
      opts.beforePull?.();
      const pulledAt = opts.now();
      const pullStarted = performance.now();
      const next = await source.next();
      this.waitedSinceSlice += performance.now() - pullStarted;
      if (next === 'end' || (next === 'idle' && opts.untilIdle)) {
        if (await this.drain(input)) input.complete();
        await this.checkpoint(true);
        return;
      }
      if (!this.deferSlice()) this.advanceCapture(this.sliceDeadline());
      if (next === 'idle') {
        // Processing time passes in the graph only here, between pulls: idle partitions stop holding the
        // watermark back, and what that fires is buffered in this epoch like any pull's outputs.
        input.next(tickEvent(opts.now()));
        this.throwIfFailed();
        if (!graph.empty && opts.now() - this.lastFlush >= opts.flushIntervalMs) await this.flush();
        if (this.pulledSinceCheckpoint > 0 && this.checkpointDue()) await this.checkpoint(false);
        // A source that waits for messages before it answers idle (a JetStream pull's expiry) has polled
        // for that long already: only the rest of `idlePollMs` is slept. The whole pause left no pull
        // open for 500 ms after each idle one, and a live stream resuming after a quiet spell sat in the
        // stream that long (the p99 of its first second).
        const idleStarted = performance.now();
        const rest = opts.idlePollMs - (opts.now() - pulledAt);
        if (rest > 0) await sleep(rest, opts.signal);
        this.waitedSinceSlice += performance.now() - idleStarted;
        continue;
      }
      observer?.pulled?.(next);
      this.pulledSinceCheckpoint += graph.accept(next, input);
      this.throwIfFailed();
      if (next.commitSoon === true && source.resumesFromPosition !== true) {
        // Deliveries are acknowledged at checkpoints only, and the source has no room for more.
        await this.checkpoint(false);
      } else if (
        next.commitSoon === true ||
        graph.bufferedRows >= opts.flushRows ||
        // Due by time while the previous write is still landing and the buffer is small: pull on instead
        // of waiting for it, and write everything gathered meanwhile once it has landed. Waiting left a
        // live loop one small pull per write, behind any stream faster than that; a bulk drain fills a
        // tenth of `flushRows` at once and waits as before, so its buffer (and heap) does not grow.
        // Nor is a write of counts alone started by time: the graph holding every reading (its sort
        // buffer waits for the watermark) made nine in ten live writes a quality-log row, ~60 ms of chDB each.
        (opts.now() - this.lastFlush >= opts.flushIntervalMs &&
          (!this.writeInFlight || graph.bufferedRows >= opts.flushRows / 10) &&
          graph.countsOnly !== true)
      ) {
        await this.flush();
        if (this.checkpointDue()) await this.checkpoint(false);
        // No room for more deliveries until this write's acknowledgements are sent.
        else if (next.commitSoon === true) await this.waitFor(this.writing);
      } else if (graph.countsOnly === true && this.checkpointDue()) {
        // Counts alone still end their epoch on time (the checkpoint writes them).
        await this.checkpoint(false);
      }
    }
  }

  /**
   * The input has ended: moves the watermark to its final value in the bounded steps of the watermark
   * stage (see `TickEvent.drain`), writing the outputs between steps once `flushRows` are buffered, as
   * after a pull. The end of a day's input otherwise fired every pending timer at once and held all their
   * outputs until one write (the run's peak memory). A checkpoint due meanwhile is a consistent cut: the
   * watermark reached is in the state, and a resumed run, its source at the end, drains on from there.
   * False when the signal aborted before the end was reached.
   */
  private async drain(input: Subject<FlowEvent<unknown>>): Promise<boolean> {
    const { graph, signal, now, flushRows } = this.options;
    for (;;) {
      const step = { more: false };
      input.next(tickEvent(now(), step));
      this.throwIfFailed();
      if (!step.more) return true;
      this.advanceCapture(this.sliceDeadline());
      if (graph.bufferedRows >= flushRows) {
        await this.flush();
        if (this.checkpointDue()) await this.checkpoint(false);
      }
      if (signal?.aborted) return false;
    }
  }

  private throwIfFailed(): void {
    if (this.graphFailure !== undefined) throw this.graphFailure;
    if (this.writeFailure !== undefined) throw this.writeFailure;
    if (this.saveFailure !== undefined) throw this.saveFailure;
  }

  /** A stage failed: raise the transformation-failure alert once, before the run stops. */
  private async reportGraphFailure(): Promise<void> {
    if (this.graphFailure === undefined || this.graphFailureReported) return;
    this.graphFailureReported = true;
    await this.options.observer?.graphFailed?.(this.graphFailure, this.seq + 1);
  }

  private checkpointDue(): boolean {
    const { now, checkpointIntervalMs, checkpointEveryFlushes } = this.options;
    return (
      now() - this.lastCheckpoint >= checkpointIntervalMs ||
      (checkpointEveryFlushes !== undefined && this.flushes >= checkpointEveryFlushes)
    );
  }

  private async write(batch: B): Promise<void> {
    const { source, sinks, observer } = this.options;
    let written = batch;
    if (observer?.consumerLag !== undefined || observer?.beforeWrite !== undefined) {
      const pending = await consumerLag(source);
      observer.consumerLag?.(pending);
      written = observer.beforeWrite?.(batch, pending) ?? batch;
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
    this.totals = this.options.graph.addTotals(this.totals, written);
    if (source.resumesFromPosition === true) await source.commit();
    this.options.onFlush?.(written);
    observer?.flushed?.(written);
  }

  /** Starts writing the buffered outputs as the next write of this epoch; the previous write has landed. */
  private startWrite(): void {
    const graph = this.options.graph;
    this.lastFlush = this.options.now();
    if (graph.empty) return;
    const batch = graph.take(this.seq + 1, this.flushes);
    this.flushes += 1;
    this.writeInFlight = true;
    this.writing = this.write(batch)
      .catch((err: unknown) => {
        this.writeFailure = err;
      })
      .finally(() => {
        this.writeInFlight = false;
      });
  }

  /** Starts writing the buffered outputs once the previous write has landed; does not wait for this one. */
  private async flush(): Promise<void> {
    const waitStarted = performance.now();
    await this.waitFor(this.writing);
    this.options.observer?.writeWaited?.((performance.now() - waitStarted) / 1000);
    this.throwIfFailed();
    this.startWrite();
  }

  /**
   * Saves a checkpoint once its epoch is sealed. A store that stages stores the state while the seal
   * runs (the lake's sort and files: seconds on a large epoch), letting go of it as it is stored rather
   * than holding it until the seal is done, and commits once the seal is; a seal that fails leaves the
   * staged state uncommitted, which a restart never restores.
   */
  private async saveSealed(
    cp: Omit<Checkpoint<T>, 'state' | 'totals'>,
    state: SnapshotState,
    sealed: Promise<T>,
  ): Promise<void> {
    const { checkpoints, source, observer } = this.options;
    let saved: Checkpoint<T>;
    if (checkpoints.stage === undefined) {
      saved = { ...cp, totals: await sealed, state };
      await checkpoints.save(saved);
    } else {
      const staged = checkpoints.stage(cp.seq, state);
      // Whichever of the two fails first surfaces; the other must not count as unhandled meanwhile.
      staged.catch(() => undefined);
      const totals = await sealed;
      await (await staged).commit({ ...cp, totals });
      saved = { ...cp, totals, state };
    }
    if (source.resumesFromPosition !== true) await source.commit();
    this.options.onCheckpoint?.(saved);
    observer?.checkpointed?.(saved);
  }

  /** Awaits `work`, counting the time as the loop's waiting, not its work (see `sliceDeadline`). */
  private async waitFor(work: Promise<unknown>): Promise<void> {
    const started = performance.now();
    await work;
    this.waitedSinceSlice += performance.now() - started;
  }

  /**
   * The end of the next slice between pulls: `sliceMs`, but never longer than the loop worked since the
   * last one (its time waiting for pulls, writes and idle polls left out), so serialization takes at most
   * half of the thread's work, and at least `MIN_SLICE_MS`. A live loop pulls a few messages at a time and
   * waits for most of its time: slices as long as the time since the last one (up to 50 ms) held each
   * reading that arrived meanwhile that long, the live tail while a checkpoint is serialized. A bulk
   * loop's steps are longer than a slice and see no change.
   */
  private sliceDeadline(): number {
    const now = performance.now();
    const worked =
      this.capturing === undefined ? this.sliceMs : now - this.sliceEnded - this.waitedSinceSlice;
    // A step serializes at least one chunk of entries, however short the slice.
    return now + Math.min(this.sliceMs, Math.max(MIN_SLICE_MS, worked));
  }

  /**
   * A live loop's slice waits while a small write is landing. A write hops between the JS thread and
   * the stores' threads several times (encode, insert, the next table's insert, the lake spool), and each
   * hop waited for the slice running when it came back: slices between one-message pulls filled ~80 % of
   * the thread for the second after a full checkpoint, and the writes of that second took 100–170 ms
   * instead of 15–25 ms, which is what the readings in them waited. The capture goes on between writes;
   * a bulk loop (a buffer of a tenth of `flushRows` or more) and a capture past a quarter of the interval
   * slice as before, so a capture still ends long before the next checkpoint.
   */
  private deferSlice(): boolean {
    const capturing = this.capturing;
    if (capturing === undefined || !this.writeInFlight) return false;
    const opts = this.options;
    return (
      this.options.graph.bufferedRows < opts.flushRows / 10 &&
      opts.now() - capturing.since < opts.checkpointIntervalMs / 4
    );
  }

  /** Serializes the capture in progress until `deadline`; once complete, its save starts alongside. */
  private advanceCapture(deadline: number): void {
    const capturing = this.capturing;
    if (capturing === undefined) return;
    const started = performance.now();
    // A capture older than half the interval is finished at once: the next one must not wait for it.
    const late = this.options.now() - capturing.since >= this.options.checkpointIntervalMs / 2;
    const done = capturing.snapshot.step(late ? Number.POSITIVE_INFINITY : deadline);
    this.sliceEnded = performance.now();
    this.waitedSinceSlice = 0;
    capturing.spentMs += this.sliceEnded - started;
    if (!done) return;
    const state = capturing.snapshot.finishState();
    this.chained(capturing.snapshot, state);
    this.options.observer?.snapshotted?.(capturing.spentMs / 1000, snapshotLength(state));
    this.capturing = undefined;
    // The save holds the state alone, not the capture that made it (whose copies are the state's pieces),
    // so a store that lets go of each piece once written frees it then.
    const { cp, sealed } = capturing;
    this.saving = this.saveSealed(cp, state, sealed).catch((err: unknown) => {
      this.saveFailure = err;
    });
  }

  /** Counts a finished snapshot into the incremental chain: a full one starts it afresh. */
  private chained(snapshot: SnapshotInProgress, state: SnapshotState): void {
    if (snapshot.delta) {
      this.chainLength += 1;
      this.deltaBytes += snapshotLength(state);
    } else {
      this.chainLength = 1;
      this.fullBytes = snapshotLength(state);
      this.deltaBytes = 0;
    }
  }

  /**
   * The barrier: once every write before it has landed, the epoch's last outputs, the state and the
   * source position are taken in one synchronous step, so no state change can fall between them and its
   * outputs land in another epoch than the state that records it. The epoch is sealed once its last
   * write landed. For a source that resumes from its position, the state is then serialized between the
   * next pulls (an entry about to change is serialized first) and saved alongside them: their writes
   * belong to the next epoch, which a restart from the previous checkpoint removes and redoes. Any other
   * source is serialized, saved and acknowledged before it delivers more. One checkpoint at a time, in
   * order; the last one is awaited.
   */
  private async checkpoint(last: boolean): Promise<void> {
    const { source, sinks, store, observer } = this.options;
    const waitStarted = performance.now();
    await this.writing;
    this.advanceCapture(Number.POSITIVE_INFINITY);
    await this.saving;
    observer?.writeWaited?.((performance.now() - waitStarted) / 1000);
    this.throwIfFailed();
    const barrier = performance.now();
    const epoch = this.seq + 1;
    this.startWrite();
    // Registered before anything else awaits this write, so it runs first when the write lands: the
    // totals are the epoch's, and the seal takes the epoch's buffered rows before the next epoch's first
    // write.
    const sealed = this.writing.then(async (): Promise<T> => {
      if (this.writeFailure !== undefined) throw this.writeFailure;
      const epochTotals = this.totals;
      await sinks.seal?.(epoch);
      return epochTotals;
    });
    const fullEvery = this.options.fullCheckpointEvery ?? DEFAULT_FULL_CHECKPOINT_EVERY;
    const snapshot = store.beginSnapshot({
      incremental: this.options.checkpoints.chains === true && fullEvery > 1,
      delta:
        this.chainLength > 0 &&
        this.chainLength < fullEvery &&
        this.deltaBytes < this.fullBytes &&
        store.changedShare() <= 0.5,
    });
    const stateFormat = this.options.stateFormat;
    const cp = {
      seq: epoch,
      position: source.position(),
      ...(stateFormat === undefined ? {} : { stateFormat }),
    };
    this.seq = epoch;
    this.flushes = 0;
    this.pulledSinceCheckpoint = 0;
    this.lastCheckpoint = this.options.now();
    if (last || source.resumesFromPosition !== true || this.sliceMs <= 0) {
      const state = snapshot.finishState();
      this.chained(snapshot, state);
      observer?.snapshotted?.((performance.now() - barrier) / 1000, snapshotLength(state));
      await this.saveSealed(cp, state, sealed);
      return;
    }
    // A failed seal surfaces when the save awaits it; until then nothing may treat it as unhandled.
    sealed.catch(() => undefined);
    this.capturing = {
      snapshot,
      cp,
      sealed,
      since: this.lastCheckpoint,
      spentMs: performance.now() - barrier,
    };
    this.advanceCapture(performance.now() + Math.min(this.sliceMs, MIN_SLICE_MS));
  }
}

/** A lag probe that fails (e.g. a consumer-info timeout) makes the lag unknown; it never stops the worker. */
async function consumerLag(source: Source<Pull>): Promise<number | undefined> {
  if (source.pending === undefined) return undefined;
  try {
    return await source.pending();
  } catch {
    return undefined;
  }
}
