/** How many bytes of input a source may take into one batch, from the worker's memory budget. */
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

/** `--max-memory <MiB>` (or `$GS_MAX_MEMORY`): a whole number of MiB, at least 64; bytes, or undefined when not given. */
export function parseMaxMemory(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  if (!/^\s*\d+\s*$/.test(text)) throw new RangeError(`must be a whole number of MiB, got "${text}"`);
  const mib = Number(text);
  if (!(Number.isSafeInteger(mib) && mib >= MIN_MAX_MEMORY_MIB))
    throw new RangeError(`must be at least ${MIN_MAX_MEMORY_MIB} MiB, got "${text}"`);
  return mib * 1024 * 1024;
}

/** Below this a worker cannot hold its own code, state and one batch. */
export const MIN_MAX_MEMORY_MIB = 64;
