/**
 * The ClickHouse hot store: one interface ({@link HotStore}) over a ClickHouse server reached
 * by HTTP and over chDB embedded in the process, both driven by `@clickhouse/client`.
 *
 * The pipeline depends on {@link HotStore} only; no client type leaks out. Inserts are encoded
 * from the schema's column lists into one text body per batch (TabSeparated by default: the
 * fastest of the three formats measured on both engines) and sent as is — over HTTP as a
 * stream, into chDB through its raw insert, which hands the Buffer to the engine's parser
 * without building JavaScript objects.
 *
 * Every request is retried on transient failures (connection refused or reset, timeouts, 5xx
 * from a proxy, overload codes) with exponential backoff, then fails with
 * {@link SinkUnavailableError}; a refusal fails at once with {@link SinkRejectedError}.
 * Retrying an insert is safe because every table is a ReplacingMergeTree keyed on the
 * record's identity: a batch that landed before its response was lost collapses with its copy.
 */

import { Readable } from 'node:stream';
import {
  type ClickHouseClient,
  type ClickHouseClientConfigOptions,
  createClient,
  type Logger,
} from '@clickhouse/client';
import { type ChdbConnection, createChdbConnection } from 'chdb/connection';
import {
  bootstrapDdl,
  type ClickHouseCapabilities,
  capabilitiesOf,
  type DdlContext,
  HOT_DATABASE,
  type HotTableName,
  type HotTableRows,
  hotStoreMigrations,
  hotTables,
  type RetentionDays,
  SCHEMA_MIGRATIONS_TABLE,
} from '../schemas/clickhouse.js';
import type { Column } from '../schemas/reading.js';
import { type RowEncoder, RowEncodingError, type RowFormat, rowEncoder } from './clickhouse-encode.js';
import {
  ClickHouseHttpError,
  classifyFailure,
  type HotStoreEngine,
  type HotStoreErrorContext,
  type HotStoreOperation,
  SinkRejectedError,
  SinkUnavailableError,
} from './clickhouse-errors.js';
import { type SqlFragment, sql, sqlIdent } from './sql.js';

export type { RowFormat } from './clickhouse-encode.js';
export { SinkRejectedError, SinkUnavailableError } from './clickhouse-errors.js';

export type HotStoreTarget =
  | {
      readonly kind: 'server';
      /** `http://host:8123`; credentials in the URL are moved out of it and never logged. */
      readonly url: string;
      readonly username?: string;
      readonly password?: string;
      /** The GreenStream database; default `greenstream`. Tests pick their own to stay isolated. */
      readonly database?: string;
    }
  | {
      readonly kind: 'chdb';
      /** The chDB data directory; one per process (a chDB limit). */
      readonly path: string;
      readonly database?: string;
    };

export interface RetryPolicy {
  /** Retries after the first attempt; 3 means at most 4 attempts. */
  readonly retries: number;
  /** Delay before retry n (1-based) is `baseDelayMs * 2^(n-1)`, capped at `maxDelayMs`. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 3, baseDelayMs: 1000, maxDelayMs: 30_000 };

/** Side channel for what the store does on its own (retries, migrations, client warnings). */
export type HotStoreEvent =
  | {
      readonly type: 'retry';
      readonly operation: HotStoreOperation;
      readonly table?: string;
      /** The attempt that failed, 1-based. */
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | { readonly type: 'migration_applied'; readonly version: number; readonly name: string }
  | { readonly type: 'client_warning'; readonly message: string };

export interface HotStoreOptions {
  readonly retry?: Partial<RetryPolicy>;
  /** HTTP request timeout (server engine); a timed-out request is retried. Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** Rows per INSERT statement; larger inputs are split. Default 100,000. */
  readonly maxRowsPerInsert?: number;
  /** Insert encoding; default `TabSeparated`. */
  readonly format?: RowFormat;
  /** TTLs created by `migrate()` on engines that support them (not 18.16). Default: none. */
  readonly retentionDays?: RetentionDays;
  readonly onEvent?: (event: HotStoreEvent) => void;
}

export interface InsertSummary {
  readonly table: HotTableName;
  readonly rows: number;
  /** INSERT statements sent. */
  readonly batches: number;
  /** Encoded body size. */
  readonly bytes: number;
}

export interface MigrationReport {
  readonly capabilities: ClickHouseCapabilities;
  /** Versions applied by this call. */
  readonly applied: readonly number[];
  /** Versions found already recorded in `schema_migrations`. */
  readonly alreadyApplied: readonly number[];
}

/** Tables, their `*_latest` views, and the migrations ledger. */
export type HotRelationName = HotTableName | `${HotTableName}_latest` | typeof SCHEMA_MIGRATIONS_TABLE;

/** What the pipeline needs from the hot store. */
export interface HotStore {
  readonly engine: HotStoreEngine;
  readonly database: string;
  /** The qualified name for use in sql``: `` sql`SELECT count() FROM ${store.relation('readings')} FINAL` ``. */
  relation(name: HotRelationName): SqlFragment;
  /** Version and features of the engine (cached). */
  capabilities(): Promise<ClickHouseCapabilities>;
  /** Creates the database, tables and views; idempotent, safe to call at every start. */
  migrate(): Promise<MigrationReport>;
  /**
   * Inserts rows of one table, split into batches of `maxRowsPerInsert`. Nothing is sent when a
   * row cannot be encoded. If a later batch fails, earlier ones stay stored: inserting the same
   * rows again is harmless, since every table keeps one row per key.
   */
  insert<K extends HotTableName>(table: K, rows: readonly HotTableRows[K][]): Promise<InsertSummary>;
  /** Inserts several tables, in the order given; stops at the first failure. */
  insertAll(batch: HotStoreBatch): Promise<InsertSummary[]>;
  /** Runs a SELECT and returns its rows as JSON objects (64-bit integers arrive as strings). */
  query<T = Record<string, unknown>>(query: SqlFragment): Promise<T[]>;
  /** Runs a statement without a result (DDL, OPTIMIZE, ALTER …). */
  command(statement: SqlFragment): Promise<void>;
  close(): Promise<void>;
}

export type HotStoreBatch = { readonly [K in HotTableName]?: readonly HotTableRows[K][] };

/** The engine-specific part: a few calls on raw SQL text. */
interface Driver {
  query(text: string): Promise<unknown[]>;
  command(text: string): Promise<void>;
  insert(
    database: string,
    table: string,
    columns: readonly string[],
    format: RowFormat,
    body: Buffer,
  ): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_MAX_ROWS_PER_INSERT = 100_000;

function redactedUrl(url: string): { url: string; username?: string; password?: string } {
  const parsed = new URL(url);
  const username = parsed.username ? decodeURIComponent(parsed.username) : undefined;
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.toString().replace(/\/$/, ''), username, password };
}

function serverLocation(url: string): string {
  try {
    return redactedUrl(url).url;
  } catch {
    // Neither the URL nor the parser's error (which quotes it) may be shown: it can hold a password.
    throw new SinkRejectedError(
      'The ClickHouse server URL is not a valid URL',
      { engine: 'server', target: '(invalid URL)', operation: 'connect', attempts: 0 },
      undefined,
    );
  }
}

function clientLogger(onEvent: ((event: HotStoreEvent) => void) | undefined): new () => Logger {
  // The client's default logger writes to the console; library code must not. Warnings (such as
  // keep-alive socket resets) go to the side channel instead, message only: their arguments
  // carry query ids and settings that nobody asked to publish.
  const forward = (message: string) => onEvent?.({ type: 'client_warning', message });
  return class HotStoreClientLogger implements Logger {
    trace(): void {}
    debug(): void {}
    info(): void {}
    warn(params: { message: string }): void {
      forward(params.message);
    }
    error(params: { message: string }): void {
      forward(params.message);
    }
  };
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const CODE_IN_BODY = /\bCode: (\d+)[.,]/;

function parseJsonEachRow(body: string): unknown[] {
  const rows: unknown[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf('\n', start);
    if (end === -1) end = body.length;
    if (end > start) {
      const line = body.slice(start, end);
      try {
        rows.push(JSON.parse(line));
      } catch (error) {
        // An exception raised after the first rows were streamed arrives in the body, after a
        // 200 status; it is the server's error, not a parse error.
        const code = CODE_IN_BODY.exec(line);
        if (code) throw new ClickHouseHttpError(200, body.slice(start), Number(code[1]));
        throw error;
      }
    }
    start = end + 1;
  }
  return rows;
}

function serverDriver(
  target: Extract<HotStoreTarget, { kind: 'server' }>,
  url: string,
  options: HotStoreOptions,
): Driver {
  const fromUrl = redactedUrl(target.url);
  const client: ClickHouseClient = createClient({
    url,
    username: target.username ?? fromUrl.username ?? 'default',
    password: target.password ?? fromUrl.password ?? '',
    request_timeout: options.requestTimeoutMs ?? 30_000,
    application: 'greenstream',
    log: { LoggerClass: clientLogger(options.onEvent) },
  });

  // Everything goes through exec() with error responses returned rather than thrown, so the
  // HTTP status is known when deciding whether to retry (the client's own errors drop it).
  async function exec(query: string, values?: Buffer): Promise<string> {
    const result = await client.exec({
      query,
      ignore_error_response: true,
      // A fresh stream per attempt: a retried insert resends the same bytes.
      ...(values === undefined ? {} : { values: Readable.from([values], { objectMode: false }) }),
    });
    const body = await readAll(result.stream);
    const status = result.http_status_code ?? 200;
    const header = result.response_headers['x-clickhouse-exception-code'];
    if (status !== 200 || header !== undefined) {
      const code = header !== undefined ? Number(header) : Number(CODE_IN_BODY.exec(body)?.[1] ?? Number.NaN);
      throw new ClickHouseHttpError(status, body, Number.isNaN(code) ? undefined : code);
    }
    return body;
  }

  return {
    async query(text) {
      return parseJsonEachRow(await exec(`${withoutTrailingSemicolons(text)}\nFORMAT JSONEachRow`));
    },
    async command(text) {
      await exec(withoutTrailingSemicolons(text));
    },
    async insert(database, table, columns, format, body) {
      const into = sql`INSERT INTO ${sql.ident(database, table)} (${sql.join(columns.map((c) => sql.ident(c)))})`;
      await exec(`${into.text} FORMAT ${format}`, body);
    },
    close: () => client.close(),
  };
}

function withoutTrailingSemicolons(text: string): string {
  return text.replace(/[\s;]+$/, '');
}

function chdbDriver(path: string): Driver {
  const connection: ChdbConnection = createChdbConnection({ path });
  // chdb types its connection against the @clickhouse/client-common package, the client against
  // its bundled copy of the same declarations; the shapes are identical (chdb re-exports them).
  const client: ClickHouseClient = createClient({
    connection: connection as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>,
  });
  return {
    async query(text) {
      const result = await client.query({ query: text, format: 'JSONEachRow' });
      return result.json<unknown>();
    },
    async command(text) {
      await client.command({ query: text });
    },
    async insert(database, table, columns, format, body) {
      // Through the client an insert body is turned into one string and prepended with the
      // statement; the raw insert hands the Buffer to chDB's parallel parser instead.
      await connection.chdb.rawInsert({
        // chdb validates these as plain [A-Za-z0-9_] names and quotes nothing; ours already are.
        table: `${database}.${table}`,
        columns,
        format,
        values: body,
      });
    },
    async close() {
      await client.close();
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split('\n', 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * Opens the hot store. Nothing is sent until the first call; `migrate()` first is the usual
 * start. For chDB the data directory is created if missing.
 */
export function openHotStore(target: HotStoreTarget, options: HotStoreOptions = {}): HotStore {
  const database = target.database ?? HOT_DATABASE;
  sqlIdent(database); // throws SqlValueError for a name that is not a plain identifier
  const retry: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  const maxRows = options.maxRowsPerInsert ?? DEFAULT_MAX_ROWS_PER_INSERT;
  if (!Number.isInteger(maxRows) || maxRows <= 0)
    throw new RangeError('maxRowsPerInsert must be a positive integer');
  const format: RowFormat = options.format ?? 'TabSeparated';
  const engine: HotStoreEngine = target.kind;
  const location = target.kind === 'server' ? serverLocation(target.url) : target.path;
  let driver: Driver;
  try {
    driver = target.kind === 'server' ? serverDriver(target, location, options) : chdbDriver(target.path);
  } catch (error) {
    // E.g. a second chDB data directory in this process: configuration, not an outage.
    throw new SinkRejectedError(
      `Cannot open the hot store on ${engine} ${location}: ${firstLine(error)}`,
      { engine, target: location, operation: 'connect', attempts: 0 },
      error,
    );
  }
  const closing = new AbortController();
  const encoders = new Map<HotTableName, RowEncoder<never>>();
  let capabilitiesPromise: Promise<ClickHouseCapabilities> | undefined;
  let closed = false;

  function context(
    operation: HotStoreOperation,
    attempts: number,
    table?: string,
    code?: number,
  ): HotStoreErrorContext {
    return {
      engine,
      target: location,
      operation,
      attempts,
      ...(table === undefined ? {} : { table }),
      ...(code === undefined ? {} : { clickhouseCode: code }),
    };
  }

  async function attempt<T>(
    operation: HotStoreOperation,
    table: string | undefined,
    run: () => Promise<T>,
  ): Promise<T> {
    if (closed) {
      throw new SinkRejectedError('The hot store is closed', context(operation, 0, table), undefined);
    }
    for (let attemptNo = 1; ; attemptNo++) {
      try {
        return await run();
      } catch (error) {
        const failure = classifyFailure(error);
        const where = `${operation}${table ? ` into ${table}` : ''} on ${engine} ${location}`;
        if (!failure.transient) {
          throw new SinkRejectedError(
            `ClickHouse refused ${where}: ${firstLine(error)}`,
            context(operation, attemptNo, table, failure.clickhouseCode),
            error,
          );
        }
        if (attemptNo > retry.retries || closed) {
          throw new SinkUnavailableError(
            `ClickHouse unavailable for ${where} after ${attemptNo} attempts: ${firstLine(error)}`,
            context(operation, attemptNo, table, failure.clickhouseCode),
            error,
          );
        }
        const delayMs = Math.min(retry.baseDelayMs * 2 ** (attemptNo - 1), retry.maxDelayMs);
        options.onEvent?.({
          type: 'retry',
          operation,
          ...(table === undefined ? {} : { table }),
          attempt: attemptNo,
          delayMs,
          reason: firstLine(error),
        });
        try {
          await sleep(delayMs, closing.signal);
        } catch {
          throw new SinkUnavailableError(
            `The hot store was closed while waiting to retry ${where}`,
            context(operation, attemptNo, table, failure.clickhouseCode),
            error,
          );
        }
      }
    }
  }

  function relation(name: HotRelationName): SqlFragment {
    return sql.ident(database, name);
  }

  function capabilities(): Promise<ClickHouseCapabilities> {
    capabilitiesPromise ??= attempt('connect', undefined, () =>
      driver.query('SELECT version() AS version'),
    ).then((rows) => capabilitiesOf(String((rows[0] as { version?: unknown } | undefined)?.version ?? '')));
    capabilitiesPromise.catch(() => {
      capabilitiesPromise = undefined;
    });
    return capabilitiesPromise;
  }

  async function command(statement: SqlFragment, operation: HotStoreOperation = 'command'): Promise<void> {
    await attempt(operation, undefined, () => driver.command(statement.text));
  }

  async function migrate(): Promise<MigrationReport> {
    const caps = await capabilities();
    for (const statement of bootstrapDdl(database)) await command(statement, 'migrate');
    const recorded = await attempt('migrate', SCHEMA_MIGRATIONS_TABLE, () =>
      driver.query(
        sql`SELECT DISTINCT version FROM ${relation(SCHEMA_MIGRATIONS_TABLE)} ORDER BY version`.text,
      ),
    );
    const done = new Set(recorded.map((r) => Number((r as { version: unknown }).version)));
    const ddl: DdlContext = {
      database,
      capabilities: caps,
      ...(options.retentionDays ? { retentionDays: options.retentionDays } : {}),
    };
    const applied: number[] = [];
    for (const migration of hotStoreMigrations) {
      if (done.has(migration.version)) continue;
      for (const statement of migration.statements(ddl)) await command(statement, 'migrate');
      await command(
        sql`INSERT INTO ${relation(SCHEMA_MIGRATIONS_TABLE)} (version, name, applied_at) VALUES (${migration.version}, ${migration.name}, ${new Date()})`,
        'migrate',
      );
      applied.push(migration.version);
      options.onEvent?.({ type: 'migration_applied', version: migration.version, name: migration.name });
    }
    return { capabilities: caps, applied, alreadyApplied: [...done].sort((a, b) => a - b) };
  }

  function encoderFor<K extends HotTableName>(table: K): RowEncoder<HotTableRows[K]> {
    let encoder = encoders.get(table);
    if (!encoder) {
      encoder = rowEncoder(
        hotTables[table].columns as readonly Column<HotTableRows[K]>[],
        format,
      ) as RowEncoder<never>;
      encoders.set(table, encoder);
    }
    return encoder as RowEncoder<HotTableRows[K]>;
  }

  async function insert<K extends HotTableName>(
    table: K,
    rows: readonly HotTableRows[K][],
  ): Promise<InsertSummary> {
    const spec = hotTables[table];
    if (!spec)
      throw new SinkRejectedError(`Unknown hot table ${String(table)}`, context('insert', 0), undefined);
    const encode = encoderFor(table);
    const columns = spec.columns.map((c) => c.name);
    // Encode every batch before sending any, so a row that cannot be encoded leaves nothing stored.
    const bodies: Buffer[] = [];
    try {
      for (let from = 0; from < rows.length; from += maxRows) {
        bodies.push(Buffer.from(encode(rows, from, Math.min(from + maxRows, rows.length))));
      }
    } catch (error) {
      if (error instanceof RowEncodingError) {
        throw new SinkRejectedError(
          `Cannot encode a row for ${table}: ${error.message}`,
          context('insert', 0, table),
          error,
        );
      }
      throw error;
    }
    let bytes = 0;
    for (const body of bodies) {
      await attempt('insert', table, () => driver.insert(database, table, columns, format, body));
      bytes += body.length;
    }
    const batches = bodies.length;
    return { table, rows: rows.length, batches, bytes };
  }

  async function insertAll(batch: HotStoreBatch): Promise<InsertSummary[]> {
    const summaries: InsertSummary[] = [];
    for (const table of Object.keys(batch) as HotTableName[]) {
      const rows = batch[table];
      if (rows && rows.length > 0)
        summaries.push(await insert(table, rows as readonly HotTableRows[typeof table][]));
    }
    return summaries;
  }

  return {
    engine,
    database,
    relation,
    capabilities,
    migrate,
    insert,
    insertAll,
    async query<T>(query: SqlFragment): Promise<T[]> {
      return (await attempt('query', undefined, () => driver.query(query.text))) as T[];
    },
    command: (statement) => command(statement),
    async close() {
      if (closed) return;
      closed = true;
      closing.abort(new Error('hot store closed'));
      await driver.close();
    },
  };
}
