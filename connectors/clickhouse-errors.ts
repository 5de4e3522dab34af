/**
 * Typed failures of the ClickHouse hot store, and the rule that sorts a driver error into
 * "try again later" or "this will never work".
 *
 * The pipeline reacts to the class, not to messages: a {@link SinkUnavailableError} means the
 * store could not be reached after the retries (stop, do not acknowledge, resume later); a
 * {@link SinkRejectedError} means the store answered and refused (bad SQL, a type error, a
 * row that cannot be encoded): retrying would fail the same way.
 */

import { GreenStreamError } from '../core/errors.js';

export type HotStoreEngine = 'server' | 'chdb';
export type HotStoreOperation = 'connect' | 'migrate' | 'query' | 'command' | 'insert';

export interface HotStoreErrorContext {
  readonly engine: HotStoreEngine;
  /** Where the store is, without credentials: `http://host:port` or the chDB path. */
  readonly target: string;
  readonly operation: HotStoreOperation;
  readonly table?: string;
  /** Attempts made, the first included. */
  readonly attempts: number;
  /** ClickHouse error code when the engine gave one (e.g. 62 for a syntax error). */
  readonly clickhouseCode?: number;
}

export abstract class HotStoreError extends GreenStreamError<HotStoreErrorContext> {
  abstract readonly code: 'SINK_UNAVAILABLE' | 'SINK_REJECTED';

  constructor(message: string, context: HotStoreErrorContext, cause: unknown, retryable: boolean) {
    super(message, { context, cause, retryable });
  }
}

/** Transient failures outlasted the retries: the store is unreachable, overloaded or timing out. */
export class SinkUnavailableError extends HotStoreError {
  override readonly name = 'SinkUnavailableError';
  readonly code = 'SINK_UNAVAILABLE';
  constructor(message: string, context: HotStoreErrorContext, cause: unknown) {
    super(message, context, cause, true);
  }
}

/** The store refused the request; retrying cannot help. */
export class SinkRejectedError extends HotStoreError {
  override readonly name = 'SinkRejectedError';
  readonly code = 'SINK_REJECTED';
  constructor(message: string, context: HotStoreErrorContext, cause: unknown) {
    super(message, context, cause, false);
  }
}

/**
 * A non-200 answer from the ClickHouse HTTP interface (or from a proxy in front of it). The
 * store reads error responses itself so that the status code is known when classifying.
 */
export class ClickHouseHttpError extends Error {
  override readonly name = 'ClickHouseHttpError';
  readonly status: number;
  readonly clickhouseCode?: number;

  constructor(status: number, body: string, clickhouseCode?: number) {
    // A proxy's error page can be large; the first couple of KB say what happened.
    const text = body.trim();
    const shown = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
    super(shown === '' ? `HTTP ${status}` : `HTTP ${status}: ${shown}`);
    this.status = status;
    if (clickhouseCode !== undefined) this.clickhouseCode = clickhouseCode;
  }
}

export interface FailureClass {
  readonly transient: boolean;
  readonly clickhouseCode?: number;
}

/**
 * ClickHouse error codes that describe the server's state rather than the request: timeouts,
 * overload, memory pressure, too many parts (back off), network trouble between replicas,
 * a cancelled query, and the POCO network exceptions (1000).
 */
const TRANSIENT_CLICKHOUSE_CODES: ReadonlySet<number> = new Set([
  159, // TIMEOUT_EXCEEDED
  160, // TOO_SLOW
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  285, // TOO_FEW_LIVE_REPLICAS
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  473, // DEADLOCK_AVOIDED
  999, // KEEPER_EXCEPTION
  1000, // POCO_EXCEPTION
]);

const TRANSIENT_SOCKET_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'CHDB_TIMEOUT',
  'CHDB_CONNECTION',
]);

// 26.x: "Code: 62. DB::Exception: …"; 18.16: "Code: 62, e.displayText() = DB::Exception: …".
const CLICKHOUSE_CODE_IN_MESSAGE = /\bCode: (\d+)[.,]/;

function clickhouseCodeOf(error: Error & { code?: unknown; clickhouseCode?: unknown }): number | undefined {
  if (typeof error.clickhouseCode === 'number') return error.clickhouseCode;
  // @clickhouse/client's ClickHouseError carries the numeric code as a string.
  if (typeof error.code === 'string' && /^\d+$/.test(error.code)) return Number(error.code);
  const match = CLICKHOUSE_CODE_IN_MESSAGE.exec(error.message);
  if (match) return Number(match[1]);
  const cause = error.cause;
  return cause instanceof Error ? clickhouseCodeOf(cause) : undefined;
}

/** Statuses that say "not now" rather than "not this": gateway trouble, overload, timeouts. */
function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/**
 * Sorts a driver error. A ClickHouse error code decides when there is one (18.16 answers HTTP
 * 500 for every exception, so the status alone cannot tell a syntax error from an overload);
 * otherwise the HTTP status does (a proxy's 502/503/504 page has no ClickHouse code). Socket
 * errors and the client's request timeout are transient. Anything else was raised locally
 * (argument validation, encoding) and would fail again, so it is not retried.
 */
export function classifyFailure(error: unknown): FailureClass {
  if (!(error instanceof Error)) return { transient: false };
  const clickhouseCode = clickhouseCodeOf(error);
  if (clickhouseCode !== undefined) {
    return { transient: TRANSIENT_CLICKHOUSE_CODES.has(clickhouseCode), clickhouseCode };
  }
  if (error instanceof ClickHouseHttpError) return { transient: isTransientStatus(error.status) };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_SOCKET_CODES.has(code)) return { transient: true };
  return { transient: /^Timeout error\.?$|socket hang up|other side closed/i.test(error.message) };
}
