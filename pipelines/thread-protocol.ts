/**
 * The messages between a `--threads` worker's main thread and its graph threads: requests a thread's sink
 * and checkpoint proxies send (each answered once, in order), the thread's end, and failures carried
 * across the thread boundary with their class, so the process exits with the status the error would
 * have given in one thread.
 */
import type { MessagePort } from 'node:worker_threads';
import { FencedError } from '../connectors/lease.js';
import { ConfigurationError, type ErrorContext, GreenStreamError, StageError } from '../core/errors.js';
import type { Checkpoint, CheckpointStore, OutputBatch, PipelineSinks, RunTotals } from './runner.js';

/** What a graph thread asks of the main thread; `id` pairs the answer. */
export type ThreadRequest =
  | { readonly type: 'load'; readonly id: number; readonly sourceName: string }
  | { readonly type: 'rollback'; readonly id: number; readonly committed: number }
  | { readonly type: 'write'; readonly id: number; readonly batch: OutputBatch }
  | { readonly type: 'seal'; readonly id: number; readonly checkpoint: number }
  | { readonly type: 'save'; readonly id: number; readonly checkpoint: Checkpoint };

/** Everything a graph thread sends: requests, its end, or its failure. */
export type ThreadMessage =
  | ThreadRequest
  | { readonly type: 'done'; readonly totals: RunTotals; readonly drained: boolean }
  /** A live thread caught up without having read one record (its partitions carry none yet). */
  | { readonly type: 'empty' }
  | { readonly type: 'failed'; readonly error: SerializedError };

/** What the main thread sends a graph thread: answers, and the stop. */
export type MainMessage =
  | {
      readonly type: 'reply';
      readonly id: number;
      readonly value?: unknown;
      readonly error?: SerializedError;
    }
  | { readonly type: 'stop' };

/** An error as it crosses threads: the class decides the exit status (`cli/exit-codes.ts`). */
export interface SerializedError {
  readonly kind: 'stage' | 'fenced' | 'configuration' | 'typed' | 'plain';
  readonly name: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly context: Record<string, unknown>;
  readonly stack?: string;
}

export function serializeError(error: unknown): SerializedError {
  const e = error instanceof Error ? error : new Error(String(error));
  const typed = e instanceof GreenStreamError ? e : undefined;
  const kind =
    e instanceof StageError
      ? 'stage'
      : e instanceof FencedError
        ? 'fenced'
        : e instanceof ConfigurationError
          ? 'configuration'
          : typed !== undefined
            ? 'typed'
            : 'plain';
  return {
    kind,
    name: e.name,
    message: e.message,
    retryable: typed?.retryable ?? false,
    context: { ...((typed?.context as Record<string, unknown> | undefined) ?? {}) },
    ...(e.stack === undefined ? {} : { stack: e.stack }),
  };
}

/**
 * The error again, of its class (a stage's failure stays a `StageError`, a fenced write a `FencedError`),
 * its message prefixed with `where` (which thread) when given.
 */
export function deserializeError(s: SerializedError, where?: string): Error {
  const context = s.context as ErrorContext;
  let error: Error;
  if (s.kind === 'stage') {
    const cause = new Error(s.message);
    error = new StageError(String(context.graph ?? 'meter-quality'), String(context.stage ?? '?'), cause);
    error.message = s.message;
  } else if (s.kind === 'fenced')
    error = new FencedError(s.message, s.context as Readonly<Record<string, string | number>>);
  else if (s.kind === 'configuration')
    error = new ConfigurationError(s.message, { context, retryable: s.retryable });
  else if (s.kind === 'typed') error = new GreenStreamError(s.message, { context, retryable: s.retryable });
  else error = new Error(s.message);
  if (s.kind !== 'stage' && s.kind !== 'fenced' && s.kind !== 'configuration' && s.kind !== 'typed')
    Object.defineProperty(error, 'name', { value: s.name });
  if (where !== undefined) error.message = `${where}: ${error.message}`;
  if (s.stack !== undefined)
    error.stack = `${error.name}: ${error.message}\n${s.stack.split('\n').slice(1).join('\n')}`;
  return error;
}

/** The thread's side of the requests: one call per request, answered in the order the main thread ends them. */
export class ThreadRequester {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(private readonly port: Pick<MessagePort, 'postMessage'>) {}

  /** Feeds an answer from the main thread. */
  answer(message: MainMessage & { type: 'reply' }): void {
    const w = this.waiting.get(message.id);
    if (w === undefined) return;
    this.waiting.delete(message.id);
    if (message.error !== undefined) w.reject(deserializeError(message.error));
    else w.resolve(message.value);
  }

  /** Posts at once (before any await), so the main thread sees requests in call order. */
  request<T>(message: DistributiveOmit<ThreadRequest, 'id'>): Promise<T> {
    const id = this.nextId++;
    const answered = new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.port.postMessage({ ...message, id });
    return answered;
  }

  /** Every request still waiting fails (the main thread went away). */
  failAll(error: Error): void {
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * The graph thread's sinks: every call is carried out by the main thread's stores and resolves once it
 * landed there, so the thread's coordinator keeps its order (write, then acknowledge; seal, then save).
 * Rows go by structured clone: measured cheaper on the receiving main thread than Arrow IPC bytes that
 * would have to become rows again for the sinks (see README, "Scaling out").
 */
export function sinkProxy(requester: ThreadRequester): PipelineSinks {
  return {
    rollback: (committed) => requester.request<void>({ type: 'rollback', committed }),
    write: (batch) => requester.request<void>({ type: 'write', batch }),
    // Posted before any await: the main thread takes the epoch's lake buffers before the next write.
    seal: (checkpoint) => requester.request<void>({ type: 'seal', checkpoint }),
  };
}

/** The graph thread's checkpoints: loaded and saved by the main thread under the thread's own key. */
export function checkpointProxy(requester: ThreadRequester, sourceName: string): CheckpointStore {
  return {
    load: async () => (await requester.request<Checkpoint | null>({ type: 'load', sourceName })) ?? undefined,
    save: (checkpoint) => requester.request<void>({ type: 'save', checkpoint }),
  };
}
