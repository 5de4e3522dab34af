/**
 * `run --threads N` on the command line: how many graph threads a worker runs, and starting them as
 * `worker_threads` with their settings.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ThreadPlan } from '../pipelines/threaded-job.js';
import { UsageError } from './main.js';
import type { ThreadSettings } from './run-thread.js';

/** Where `--threads` applies: what the run reads and which stages it runs. */
export interface ThreadsContext {
  readonly source: 'files' | 'nats';
  readonly stage: 'all' | 'per-meter' | 'cross-meter';
  readonly replay: boolean;
  /** How many partitions the threads would split (`--upstream-partitions`, default 0-15); read only for N > 1. */
  readonly partitions: () => number;
}

/**
 * The graph threads of a run: `--threads` (`$GS_THREADS`) where it applies (an all-partitions NATS worker),
 * else 1. The default is 1: on the shared 2-core host the second thread measured no shorter wall time and
 * ~25% more CPU (README, "Scaling out"); `--threads <cores>` is the setting to try on a host with idle
 * cores. A files source stays on one thread: its checkpoint is one position in one ordered file list, not
 * per partition, and a meter's files are not tied to a partition a thread could own.
 */
export function threadsOf(flag: number | undefined, context: ThreadsContext): number {
  const applies = context.source === 'nats' && context.stage === 'all' && !context.replay;
  if (flag === undefined || flag === 1) return 1;
  if (!applies) {
    if (context.source === 'files')
      throw new UsageError(
        '--threads applies to the NATS source: a landing folder is read by one thread (give --threads 1)',
      );
    if (context.replay) throw new UsageError('replay runs on one thread: give --threads 1');
    throw new UsageError(
      `--threads runs every stage over every partition: it does not combine with --stage ${context.stage} or --partitions (run one process per partition set)`,
    );
  }
  const partitions = context.partitions();
  if (flag > partitions)
    throw new UsageError(
      `--threads ${flag} is more than the ${partitions} partitions the threads would split`,
    );
  return flag;
}

/** One graph thread per core, up to the partitions: what `--threads` should be on a host with idle cores. */
export function threadsForCores(partitions: number, cores = availableParallelism()): number {
  return Math.max(1, Math.min(cores, partitions));
}

/** Starts a graph thread (`run-thread.js`) with its settings; its stdout and stderr are the process's. */
export function spawnGraphThread(settings: ThreadSettings): Worker {
  return new Worker(new URL('./run-thread.js', import.meta.url), {
    workerData: settings,
    name: `greenstream ${settings.plan.id}`,
  });
}

export type { ThreadPlan };
