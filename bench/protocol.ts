/**
 * How the benchmark's parts talk to the processes that run them. Each measured part runs in a fresh
 * child process so its peak RSS is its own (`maxRSS` never goes down) and chDB, which allows one data
 * directory per process, gets a process of its own.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type HotSpec = { readonly kind: 'chdb' } | { readonly kind: 'server'; readonly url: string };

/** A message a child sends its parent. */
export type ChildMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'progress'; readonly text: string }
  | { readonly type: 'result'; readonly result: unknown }
  | { readonly type: 'failed'; readonly error: string };

/** A message the parent sends a child. */
export type ParentMessage =
  | { readonly type: 'run'; readonly task: string; readonly args: unknown }
  | { readonly type: 'stop' };

export interface ChildOptions {
  /** Extra node flags, e.g. `--cpu-prof`. */
  readonly execArgv?: readonly string[];
  readonly onProgress?: (text: string) => void;
  readonly onReady?: () => void;
}

export interface RunningChild<R> {
  readonly result: Promise<R>;
  /** Asks a long-running task (the live pipeline) to finish and report. */
  stop(): void;
}

/**
 * glibc's settings for the measured processes, as the worker image sets them (`ENV` lines of
 * `deploy/container/Dockerfile`); a setting given in `env` wins.
 * - `MALLOC_ARENA_MAX`: chDB's and DuckDB's native threads would each get an arena of their own.
 * - `MALLOC_MMAP_THRESHOLD_`, bytes: fixed, it keeps array buffers' backing stores over it in mappings
 *   of their own, handed back to the kernel when freed. glibc otherwise raises the threshold to the size
 *   of the first such block freed and carves later ones out of its main arena, which grew to ~420 MB
 *   over the 50,000-meter day and never shrank.
 */
export function allocatorEnv(env: NodeJS.ProcessEnv = process.env): AllocatorEnv {
  return {
    MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '2',
    MALLOC_MMAP_THRESHOLD_: env.MALLOC_MMAP_THRESHOLD_ ?? '131072',
  };
}

export interface AllocatorEnv {
  readonly MALLOC_ARENA_MAX: string;
  readonly MALLOC_MMAP_THRESHOLD_: string;
}

/** The allocator settings every measured process gets. */
export const ALLOCATOR_ENV = allocatorEnv();
/** The measured processes' glibc arenas (reported with the results). */
export const MALLOC_ARENA_MAX = ALLOCATOR_ENV.MALLOC_ARENA_MAX;

const CHILD_ENTRY = fileURLToPath(new URL('./child.js', import.meta.url));

/** Runs `task` in a fresh node process and resolves with what it reports. */
export function runInChild<R>(task: string, args: unknown, options: ChildOptions = {}): RunningChild<R> {
  const child = fork(CHILD_ENTRY, [], {
    execArgv: ['--expose-gc', '--max-old-space-size=6144', ...(options.execArgv ?? [])],
    serialization: 'advanced',
    env: { ...process.env, ...ALLOCATOR_ENV },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const result = new Promise<R>((resolve, reject) => {
    let settled = false;
    child.on('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.type === 'ready') options.onReady?.();
      else if (message.type === 'progress') options.onProgress?.(message.text);
      else if (message.type === 'result') {
        settled = true;
        resolve(message.result as R);
        child.disconnect();
      } else if (message.type === 'failed') {
        settled = true;
        reject(new Error(`bench task ${task} failed: ${message.error}`));
        child.disconnect();
      }
    });
    child.once('exit', (code, signal) => {
      if (!settled)
        reject(new Error(`bench task ${task} exited (${signal ?? `code ${code}`}) without a result`));
    });
  });
  child.send({ type: 'run', task, args } satisfies ParentMessage);
  return {
    result,
    stop: () => {
      if (child.connected) child.send({ type: 'stop' } satisfies ParentMessage);
    },
  };
}

/** Peak RSS of this process so far, MB. */
export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

/** CPU time of this process (user + system) since `since`, ms. */
export function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return Math.round((used.user + used.system) / 1000);
}

export function round(value: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Wall-clock epoch ms with sub-millisecond precision, comparable across processes on one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}
