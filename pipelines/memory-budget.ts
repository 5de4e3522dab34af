/**
 * The worker's memory budget (`--max-memory`): how many bytes of input a source may take into one batch,
 * and the shares of it that bound the engines embedded in the process (chDB, DuckDB).
 */
import { ConfigurationError } from '../core/index.js';
import { defaultBatchBytes } from './files-source.js';

export interface BatchBudgetOptions {
  /** Payload bytes per batch; default {@link defaultBatchBytes} (from the heap limit). */
  readonly maxBytesPerBatch?: number;
  /**
   * The worker's memory budget (`--max-memory`), bytes. While the process's resident set is above it,
   * a source takes one message per batch, so the pipeline drains what it holds before taking more.
   */
  readonly memoryLimitBytes?: number;
  /** The process's resident set size, bytes; `process.memoryUsage.rss` unless a test measures otherwise. */
  readonly rss?: () => number;
}

/** The byte budget of each source batch given `--max-memory <MiB>`: the same 1/64 rule as the heap limit. */
export function batchBytesForMemory(maxMemoryBytes: number): number {
  return defaultBatchBytes(maxMemoryBytes);
}

/**
 * The byte budget of the next batch: the configured one, or 1 (one message, however large) while the
 * resident set exceeds the memory budget.
 */
export function batchBudget(options: BatchBudgetOptions): () => number {
  const bytes = options.maxBytesPerBatch ?? defaultBatchBytes();
  const limit = options.memoryLimitBytes;
  if (limit === undefined) return () => bytes;
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  return () => (rss() > limit ? 1 : bytes);
}

/** Below this a worker cannot hold its own code, state and one batch. */
export const MIN_MAX_MEMORY_MIB = 64;

const MiB = 1024 * 1024;

/** The budget the engines' shares come from when `--max-memory` is not given: issue 15's 1.5 GB. */
export const DEFAULT_MEMORY_BUDGET_BYTES = 1536 * MiB;

/**
 * The engines' shares of the budget, each applied through the engine's own setting; the rest is the
 * JavaScript heap, the graph's typed state, the code (~0.25 GB of mapped libraries) and the buffers of
 * a batch in flight. Measured on the 50,000-meter day (bench pipeline part, `GS_BENCH_MEMORY_PROBE=1`):
 * chDB's own tracker at most 60 MB, DuckDB's buffer manager up to 320 MB at a seal, memory no holder
 * accounts for ~0.8 GB without these limits and ~0.2-0.4 GB with them, the JavaScript heap and array
 * buffers 1.1-1.6 GB (at the peak of session 13's probe: heap 0.72 GB, array buffers 0.47 GB, of which
 * a checkpoint's copies of the typed state ~0.1 GB, held until its save has stored them).
 * - `chdb`: `max_memory_usage` of every chDB query and insert (an insert over it fails and is retried);
 * - `duckdb`: DuckDB's `memory_limit` (the seal's sort spills to the lake's temporary folder beyond it;
 *   what cannot spill fails the seal, retried as a failed write), its allocator flushed after each
 *   task past an eighth of it and purged by jemalloc's background threads between seals, and one
 *   thread (a seal's sort holds memory in every thread at once).
 */
export const ENGINE_SHARES = { chdb: 0.25, duckdb: 0.25 } as const;

/**
 * Below these an engine cannot do one batch's work: DuckDB's seal of a 200,000-row spool part (the job's
 * `coldRows`) runs out of memory at 96 MiB with two threads and needs 128 MiB (1.6× the time of an
 * unbounded seal); chDB inserts 100,000 rows at a time.
 */
export const ENGINE_FLOORS_BYTES = { chdb: 64 * MiB, duckdb: 192 * MiB } as const;

/** What each embedded engine may use, bytes. */
export interface EngineMemory {
  readonly budgetBytes: number;
  readonly chdbBytes: number;
  readonly duckdbBytes: number;
}

export class MemoryBudgetError extends ConfigurationError<{ readonly budgetBytes: number }> {
  override readonly name = 'MemoryBudgetError';
}

/**
 * The engines' shares of `budgetBytes`. A budget too small for an engine's floor gives the engine its
 * floor (the worker then runs over budget, slower but whole: batches shrink, see {@link batchBudget})
 * rather than failing every write; a budget that is no size at all is a {@link MemoryBudgetError}.
 */
export function engineMemory(budgetBytes: number = DEFAULT_MEMORY_BUDGET_BYTES): EngineMemory {
  if (!Number.isSafeInteger(budgetBytes) || budgetBytes < MIN_MAX_MEMORY_MIB * MiB) {
    throw new MemoryBudgetError(
      `The memory budget must be a whole number of bytes of at least ${MIN_MAX_MEMORY_MIB} MiB, got ${budgetBytes}`,
      { context: { budgetBytes } },
    );
  }
  const share = (fraction: number, floor: number): number =>
    Math.max(floor, Math.floor((budgetBytes * fraction) / MiB) * MiB);
  return {
    budgetBytes,
    chdbBytes: share(ENGINE_SHARES.chdb, ENGINE_FLOORS_BYTES.chdb),
    duckdbBytes: share(ENGINE_SHARES.duckdb, ENGINE_FLOORS_BYTES.duckdb),
  };
}
