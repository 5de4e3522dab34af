/**
 * How a message source treats pulls that keep failing (a cluster node restarting, a consumer left without
 * a leader, a server that no longer answers): it rides out a short outage, recreates its consumer once the
 * outage lasts, and gives up with a retryable error once it outlasts a bound, so a supervisor restarts the
 * worker. A failing pull is never idleness (a bounded run would end early), so without the bound a worker
 * whose consumer never answered again waited forever, checkpointing nothing new.
 */
import { GreenStreamError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';

export interface PullOutageOptions {
  /** Pulls failing for this long recreate the consumer, once per outage. Default 20 s. */
  readonly reopenAfterMs?: number;
  /** Pulls failing for this long end the run with `SourceUnavailableError` (retryable). Default 90 s. */
  readonly unavailableAfterMs?: number;
  /** The first failure of an outage and the consumer's recreation, for the log. */
  readonly onPullsFailing?: (event: PullsFailing) => void;
}

export interface PullsFailing {
  /** The consumer: `jetstream`, `partition 7`, `repartition`. */
  readonly source: string;
  /** `failing` at the first failed pull of an outage, `reopening` when the consumer is recreated. */
  readonly action: 'failing' | 'reopening';
  /** The client's reason for the last failed pull. */
  readonly reason: string;
  readonly failingForMs: number;
}

export const DEFAULT_REOPEN_AFTER_MS = 20_000;
export const DEFAULT_UNAVAILABLE_AFTER_MS = 90_000;

/** Pulls kept failing past `unavailableAfterMs`: restarting the worker (a fresh connection) may help. */
export class SourceUnavailableError extends GreenStreamError<{
  readonly source: string;
  readonly reason: string;
  readonly failingForMs: number;
}> {
  override readonly name = 'SourceUnavailableError';

  constructor(source: string, reason: string, failingForMs: number) {
    super(`${source}: pulls have failed for ${Math.round(failingForMs / 1000)} s (last: ${reason})`, {
      retryable: true,
      context: { source, reason, failingForMs },
    });
  }
}

export interface PullOutage {
  /**
   * After each pull: `interrupted` is the failed pull's reason, null for a pull that worked (empty or not).
   * `reopen`: recreate the consumer now. Throws `SourceUnavailableError` once the outage outlasts its bound.
   */
  note(interrupted: string | null): 'ok' | 'failing' | 'reopen';
  /** The pause before the next pull, ms: grows with failures in a row, so a consumer failing at once is not hammered. */
  backoffMs(): number;
  /** Waits `backoffMs()`; resolves at once (no timer) while pulls work. */
  backoff(): Promise<void>;
}

export function pullOutage(source: string, now: () => number, options: PullOutageOptions = {}): PullOutage {
  const reopenAfterMs = options.reopenAfterMs ?? DEFAULT_REOPEN_AFTER_MS;
  const unavailableAfterMs = options.unavailableAfterMs ?? DEFAULT_UNAVAILABLE_AFTER_MS;
  let since: number | undefined;
  let reopened = false;
  let failures = 0;
  return {
    note(interrupted) {
      if (interrupted === null) {
        since = undefined;
        reopened = false;
        failures = 0;
        return 'ok';
      }
      const t = now();
      failures += 1;
      if (since === undefined) {
        since = t;
        options.onPullsFailing?.({ source, action: 'failing', reason: interrupted, failingForMs: 0 });
      }
      const failingForMs = t - since;
      if (failingForMs >= unavailableAfterMs)
        throw new SourceUnavailableError(source, interrupted, failingForMs);
      if (!reopened && failingForMs >= reopenAfterMs) {
        reopened = true;
        options.onPullsFailing?.({ source, action: 'reopening', reason: interrupted, failingForMs });
        return 'reopen';
      }
      return 'failing';
    },
    backoffMs() {
      return failures === 0 ? 0 : Math.min(2_000, 100 * 2 ** Math.min(failures - 1, 5));
    },
    backoff() {
      return failures === 0 ? Promise.resolve() : sleep(this.backoffMs());
    },
  };
}
