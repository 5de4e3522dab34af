/**
 * The ClickHouse hot store: one interface ({@link HotStore}) over a ClickHouse server reached
 * by HTTP and over chDB embedded in the process, both driven by `@clickhouse/client`.
 *
 * The pipeline depends on {@link HotStore} only; no client type leaks out. Inserts are encoded
 * from the schema's column lists into one text body per batch (TabSeparated by default: the
 * fastest of the three formats measured on both engines) and sent as is — over HTTP as a
 * stream; into chDB as a file the engine reads itself (`INSERT … SELECT … FROM file(…)`), see
 * {@link chdbDriver}.
 *
 * Every request is retried on transient failures (connection refused or reset, timeouts, 5xx
 * from a proxy, overload codes) with exponential backoff, then fails with
 * {@link SinkUnavailableError}; a refusal fails at once with {@link SinkRejectedError}.
 * Retrying an insert is safe because every table is a ReplacingMergeTree keyed on the
 * record's identity: a batch that landed before its response was lost collapses with its copy.
 */

import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
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
  clickhouseType,
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
import {
  RowEncodingError,
  type RowFormat,
  type RowWriter,
  rowWriter,
  type TextSink,
} from './clickhouse-encode.js';
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

/** One insert, its body encoded and kept ready to send (again, on a retry). */
interface StagedInsert {
  /** Encoded body size. */
  readonly bytes: number;
  send(): Promise<void>;
  /** Frees the body; called once, whether it was sent or not. */
  release(): Promise<void>;
}

/** Where an insert goes and in which format. */
interface InsertTarget {
  readonly database: string;
  readonly table: string;
  readonly columns: readonly Pick<Column<unknown>, 'name' | 'type'>[];
  readonly format: RowFormat;
}

/** The engine-specific part: a few calls on raw SQL text. */
interface Driver {
  query(text: string): Promise<unknown[]>;
  command(text: string): Promise<void>;
  /**
   * Runs `encode` (synchronous; it throws what the encoder throws) and keeps its output as the
   * body of one insert into `target`. Nothing is sent yet.
   */
  stageInsert(target: InsertTarget, encode: (sink: TextSink) => void): StagedInsert;
  close(): Promise<void>;
}

/** A spool file could not be written: the engine cannot be given the batch for now. */
class SpoolError extends Error {
  override readonly name = 'SpoolError';
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
    stageInsert({ database, table, columns, format }, encode) {
      const body = bodyOf(encode);
      const into = sql`INSERT INTO ${sql.ident(database, table)} (${sql.join(columns.map((c) => sql.ident(c.name)))})`;
      return {
        bytes: body.length,
        send: async () => {
          await exec(`${into.text} FORMAT ${format}`, body);
        },
        release: async () => {},
      };
    },
    close: () => client.close(),
  };
}

function withoutTrailingSemicolons(text: string): string {
  return text.replace(/[\s;]+$/, '');
}

/** An insert body in memory: one string, converted once (a Buffer per piece costs more than the copy it saves). */
function bodyOf(encode: (sink: TextSink) => void): Buffer {
  let text = '';
  encode((piece) => {
    text += piece;
  });
  return Buffer.from(text, 'utf8');
}

/** Spool folders under the data directory that this process found and cleared (see below). */
const clearedSpoolRoots = new Set<string>();

/** Characters that make a `file()` path a pattern (`*`, `?`, `{a,b}`, `{1..9}`). */
const GLOB_CHARACTERS = /[*?{}]/;

/**
 * Settings of every chDB insert (newer than 18.16, so never sent to the server):
 * - `optimize_on_insert = 0`: a ReplacingMergeTree otherwise collapses the duplicate keys of each
 *   inserted block (a sort-merge pass) although background merges do the same later and every
 *   reader sees through duplicates anyway (`FINAL`, the `*_latest` views, `argMax`). It was ~15%
 *   of the engine's time for readings. Until a merge, a plain `count()` also counts the versions
 *   of a key that arrived in one batch (a fault's `active` and `cleared` rows).
 * - `input_format_parallel_parsing = 0`: a body of up to ~20 MB makes at most two 10 MB chunks,
 *   and on two cores, shared with the pipeline, handing them to threads cost more than it saved
 *   (~10% of the engine's time for readings).
 */
const CHDB_INSERT_SETTINGS = sql.raw('SETTINGS optimize_on_insert = 0, input_format_parallel_parsing = 0');

/**
 * chDB. Queries go through `@clickhouse/client` on chDB's connection. Inserts use neither the
 * client (it makes one string of the body) nor chDB's raw insert (the body inline after the
 * statement), which chDB runs through its embedded client: that scans inline data far more
 * slowly than the engine parses it (a day of 5,000 meters' readings, 104 MB, into a table that
 * discards rows: ~2.2 s of CPU inline, ~0.7 s from a file), and ends the data at the first
 * empty line. Instead each body is written, piece by piece as it is encoded, to a spool file
 * under the data directory, and the engine reads it with `INSERT … SELECT * FROM file(…)`, off
 * the event loop like the raw insert. The file's structure declares LowCardinality columns as
 * plain `String`: the engine then converts whole columns on insert instead of building the
 * dictionary while parsing each value, which halved its parse time for readings (same stored
 * values). Writing the pieces out also means the body is never one JavaScript string or
 * Buffer, which with large batches cost more in garbage collection than the encoding itself.
 */
function chdbDriver(path: string): Driver {
  const connection: ChdbConnection = createChdbConnection({ path });
  // chdb types its connection against the @clickhouse/client-common package, the client against
  // its bundled copy of the same declarations; the shapes are identical (chdb re-exports them).
  const client: ClickHouseClient = createClient({
    connection: connection as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>,
  });
  const spoolRoot = join(resolve(connection.chdb.session.path), 'greenstream-spool');
  let spool: string | undefined;
  let nextFile = 0;

  function spoolFolder(): string {
    if (spool === undefined) {
      try {
        // Every store of the process gets its own folder. chDB locks its data directory to one
        // process, so what a previous process left behind (a crash mid-insert) can go.
        if (!clearedSpoolRoots.has(spoolRoot)) {
          rmSync(spoolRoot, { recursive: true, force: true });
          clearedSpoolRoots.add(spoolRoot);
        }
        mkdirSync(spoolRoot, { recursive: true });
        spool = mkdtempSync(join(spoolRoot, 'store-'));
      } catch (error) {
        throw new SpoolError(`Cannot create a spool folder in ${spoolRoot}: ${firstLine(error)}`, {
          cause: error,
        });
      }
    }
    return spool;
  }

  function writeSpoolFile(file: string, encode: (sink: TextSink) => void): number {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (error) {
      throw new SpoolError(`Cannot create the spool file ${file}: ${firstLine(error)}`, { cause: error });
    }
    let bytes = 0;
    try {
      // Synchronous like the encoder that drives it; each piece lands in the page cache.
      encode((piece) => {
        try {
          bytes += writeSync(fd, piece);
        } catch (error) {
          throw new SpoolError(`Cannot write the spool file ${file}: ${firstLine(error)}`, { cause: error });
        }
      });
    } finally {
      closeSync(fd);
    }
    return bytes;
  }

  return {
    async query(text) {
      const result = await client.query({ query: text, format: 'JSONEachRow' });
      return result.json<unknown>();
    },
    async command(text) {
      await client.command({ query: text });
    },
    stageInsert({ database, table, columns, format }, encode) {
      if (GLOB_CHARACTERS.test(spoolRoot)) {
        // file() would read the path as a pattern: send the body inline, the slower way.
        const body = bodyOf(encode);
        return {
          bytes: body.length,
          send: async () => {
            // chdb validates these as plain [A-Za-z0-9_] names and quotes nothing; ours already are.
            await connection.chdb.rawInsert({
              table: `${database}.${table}`,
              columns: columns.map((c) => c.name),
              format,
              values: body,
            });
          },
          release: async () => {},
        };
      }
      const file = join(spoolFolder(), `${nextFile++}.${format === 'TabSeparated' ? 'tsv' : 'ndjson'}`);
      let bytes: number;
      try {
        bytes = writeSpoolFile(file, encode);
      } catch (error) {
        rmSync(file, { force: true });
        throw error;
      }
      const structure = columns
        .map((c) => `${sqlIdent(c.name)} ${clickhouseType(c.type, { lowCardinality: false })}`)
        .join(', ');
      const statement = sql`INSERT INTO ${sql.ident(database, table)} (${sql.join(columns.map((c) => sql.ident(c.name)))}) SELECT * FROM file(${file}, ${format}, ${structure}) ${CHDB_INSERT_SETTINGS}`;
      return {
        bytes,
        send: async () => {
          await connection.chdb.queryAsync(statement.text);
        },
        // A file that cannot be removed now goes with the folder at close, or at the next start.
        release: () => rm(file, { force: true }).catch(() => {}),
      };
    },
    async close() {
      await client.close();
      // What cannot be removed now goes at the next start (see spoolFolder).
      if (spool !== undefined) await rm(spool, { recursive: true, force: true }).catch(() => {});
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

  function writerFor<K extends HotTableName>(table: K): RowWriter<HotTableRows[K]> {
    let writer = writers.get(table);
    if (!writer) {
      writer = rowWriter(
        hotTables[table].columns as readonly Column<HotTableRows[K]>[],
        format,
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
    const write = writerFor(table);
    const target: InsertTarget = { database, table, columns: spec.columns, format };
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
