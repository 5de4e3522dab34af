/**
 * The ClickHouse hot store: one interface ({@link HotStore}) over a ClickHouse server reached
 * by HTTP (`clickhouse-server.ts`) and over chDB embedded in the process (`clickhouse-chdb.ts`),
 * with the retries and the migrations; the engines implement `Driver` (`clickhouse-driver.ts`).
 *
 * The pipeline depends on {@link HotStore} only; no client type leaks out. Inserts are encoded
 * from the schema's column lists into one body per batch and sent as is — over HTTP as RowBinary,
 * chosen from the server's version (18.16 and later read it; `codecs/clickhouse-rowbinary.ts`), with
 * TabSeparated text for an older server or when asked for (18.16 reads no Arrow); into chDB as an
 * Arrow IPC stream in a file the engine reads itself (`INSERT … SELECT … FROM file(…)`), see
 * `chdbDriver`.
 *
 * Every request is retried on transient failures (connection refused or reset, timeouts, 5xx
 * from a proxy, overload codes) with exponential backoff, then fails with
 * {@link SinkUnavailableError}; a refusal fails at once with {@link SinkRejectedError}.
 * Retrying an insert is safe because every table is a ReplacingMergeTree keyed on the
 * record's identity: a batch that landed before its response was lost collapses with its copy.
 */

import { RowEncodingError, type RowWriter, rowWriter } from '../codecs/clickhouse-encode.js';
import { rowBinaryWriter } from '../codecs/clickhouse-rowbinary.js';
import { type SqlFragment, sql, sqlIdent } from '../codecs/sql.js';
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
import { chdbDriver, SpoolError } from './clickhouse-chdb.js';
import {
  type Driver,
  firstLine,
  type HotStoreEvent,
  type HotStoreFormat,
  type HotStoreTarget,
  type InsertTarget,
  type StagedInsert,
} from './clickhouse-driver.js';
import {
  classifyFailure,
  type HotStoreEngine,
  type HotStoreErrorContext,
  type HotStoreOperation,
  SinkRejectedError,
  SinkUnavailableError,
} from './clickhouse-errors.js';
import { serverDriver, serverLocation } from './clickhouse-server.js';

export type { InsertFormat, RowFormat } from '../codecs/clickhouse-encode.js';
export type { HotStoreEvent, HotStoreFormat, HotStoreTarget } from './clickhouse-driver.js';
export { SinkRejectedError, SinkUnavailableError } from './clickhouse-errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt; 3 means at most 4 attempts. Ignored when `budgetMs` is set. */
  readonly retries: number;
  /** Delay before retry n (1-based) is `baseDelayMs * 2^(n-1)`, capped at `maxDelayMs`. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /**
   * Retry for as long as this since the first attempt, however many attempts that takes: a worker rides
   * out a server restart of minutes rather than counting a few quick failures. The last delay is cut so
   * that the last attempt falls within the budget.
   */
  readonly budgetMs?: number;
  /**
   * Draw each delay uniformly from [delay/2, delay], so that workers that lost the server together do
   * not come back at the same instant.
   */
  readonly jitter?: boolean;
  /** The random source of the jitter, in [0, 1); `Math.random` by default. */
  readonly random?: () => number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 3, baseDelayMs: 1000, maxDelayMs: 30_000 };

export interface HotStoreOptions {
  readonly retry?: Partial<RetryPolicy>;
  /** HTTP request timeout (server engine); a timed-out request is retried. Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** Rows per INSERT statement; larger inputs are split. Default 100,000. */
  readonly maxRowsPerInsert?: number;
  /**
   * Insert encoding; default `ArrowStream` where the engine reads it (chDB), `RowBinary` on a server whose
   * version reads it (18.16 and later, see `capabilitiesOf`), else `TabSeparated`. `RowBinary` is for the
   * server only, `ArrowStream` for chDB only.
   */
  readonly format?: HotStoreFormat;
  /** TTLs created by `migrate()` on engines that support them (not 18.16). Default: none. */
  readonly retentionDays?: RetentionDays;
  /**
   * chDB only: `max_memory_usage` of every statement, bytes (its share of the worker's memory budget,
   * `engineMemory`). A server is another process with its own limits: nothing is sent to it.
   */
  readonly embeddedMemoryBytes?: number;
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

const DEFAULT_MAX_ROWS_PER_INSERT = 100_000;

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
  const engine: HotStoreEngine = target.kind;
  const location = target.kind === 'server' ? serverLocation(target.url) : target.path;
  let driver: Driver<HotStoreFormat>;
  try {
    driver =
      target.kind === 'server'
        ? serverDriver(target, location, {
            ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
            ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
          })
        : chdbDriver(
            target.path,
            options.embeddedMemoryBytes === undefined
              ? {}
              : { maxMemoryUsageBytes: options.embeddedMemoryBytes },
          );
  } catch (error) {
    // E.g. a second chDB data directory in this process: configuration, not an outage.
    throw new SinkRejectedError(
      `Cannot open the hot store on ${engine} ${location}: ${firstLine(error)}`,
      { engine, target: location, operation: 'connect', attempts: 0 },
      error,
    );
  }
  if (
    (options.format === 'ArrowStream' && !driver.readsArrow) ||
    (options.format === 'RowBinary' && engine !== 'server')
  ) {
    void driver.close();
    throw new SinkRejectedError(
      `The hot store on ${engine} ${location} reads no ${options.format} inserts`,
      { engine, target: location, operation: 'connect', attempts: 0 },
      undefined,
    );
  }
  let format: HotStoreFormat | undefined = options.format;
  const closing = new AbortController();
  const writers = new Map<HotTableName, RowWriter<never>>();
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
    const started = Date.now();
    for (let attemptNo = 1; ; attemptNo++) {
      try {
        const result = await run();
        if (attemptNo > 1)
          options.onEvent?.({
            type: 'recovered',
            operation,
            ...(table === undefined ? {} : { table }),
            attempts: attemptNo,
            downMs: Date.now() - started,
          });
        return result;
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
        let delayMs = Math.min(retry.baseDelayMs * 2 ** Math.min(attemptNo - 1, 30), retry.maxDelayMs);
        if (retry.jitter === true)
          delayMs = Math.round(delayMs / 2 + (delayMs / 2) * (retry.random ?? Math.random)());
        const elapsedMs = Date.now() - started;
        if (retry.budgetMs !== undefined) delayMs = Math.min(delayMs, retry.budgetMs - elapsedMs);
        const exhausted = retry.budgetMs === undefined ? attemptNo > retry.retries : delayMs <= 0;
        if (exhausted || closed) {
          throw new SinkUnavailableError(
            `ClickHouse unavailable for ${where} after ${attemptNo} attempts in ${Math.round(elapsedMs / 1000)} s: ${firstLine(error)}`,
            context(operation, attemptNo, table, failure.clickhouseCode),
            error,
          );
        }
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

  /** Asked for once; `operation` and `table` name the call that asked first, in retries and errors. */
  function capabilities(
    operation: HotStoreOperation = 'connect',
    table?: string,
  ): Promise<ClickHouseCapabilities> {
    capabilitiesPromise ??= attempt(operation, table, () => driver.query('SELECT version() AS version')).then(
      (rows) => capabilitiesOf(String((rows[0] as { version?: unknown } | undefined)?.version ?? '')),
    );
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
      for (const statement of migration.statements(ddl)) {
        try {
          await command(statement, 'migrate');
        } catch (error) {
          // A rerun of a migration interrupted half-way meets what it already did (an added column):
          // 18.16 has no `ADD COLUMN IF NOT EXISTS`, so the migration names the codes that mean "done".
          const code = (error as { context?: { clickhouseCode?: number } }).context?.clickhouseCode;
          if (code === undefined || !migration.alreadyDoneCodes?.includes(code)) throw error;
        }
      }
      await command(
        sql`INSERT INTO ${relation(SCHEMA_MIGRATIONS_TABLE)} (version, name, applied_at) VALUES (${migration.version}, ${migration.name}, ${new Date()})`,
        'migrate',
      );
      applied.push(migration.version);
      options.onEvent?.({ type: 'migration_applied', version: migration.version, name: migration.name });
    }
    return { capabilities: caps, applied, alreadyApplied: [...done].sort((a, b) => a - b) };
  }

  /**
   * The insert format, chosen once: the one asked for; else ArrowStream where the engine reads it (chDB),
   * RowBinary where the server's version reads it, TabSeparated otherwise. The version is known from the
   * start (`migrate()` asks for it first); a store that inserts first asks for it as part of the insert.
   */
  async function insertFormat(table: HotTableName): Promise<HotStoreFormat> {
    if (format === undefined) {
      const chosen: HotStoreFormat = driver.readsArrow
        ? 'ArrowStream'
        : engine === 'server' && (await capabilities('insert', table)).rowBinary
          ? 'RowBinary'
          : 'TabSeparated';
      format ??= chosen;
    }
    return format;
  }

  function writerFor<K extends HotTableName>(table: K, format: HotStoreFormat): RowWriter<HotTableRows[K]> {
    let writer = writers.get(table);
    if (!writer) {
      const columns = hotTables[table].columns as readonly Column<HotTableRows[K]>[];
      writer = (
        format === 'RowBinary' ? rowBinaryWriter(columns) : rowWriter(columns, format)
      ) as RowWriter<never>;
      writers.set(table, writer);
    }
    return writer as RowWriter<HotTableRows[K]>;
  }

  async function insert<K extends HotTableName>(
    table: K,
    rows: readonly HotTableRows[K][],
  ): Promise<InsertSummary> {
    const spec = hotTables[table];
    if (!spec)
      throw new SinkRejectedError(`Unknown hot table ${String(table)}`, context('insert', 0), undefined);
    if (closed) {
      throw new SinkRejectedError('The hot store is closed', context('insert', 0, table), undefined);
    }
    const chosen = await insertFormat(table);
    const write = writerFor(table, chosen);
    const target: InsertTarget<HotStoreFormat> = { database, table, columns: spec.columns, format: chosen };
    // Encode every batch before sending any, so a row that cannot be encoded leaves nothing stored.
    const staged: StagedInsert[] = [];
    try {
      try {
        for (let from = 0; from < rows.length; from += maxRows) {
          const to = Math.min(from + maxRows, rows.length);
          staged.push(driver.stageInsert(target, (sink) => write(rows, from, to, sink)));
        }
      } catch (error) {
        if (error instanceof RowEncodingError) {
          throw new SinkRejectedError(
            `Cannot encode a row for ${table}: ${error.message}`,
            context('insert', 0, table),
            error,
          );
        }
        if (error instanceof SpoolError) {
          throw new SinkUnavailableError(
            `Cannot stage an insert into ${table} on ${engine} ${location}: ${error.message}`,
            context('insert', 0, table),
            error,
          );
        }
        throw error;
      }
      let bytes = 0;
      for (const body of staged) {
        await attempt('insert', table, () => body.send());
        bytes += body.bytes;
      }
      return { table, rows: rows.length, batches: staged.length, bytes };
    } finally {
      await Promise.all(staged.map((body) => body.release()));
    }
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
    capabilities: () => capabilities(),
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
