/**
 * The contracts between the epoch coordinator and what it drives, independent of any graph's records:
 * a source of pulls with a resumable position, sinks written epoch by epoch, a checkpoint store, the
 * graph's output buffers, and the observer hooks. The meter-quality job binds them in `runner.ts`.
 */
import type { Observable, Observer } from 'rxjs';
import { ConfigurationError, type FlowEvent, type Json, type SnapshotState } from '../core/index.js';

/** One pull from a source; `commitSoon` asks for the deliveries to be acknowledged soon. */
export interface Pull {
  /** The source needs its deliveries acknowledged soon (e.g. JetStream's max_ack_pending is reached). */
  readonly commitSoon?: boolean;
}

/**
 * What the coordinator needs of a source. Delivery is at-least-once; `commit` acknowledges everything
 * returned so far and is only called after the sinks and the checkpoint have committed.
 */
export interface Source<P extends Pull> {
  readonly name: string;
  /** Resumes after `position` (from the last checkpoint), or from the start. */
  open(position: Json | undefined): Promise<void>;
  /** The next pull, `idle` when nothing is available now, `end` when a bounded source is drained. */
  next(): Promise<P | 'idle' | 'end'>;
  /** Position after everything returned so far, stored in the checkpoint. */
  position(): Json;
  /**
   * Acknowledges everything returned so far. Called once the outputs derived from those deliveries are
   * written and, unless `resumesFromPosition`, the checkpoint covering them is saved.
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

/** A batch of outputs and its place: the epoch (checkpoint) that will cover it and its write within it. */
export interface EpochBatch {
  /**
   * The checkpoint that will cover this batch (the last saved one + 1): a worker killed before saving it
   * resumes from the previous checkpoint and writes the outputs of this epoch again.
   */
  readonly checkpoint: number;
  /** The batch's place in its epoch, from 0: batches of one epoch are written in this order. */
  readonly flush: number;
}

export interface EpochSinks<B extends EpochBatch> {
  /** Removes output of epochs after checkpoint `committed` that a killed worker may have left behind. */
  rollback(committed: number): Promise<void>;
  /**
   * Writes a batch durably and idempotently: the batches of an epoch replayed after a crash rewrite what
   * the killed worker wrote, never double it, even when the replay cuts the epoch into other batches.
   */
  write(batch: B): Promise<void>;
  /**
   * Makes everything written for epoch `checkpoint` durable before its checkpoint is saved: a sink that
   * buffers across writes (the lake, which wants large files) writes the rest here. It takes what it
   * must write before its first `await`: writes of the next epoch may start before it resolves.
   */
  seal?(checkpoint: number): Promise<void>;
}

export interface Checkpoint<T> {
  readonly seq: number;
  readonly position: Json;
  /**
   * Serialized `StoreSnapshot`: JSON text, or the binary encoding of a store with numeric rows. Saved to
   * a store that keeps chains (`CheckpointStore.chains`), it may be a delta (`GSD1`) on the previous
   * checkpoint's state; saved as a full binary snapshot, it comes in pieces (`SnapshotChunks`, see
   * `snapshotData`) that a store writes out without joining them when it can; loaded, it is the full
   * snapshot `deltas` apply to, in one piece.
   */
  readonly state: SnapshotState;
  /** Loaded from a store that keeps chains: the deltas to apply on `state`, in order. */
  readonly deltas?: readonly Uint8Array[];
  /** Running totals of what was written up to this checkpoint. */
  readonly totals: T;
  /**
   * The layout of the operators' state in `state`; absent in checkpoints written before layouts were
   * stamped.
   */
  readonly stateFormat?: string;
}

export interface CheckpointStore<T> {
  load(): Promise<Checkpoint<T> | undefined>;
  save(checkpoint: Checkpoint<T>): Promise<void>;
  /**
   * Stores checkpoint `seq`'s state ahead of the rest of it (the epoch's totals wait for its seal), so
   * the state need not be held until then; resolves once it is stored. Only the returned `commit` makes
   * it the checkpoint `load` returns: a state staged and never committed (a worker killed between the
   * two, a seal that failed) is never restored, and the store clears it away as it does a save's
   * uncommitted state. One checkpoint at a time: the next is staged after this one's commit settled.
   * A store without it has each checkpoint saved whole once its seal is done.
   */
  stage?(seq: number, state: SnapshotState): Promise<StagedCheckpoint<T>>;
  /**
   * The store keeps incremental chains: a checkpoint whose state is a delta (`isSnapshotDelta`) extends
   * the chain of the last one saved, a full state starts a new chain, and `load` returns the chain's full
   * state with its deltas. Without it, the coordinator saves full states only.
   */
  readonly chains?: boolean;
  /**
   * With `chains`: a delta may also extend the chain `load` returned (the store keeps that chain's full
   * state and deltas until a full state of its own supersedes them), so a restored worker's first
   * checkpoint need not be a full one.
   */
  readonly extendsLoaded?: boolean;
}

/** A checkpoint's state stored by `CheckpointStore.stage`, waiting for the rest of it. */
export interface StagedCheckpoint<T> {
  /** Commits the staged state with the rest of the checkpoint: the commit `save` ends with. */
  commit(checkpoint: Omit<Checkpoint<T>, 'state' | 'deltas'>): Promise<void>;
}

/**
 * The last checkpoint holds operator state of another layout than this build's graph reads: an upgrade
 * changed the operators' state. Restoring it would misread every key's history, so the worker stops.
 */
export class CheckpointFormatError extends ConfigurationError<{
  readonly checkpoint: number;
  readonly found: string | null;
  readonly expected: string;
}> {
  override readonly name = 'CheckpointFormatError';
  readonly found: string | undefined;
  readonly expected: string;
  constructor(checkpoint: Checkpoint<unknown>, expected: string) {
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

/**
 * A graph as the coordinator drives it: pulls go in, outputs are buffered until taken as one batch,
 * and totals of what was written are kept per checkpoint.
 */
export interface EpochGraph<P extends Pull, B extends EpochBatch, T> {
  /**
   * Subscribes the graph to `input`; everything it outputs is buffered until `take`. The returned
   * observable errors when a stage fails and completes when the graph has processed the end of input.
   */
  connect(input: Observable<FlowEvent<unknown>>): Observable<unknown>;
  /** Hands a pull to the graph (through `input`) and its buffers; returns how many elements it held. */
  accept(pull: P, input: Observer<FlowEvent<unknown>>): number;
  /** Rows buffered so far: a write starts once `RunCadence.flushRows` are. */
  readonly bufferedRows: number;
  /** Nothing buffered, not even counts: no write is needed. */
  readonly empty: boolean;
  /**
   * Only counts are buffered (records pulled, still held by the graph), no row to store: a write could
   * only restate the epoch's running figures, so one due by time waits for rows (or the epoch's end).
   */
  readonly countsOnly?: boolean;
  /** Takes every buffered output as the batch `flush` of epoch `checkpoint`. */
  take(checkpoint: number, flush: number): B;
  /** Totals before anything was written. */
  initialTotals(): T;
  /** Totals after `written` landed. */
  addTotals(totals: T, written: B): T;
}

/**
 * Hooks into a run for metrics, readiness and operational alerts. All are synchronous except
 * `sinkFailed` and `graphFailed`, which the coordinator awaits before it stops; none may throw.
 */
export interface EpochObserver<P extends Pull, B extends EpochBatch, T> {
  /** The source is open (the job has migrated its stores before): the worker takes work. */
  opened?(): void;
  /** A pull from the source, before it enters the graph. */
  pulled?(pull: P): void;
  /** The source's pending messages, read before each write; undefined when the source cannot tell. */
  consumerLag?(pending: number | undefined): void;
  /** The batch to write instead of `batch` (e.g. with processing-time alerts added). */
  beforeWrite?(batch: B, pending: number | undefined): B;
  /** Wall time of `sinks.write`, successful or not. */
  sinkWrite?(seconds: number, ok: boolean): void;
  /** `sinks.write` failed after the sinks' own retries; the batch is not acknowledged and the run stops. */
  sinkFailed?(error: unknown, batch: B): Promise<void>;
  /**
   * A stage of the graph failed (a `StageError` naming it) in epoch `checkpoint`: its outputs are
   * incomplete, so nothing after the last checkpoint is written past it and the run stops.
   */
  graphFailed?(error: unknown, checkpoint: number): Promise<void>;
  /** A batch of outputs is written (and acknowledged, when the source resumes from its position). */
  flushed?(batch: B): void;
  /** The graph waited this long for the previous write to land before starting the next (backpressure). */
  writeWaited?(seconds: number): void;
  /** The state was serialized for a checkpoint: how long it took and its size in UTF-16 code units. */
  snapshotted?(seconds: number, length: number): void;
  /** The checkpoint is saved and the source acknowledged. */
  checkpointed?(checkpoint: Checkpoint<T>): void;
  /** The run ended (drained, aborted or failed). */
  stopped?(): void;
}
