/**
 * The exit status of a failed command, from the class of what it failed with, so a supervisor can tell
 * "restart later" from "fix something first". The table is documented in README ("Exit codes").
 */

import { FencedError } from '../connectors/lease.js';
import { ConfigurationError, GreenStreamError, StageError } from '../core/errors.js';
import { RuleProfileError } from '../operators/rule-profile.js';

export const EXIT = {
  ok: 0,
  /** Anything not typed: a bug to report. */
  unexpected: 1,
  /** Unknown command or flag, or a flag value that cannot be used. */
  usage: 2,
  /** The job cannot start as configured: registry, rule profile, a checkpoint it must not resume from. */
  configuration: 3,
  /** A stage of the graph threw; nothing past the last checkpoint was kept. */
  stage: 4,
  /** A typed failure that will recur unchanged, e.g. a store refusing a write. */
  refused: 5,
  /** A newer worker took this worker's id over (its lease): this one must not restart as it is. */
  fenced: 6,
  /** A typed failure that may pass (a server down, a timeout): restart later (sysexits EX_TEMPFAIL). */
  retryable: 75,
} as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof StageError) return EXIT.stage;
  if (error instanceof FencedError) return EXIT.fenced;
  if (error instanceof ConfigurationError || error instanceof RuleProfileError) return EXIT.configuration;
  if (error instanceof GreenStreamError) return error.retryable ? EXIT.retryable : EXIT.refused;
  return EXIT.unexpected;
}
