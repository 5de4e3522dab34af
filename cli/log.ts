/**
 * The CLI's log: JSON lines on stderr through pino, at `$LOG_LEVEL` (trace, debug, info (default), warn,
 * error, fatal, silent), with the worker and its partitions bound to every line once known.
 *
 * No line may carry a secret, whatever a caller passes: every string (message and fields, nested)
 * loses the user-info of any `scheme://user:password@` and secret-looking query parameters, fields
 * named like a secret are replaced, and the values of the credential variables in the environment
 * are masked wherever they appear.
 */
import pino, { type Logger } from 'pino';
import { redactCredentials } from './options.js';

/** Environment variables that hold secrets: their values never reach a log line. */
export const SECRET_VARIABLES = [
  'CLICKHOUSE_PASSWORD',
  'NATS_PASSWORD',
  'NATS_TOKEN',
  'GS_QUERY_PASSWORD',
] as const;

const SECRET_KEY = /pass(word|wd)?$|secret|token|credential|authorization|api_?key/i;
const MASK = '***';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function levelFrom(env: NodeJS.ProcessEnv): string {
  const wanted = env.LOG_LEVEL?.trim().toLowerCase();
  return wanted !== undefined && (LOG_LEVELS as readonly string[]).includes(wanted) ? wanted : 'info';
}

/** A function that masks secrets in any value destined for a log line. */
export function secretScrubber(env: NodeJS.ProcessEnv): (value: unknown) => unknown {
  // Longest first, so a secret containing another is masked whole; very short values would mask noise.
  const secrets = SECRET_VARIABLES.map((name) => env[name])
    .filter((v): v is string => v !== undefined && v.length >= 3)
    .sort((a, b) => b.length - a.length);
  const scrubString = (text: string): string => {
    let out = redactCredentials(text).replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s/?#@"']*@/g, `$1${MASK}@`);
    for (const secret of secrets) out = out.split(secret).join(MASK);
    return out;
  };
  const scrub = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return scrubString(value);
    if (value instanceof Error) return scrub({ name: value.name, message: value.message }, depth);
    if (value === null || typeof value !== 'object' || depth > 8) return value;
    if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value))
      out[key] = SECRET_KEY.test(key) ? MASK : scrub(v, depth + 1);
    return out;
  };
  return (value) => scrub(value, 0);
}

export interface LoggerOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Where lines go; default stderr, written synchronously (a failed command exits right after). */
  readonly destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const env = options.env ?? process.env;
  const scrub = secretScrubber(env);
  return pino(
    {
      level: levelFrom(env),
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        bindings: (bindings) => scrub(bindings) as Record<string, unknown>,
        log: (object) => scrub(object) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((a) => (typeof a === 'string' ? (scrub(a) as string) : a)) as Parameters<typeof method>,
          );
        },
      },
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  );
}

let current: Logger | undefined;

function root(): Logger {
  current ??= createLogger();
  return current;
}

/** Binds fields (worker id, partitions) to every later line. */
export function bindLogger(bindings: Record<string, unknown>): void {
  current = root().child(bindings);
}

type Fields = Record<string, unknown>;

/** The CLI's logger: `logger.warn('msg', { field })`. */
export const logger = {
  debug: (msg: string, fields: Fields = {}) => root().debug(fields, msg),
  info: (msg: string, fields: Fields = {}) => root().info(fields, msg),
  warn: (msg: string, fields: Fields = {}) => root().warn(fields, msg),
  error: (msg: string, fields: Fields = {}) => root().error(fields, msg),
};
