/**
 * Read-only queries on the embedded chDB store of a running worker, in the shape of ClickHouse's HTTP
 * interface, so `@clickhouse/client` (`createClient({ url })`), `curl` and Grafana's ClickHouse data
 * source can point at the worker's HTTP endpoint:
 * - `GET /?query=…` or `POST /` with the query in the body (after the `query` parameter's text, as
 *   ClickHouse does), `database` and `default_format` parameters, `param_<name>` query parameters, a
 *   `FORMAT` clause; `GET /` and `GET /ping` answer `Ok.`;
 * - answers carry `X-ClickHouse-Query-Id`, `-Format`, `-Timezone` and `-Summary`; errors carry
 *   ClickHouse's `Code: N. DB::Exception: … (TYPE)` text, `X-ClickHouse-Exception-Code` and a 4xx/5xx
 *   status, which clients parse as they would a server's; `enable_http_compression=1` with
 *   `Accept-Encoding: gzip` compresses the answer.
 *
 * Only what `read-only-sql.ts` accepts runs, on connections of their own to the same data directory
 * (chDB lets several connections of one process share its folder; each runs one query at a time, and
 * writes on the pipeline's connection go on meanwhile). Each connection is set up once with the limits
 * (rows, bytes, seconds, memory, threads) and then `readonly = 1`, after which the engine itself refuses
 * writes and any change of those settings; settings in the request are therefore refused too, apart
 * from the HTTP interface's own. A connection on which a query failed is replaced (see `run`). Peers
 * other than loopback need the password, when one is set.
 */

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { type ChdbResult, Session } from 'chdb';
import { sqlIdent } from '../codecs/sql.js';
import { GreenStreamError } from '../core/errors.js';
import { checkReadOnlyStatement } from './read-only-sql.js';

export interface QueryLimits {
  /** `max_result_rows` (overflow throws). */
  readonly maxResultRows: number;
  /** `max_result_bytes`: the result is held in memory before it is sent. */
  readonly maxResultBytes: number;
  /** `max_execution_time`, seconds. */
  readonly maxExecutionSeconds: number;
  /** `max_memory_usage` of one query. */
  readonly maxMemoryBytes: number;
  /** `max_threads` of one query: the pipeline shares the cores. */
  readonly maxThreads: number;
  /** Queries running at once (one engine connection each). */
  readonly concurrency: number;
  /** Queries waiting for a connection before new ones are refused. */
  readonly queueLength: number;
  /** Largest request body accepted. */
  readonly maxQueryBytes: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = {
  maxResultRows: 1_000_000,
  maxResultBytes: 128 * 1024 * 1024,
  maxExecutionSeconds: 30,
  maxMemoryBytes: 1024 * 1024 * 1024,
  maxThreads: 1,
  concurrency: 2,
  queueLength: 32,
  maxQueryBytes: 1024 * 1024,
};

/** One answered request, for metrics. */
export interface QueryEvent {
  readonly outcome: 'ok' | 'refused' | 'error';
  readonly seconds: number;
  /** Result rows and bytes as the engine counted them (0 when the query failed). */
  readonly rows: number;
  readonly bytes: number;
  /** ClickHouse error code of a refusal or failure. */
  readonly code?: number;
}

export interface QueryEndpointOptions {
  /** The chDB data directory the worker holds. */
  readonly path: string;
  /** Database of queries that name none (ClickHouse's would be `default`; the store's is more useful). */
  readonly database: string;
  readonly limits?: Partial<QueryLimits>;
  /** Required from peers that are not loopback (basic auth, `X-ClickHouse-Key` or `password=`); without it they are refused. */
  readonly password?: string;
  /** Sent as `X-GreenStream-Owner` on `/ping` (see `chdb-lock.ts`). */
  readonly ownerNonce?: string;
  readonly onQuery?: (event: QueryEvent) => void;
}

export interface QueryEndpoint {
  /** Opens the engine connections; call once the worker holds the folder. Queries before get 503. */
  open(): Promise<void>;
  /** Answers `/` and `/ping`; other paths are the caller's. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Refuses new queries, waits for running ones, closes the connections. */
  close(): Promise<void>;
}

export class QueryEndpointError extends GreenStreamError<{ readonly path: string }> {
  override readonly name = 'QueryEndpointError';
  constructor(
    message: string,
    context: { readonly path: string },
    options: { readonly cause?: unknown; readonly retryable?: boolean } = {},
  ) {
    super(message, { retryable: options.retryable ?? false, context, cause: options.cause });
  }
}

/** URL parameters of the HTTP interface itself, not settings of the query. */
const HTTP_PARAMETERS = new Set([
  'query',
  'query_id',
  'database',
  'default_format',
  'user',
  'password',
  'quota_key',
  'session_id',
  'session_timeout',
  'session_check',
  'compress',
  'decompress',
  'enable_http_compression',
  'http_zlib_compression_level',
  'wait_end_of_query',
  'send_progress_in_http_headers',
  'http_headers_progress_interval_ms',
  'buffer_size',
  'role',
  'stacktrace',
  'add_http_cors_header',
  'extremes',
]);

/** Settings a client may send that the endpoint's own limits already bound: ignored, never raised. */
const BOUNDED_SETTINGS = new Set([
  'readonly',
  'max_result_rows',
  'max_result_bytes',
  'result_overflow_mode',
  'max_execution_time',
  'timeout_overflow_mode',
  'max_memory_usage',
  'max_threads',
]);

const ERROR_TYPES: Readonly<Record<number, string>> = {
  48: 'NOT_IMPLEMENTED',
  62: 'SYNTAX_ERROR',
  81: 'UNKNOWN_DATABASE',
  164: 'READONLY',
  202: 'TOO_MANY_SIMULTANEOUS_QUERIES',
  210: 'NETWORK_ERROR',
  307: 'TOO_LARGE_STRING_SIZE',
  497: 'ACCESS_DENIED',
  516: 'AUTHENTICATION_FAILED',
};

/** HTTP statuses as ClickHouse's HTTP handler gives them for these codes; others are 500. */
function httpStatusOf(code: number): number {
  switch (code) {
    case 164:
    case 497:
    case 516:
      return 403;
    case 60: // UNKNOWN_TABLE
    case 81: // UNKNOWN_DATABASE
    case 46: // UNKNOWN_FUNCTION
    case 47: // UNKNOWN_IDENTIFIER
      return 404;
    case 48:
    case 62:
    case 73: // UNKNOWN_FORMAT
    case 115: // UNKNOWN_SETTING
    case 36: // BAD_ARGUMENTS
    case 307:
      return 400;
    case 202:
    case 210:
      return 503;
    default:
      return 500;
  }
}

class HttpRefusal extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

interface Pooled {
  readonly session: Session;
  database: string | undefined;
}

export function createQueryEndpoint(options: QueryEndpointOptions): QueryEndpoint {
  const limits: QueryLimits = { ...DEFAULT_QUERY_LIMITS, ...options.limits };
  for (const [name, value] of Object.entries(limits)) {
    if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`query limit ${name} must be positive`);
  }
  sqlIdent(options.database);
  const idle: Pooled[] = [];
  const all: Pooled[] = [];
  const waiting: ((pooled: Pooled) => void)[] = [];
  const running = new Set<Promise<unknown>>();
  let state: 'new' | 'opening' | 'open' | 'closed' = 'new';

  // Limits first: once `readonly = 1` is set nothing on the connection can change them.
  const setup =
    `SET max_result_rows = ${limits.maxResultRows}, result_overflow_mode = 'throw', ` +
    `max_result_bytes = ${limits.maxResultBytes}, max_execution_time = ${limits.maxExecutionSeconds}, ` +
    `timeout_overflow_mode = 'throw', max_memory_usage = ${limits.maxMemoryBytes}, ` +
    `max_threads = ${limits.maxThreads}; SET readonly = 1`;

  async function connect(): Promise<Pooled> {
    const session = new Session(options.path);
    try {
      await session.queryAsync(setup);
    } catch (error) {
      session.close();
      throw error;
    }
    return { session, database: undefined };
  }

  async function open(): Promise<void> {
    if (state !== 'new') return;
    state = 'opening';
    try {
      for (let k = 0; k < limits.concurrency; k++) all.push(await connect());
    } catch (error) {
      for (const pooled of all.splice(0)) pooled.session.close();
      state = 'closed';
      throw new QueryEndpointError(
        `cannot open query connections on the chDB folder ${options.path}: ${(error as Error).message}`,
        { path: options.path },
        { cause: error },
      );
    }
    idle.push(...all);
    state = 'open';
  }

  function acquire(): Promise<Pooled> {
    const pooled = idle.pop();
    if (pooled !== undefined) return Promise.resolve(pooled);
    if (waiting.length >= limits.queueLength) {
      throw new HttpRefusal(
        202,
        `Too many simultaneous queries: ${limits.concurrency} running and ${waiting.length} waiting`,
      );
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  function release(pooled: Pooled): void {
    const next = waiting.shift();
    if (next !== undefined) next(pooled);
    else idle.push(pooled);
  }

  async function run(
    statement: string,
    format: string,
    database: string,
    params: Record<string, string>,
  ): Promise<ChdbResult> {
    let pooled = await acquire();
    try {
      if (pooled.database !== database) {
        await pooled.session.queryAsync(`USE ${sqlIdent(database)}`);
        pooled.database = database;
      }
      return Object.keys(params).length > 0
        ? await pooled.session.queryBindAsync(statement, params, { format })
        : await pooled.session.queryAsync(statement, { format });
    } catch (error) {
      // chDB 26.7 hands the output a failed query had already written (e.g. the start of a JSON
      // document before a row limit hit) to the NEXT query on the same connection: the connection is
      // replaced rather than trusted again.
      pooled = await replace(pooled);
      throw error;
    } finally {
      release(pooled);
    }
  }

  async function replace(broken: Pooled): Promise<Pooled> {
    broken.session.close();
    const index = all.indexOf(broken);
    try {
      const fresh = await connect();
      if (index >= 0) all[index] = fresh;
      return fresh;
    } catch {
      // The folder is going away (the worker stops): the broken connection stays closed; a query that
      // gets it fails with chDB's "closed" error.
      return broken;
    }
  }

  async function answer(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const started = performance.now();
    const queryId = url.searchParams.get('query_id') || randomUUID();
    const headers: Record<string, string> = {
      'X-ClickHouse-Query-Id': queryId,
      'X-ClickHouse-Timezone': 'UTC',
      'X-ClickHouse-Server-Display-Name': 'greenstream',
    };
    const done = (event: Omit<QueryEvent, 'seconds'>) =>
      options.onQuery?.({ ...event, seconds: (performance.now() - started) / 1000 });
    try {
      authorize(req, url, options.password);
      const body = await readBody(req, limits.maxQueryBytes);
      const text = [url.searchParams.get('query') ?? '', body].filter((part) => part !== '').join('\n');
      const { params } = requestSettings(url);
      const check = checkReadOnlyStatement(text);
      if (!check.ok) throw new HttpRefusal(check.code, check.reason);
      if (state !== 'open') {
        throw new HttpRefusal(
          210,
          state === 'closed'
            ? 'The worker is stopping and no longer answers queries'
            : 'The worker has not opened its store yet: retry in a moment',
        );
      }
      const format = check.format ?? url.searchParams.get('default_format') ?? 'TabSeparated';
      const database =
        url.searchParams.get('database') ?? headerValue(req, 'x-clickhouse-database') ?? options.database;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
        throw new HttpRefusal(81, `Database ${JSON.stringify(database)} is not a plain identifier`);
      }
      const work = run(check.statement, format, database, params);
      running.add(work);
      let result: ChdbResult;
      try {
        result = await work;
      } finally {
        running.delete(work);
      }
      const bytes = Buffer.from(result.bytes());
      const elapsedNs = Math.round((performance.now() - started) * 1e6);
      headers['X-ClickHouse-Format'] = format;
      // chDB reports the result's rows and bytes only (its `rowsRead`), not what the query scanned.
      headers['X-ClickHouse-Summary'] = JSON.stringify({
        read_rows: String(result.rowsRead),
        read_bytes: String(result.bytesRead),
        written_rows: '0',
        written_bytes: '0',
        total_rows_to_read: '0',
        result_rows: String(result.rowsRead),
        result_bytes: String(result.bytesRead),
        elapsed_ns: String(elapsedNs),
      });
      headers['Content-Type'] = contentTypeOf(format);
      send(req, res, url, 200, bytes, headers);
      done({ outcome: 'ok', rows: result.rowsRead, bytes: result.bytesRead });
    } catch (error) {
      const refusal = error instanceof HttpRefusal;
      const message = refusal ? error.message : (error as Error).message;
      const code = refusal ? error.code : Number(/Code: (\d+)/.exec(message)?.[1] ?? 1001);
      const type =
        ERROR_TYPES[code] ?? (/\(([A-Z][A-Z0-9_]{2,})\)\s*$/.exec(message)?.[1] || 'STD_EXCEPTION');
      const text = refusal
        ? `Code: ${code}. DB::Exception: ${message}. (${type})\n`
        : `${message.trimEnd()}\n`;
      headers['X-ClickHouse-Exception-Code'] = String(code);
      headers['Content-Type'] = 'text/plain; charset=UTF-8';
      send(req, res, url, httpStatusOf(code), Buffer.from(text, 'utf8'), headers);
      done({ outcome: refusal ? 'refused' : 'error', rows: 0, bytes: 0, code });
    }
  }

  return {
    open,
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://endpoint');
      const headers: Record<string, string> =
        options.ownerNonce === undefined ? {} : { 'X-GreenStream-Owner': options.ownerNonce };
      if (
        url.pathname === '/ping' ||
        (url.pathname === '/' && req.method !== 'POST' && !url.searchParams.has('query'))
      ) {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          send(req, res, url, 405, Buffer.from('method not allowed\n'), { ...headers, Allow: 'GET, HEAD' });
          return;
        }
        send(req, res, url, 200, Buffer.from('Ok.\n'), {
          ...headers,
          'Content-Type': 'text/html; charset=UTF-8',
        });
        return;
      }
      if (req.method !== 'GET' && req.method !== 'POST') {
        send(req, res, url, 405, Buffer.from('method not allowed\n'), { Allow: 'GET, POST' });
        return;
      }
      void answer(req, res, url);
    },
    async close() {
      if (state === 'closed') return;
      state = 'closed';
      await Promise.allSettled([...running]);
      for (const pooled of all.splice(0)) pooled.session.close();
      idle.length = 0;
    },
  };
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function authorize(req: IncomingMessage, url: URL, password: string | undefined): void {
  const refusal = peerRefusal(req.socket.remoteAddress, req.headers, url.searchParams, password);
  if (refusal !== undefined) throw new HttpRefusal(516, refusal);
}

/**
 * Why a peer may not query, or undefined when it may: loopback peers always may; others only with the
 * password, given as basic auth, `X-ClickHouse-Key` or `password=` (as ClickHouse takes it).
 */
export function peerRefusal(
  remoteAddress: string | undefined,
  headers: IncomingMessage['headers'],
  params: URLSearchParams,
  password: string | undefined,
): string | undefined {
  if (LOOPBACK.test(remoteAddress ?? '')) return undefined;
  if (password === undefined) {
    return 'The worker answers queries from loopback only (set GS_QUERY_PASSWORD to serve other hosts)';
  }
  const header = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const basic = /^Basic\s+(.+)$/i.exec(header('authorization') ?? '');
  const given =
    header('x-clickhouse-key') ??
    params.get('password') ??
    (basic ? Buffer.from(basic[1]!, 'base64').toString('utf8').split(':').slice(1).join(':') : undefined);
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return given !== undefined && timingSafeEqual(digest(given), digest(password))
    ? undefined
    : 'Authentication failed: password is incorrect';
}

function requestSettings(url: URL): { params: Record<string, string> } {
  const params: Record<string, string> = {};
  for (const key of ['compress', 'decompress']) {
    if (url.searchParams.get(key) === '1') {
      // ClickHouse's own block compression (LZ4 framing); clients fall back to none or to gzip.
      throw new HttpRefusal(
        48,
        `${key}=1 (ClickHouse block compression) is not supported: use enable_http_compression=1`,
      );
    }
  }
  for (const [key, value] of url.searchParams) {
    if (key.startsWith('param_')) params[key.slice('param_'.length)] = unescapeParameter(value);
    else if (HTTP_PARAMETERS.has(key) || BOUNDED_SETTINGS.has(key)) continue;
    else
      throw new HttpRefusal(
        164,
        `Cannot modify '${key.slice(0, 100)}' setting in readonly mode: the worker's query endpoint takes no settings`,
      );
  }
  return { params };
}

const PARAMETER_ESCAPES: Readonly<Record<string, string>> = {
  n: '\n',
  t: '\t',
  r: '\r',
  b: '\b',
  f: '\f',
  '0': '\0',
  a: '\u0007',
  v: '\v',
  e: '\u001b',
};

/**
 * A `param_<name>` value as the HTTP interface sends it, in the escaped text form (`it\'s`), made the
 * plain value that chDB's binding takes (and escapes itself).
 */
function unescapeParameter(value: string): string {
  return value.replace(/\\(x[0-9A-Fa-f]{2}|.)/gs, (_, ch: string) =>
    ch.length === 3 ? String.fromCharCode(Number.parseInt(ch.slice(1), 16)) : (PARAMETER_ESCAPES[ch] ?? ch),
  );
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const type = headerValue(req, 'content-type') ?? '';
  if (type.startsWith('multipart/')) {
    throw new HttpRefusal(
      48,
      'Query parameters in a multipart body are not supported: send them as param_<name>',
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new HttpRefusal(307, `The query is larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  let body = Buffer.concat(chunks);
  const encoding = headerValue(req, 'content-encoding');
  try {
    if (encoding === 'gzip') body = gunzipSync(body, { maxOutputLength: maxBytes });
    else if (encoding === 'deflate') body = inflateSync(body, { maxOutputLength: maxBytes });
    else if (encoding !== undefined && encoding !== 'identity')
      throw new HttpRefusal(48, `Content-Encoding ${encoding.slice(0, 40)} is not supported`);
  } catch (error) {
    if (error instanceof HttpRefusal) throw error;
    throw new HttpRefusal(307, `Cannot decompress the query: ${(error as Error).message}`);
  }
  return body.toString('utf8');
}

function contentTypeOf(format: string): string {
  const name = format.toLowerCase();
  if (name.startsWith('json')) return 'application/json; charset=UTF-8';
  if (name.startsWith('csv')) return 'text/csv; charset=UTF-8; header=absent';
  if (name.startsWith('tabseparated') || name.startsWith('tsv'))
    return 'text/tab-separated-values; charset=UTF-8';
  if (name.startsWith('pretty') || name === 'vertical' || name === 'markdown')
    return 'text/plain; charset=UTF-8';
  return 'application/octet-stream';
}

function send(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  status: number,
  body: Buffer,
  headers: Record<string, string>,
): void {
  let payload = body;
  const compress =
    url.searchParams.get('enable_http_compression') === '1' &&
    /\bgzip\b/.test(headerValue(req, 'accept-encoding') ?? '');
  if (compress) {
    payload = gzipSync(body);
    headers['Content-Encoding'] = 'gzip';
  }
  res.writeHead(status, {
    'Cache-Control': 'no-store',
    ...headers,
    'Content-Length': String(payload.length),
  });
  res.end(req.method === 'HEAD' ? undefined : payload);
}
