/**
 * The one error base of GreenStream: every typed failure says whether trying again later can help
 * (`retryable`), carries plain context values that are safe to log (never a credential) and its `cause`.
 * The command line maps classes to exit codes; the runner maps a stage's throw to a `StageError`.
 */

/** Plain values describing where a failure happened: safe to log, never a password or token. */
export type ErrorContext = Readonly<Record<string, string | number | boolean | null | undefined>>;

export interface GreenStreamErrorOptions<C extends object = ErrorContext> {
  /** Trying the same thing again later may succeed (a server down, a timeout); default false. */
  readonly retryable?: boolean;
  readonly context?: C;
  readonly cause?: unknown;
}

export class GreenStreamError<C extends object = ErrorContext> extends Error {
  override readonly name: string = 'GreenStreamError';
  readonly retryable: boolean;
  readonly context: C;

  constructor(message: string, options: GreenStreamErrorOptions<C> = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? false;
    this.context = options.context ?? ({} as C);
  }
}

/**
 * The job cannot start as configured (a bad registry, a checkpoint it must not resume from): nothing was
 * processed, and running it again unchanged fails the same way.
 */
export class ConfigurationError<C extends object = ErrorContext> extends GreenStreamError<C> {
  override readonly name: string = 'ConfigurationError';
}

/**
 * A stage of the graph threw while processing an element, a watermark or the end of input. The stage's
 * outputs for that event are incomplete, so the runner stops without writing or checkpointing past it.
 */
export class StageError extends GreenStreamError<{ readonly stage: string; readonly graph: string }> {
  override readonly name = 'StageError';

  constructor(graph: string, stage: string, cause: unknown) {
    const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(`stage "${stage}" of graph "${graph}" failed: ${reason}`, {
      retryable: false,
      context: { stage, graph },
      cause,
    });
  }

  get stage(): string {
    return this.context.stage;
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
