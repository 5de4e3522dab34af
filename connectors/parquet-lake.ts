/**
 * The cold Parquet lake: batches of readings, hourly aggregates and quarantined records written as
 * Snappy Parquet through one in-memory DuckDB, in the layout `schemas/parquet.ts` defines.
 *
 * A batch (rows, or an Arrow `RecordBatch`/`Table`) is split by partition, each part is appended
 * to a DuckDB temp table in 2,048-row `DuckDBDataChunk`s (node-neo cannot ingest Arrow, and
 * row-by-row inserts are ~300× slower), then `COPY`'d to a `.partial` file in the lake's temporary
 * folder, synced, and renamed over `<table>/year=YYYY/month=MM/part-<checkpointId>.parquet`.
 * Readers glob `*.parquet` under the table folders, so they see a whole file or none, and a replay
 * of a checkpoint replaces its files instead of adding copies. `writeBatch` resolves only once the
 * files are durable, with the list of what it wrote, so the caller can acknowledge upstream after it.
 * A spool (`spool`) takes rows as they arrive instead, encoded at once to per-partition CSV files
 * (`lake-spool.ts`), and its `write` has DuckDB read them with `read_csv` into the same `COPY`, in
 * DuckDB's threads: the rows are encoded once and never held in the heap.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import {
  BIGINT,
  DOUBLE,
  type DuckDBConnection,
  DuckDBDataChunk,
  DuckDBInstance,
  type DuckDBType,
  type DuckDBValue,
  DuckDBVector,
  ENUM,
  LIST,
  listValue,
  UBIGINT,
  UINTEGER,
  UTINYINT,
  VARCHAR,
} from '@duckdb/node-api';
import type { RecordBatch, Table } from 'apache-arrow';
import { duckdbIdent, duckdbLiteral } from '../codecs/sql.js';
import { GreenStreamError } from '../core/errors.js';
import { arrowColumnValues, type CellValue, isNullableColumnType } from '../schemas/arrow.js';
import {
  duckdbTypeOf,
  epochOfPartFile,
  isValidCheckpointId,
  type LakeKind,
  type LakePartition,
  type LakeRowByKind,
  type LakeTable,
  lakeKinds,
  lakeTables,
  PARQUET_COMPRESSION,
  partFileName,
  partitionColumns,
  partitionOf,
  partitionRange,
  partitionSegments,
  SPOOL_SUFFIX,
  TEMPORARY_FOLDER,
  TEMPORARY_SUFFIX,
} from '../schemas/parquet.js';
import type { Column, ColumnType } from '../schemas/reading.js';
import {
  SpoolBuffer,
  type SpoolColumns,
  SpoolValueError,
  spoolColumnsOf,
  spoolOutputExpression,
} from './lake-spool.js';

/** Context attached to a lake error: what was being done, never row contents. */
export type LakeErrorContext = Readonly<Record<string, string | number>>;

export class ParquetLakeError extends GreenStreamError<LakeErrorContext> {
  override readonly name: string = 'ParquetLakeError';

  constructor(message: string, context: LakeErrorContext, options?: { cause?: unknown }) {
    // Only a failed write of files may succeed when tried again (a full disk, a DuckDB hiccup).
    super(message, { context, cause: options?.cause, retryable: new.target === LakeWriteError });
  }
}

/** The batch or checkpoint id is unusable; retrying the same input cannot succeed. */
export class LakeInputError extends ParquetLakeError {
  override readonly name: string = 'LakeInputError';
}

/** DuckDB or the file system failed; nothing of the batch is visible and a retry may succeed. */
export class LakeWriteError extends ParquetLakeError {
  override readonly name: string = 'LakeWriteError';
}

export class LakeQueryError extends ParquetLakeError {
  override readonly name: string = 'LakeQueryError';
}

export interface ParquetLakeOptions {
  /** Lake root; created if missing. */
  readonly dir: string;
  /**
   * DuckDB worker threads; when absent, {@link LAKE_THREADS_UNDER_BUDGET} with a memory limit, DuckDB's
   * default (one per core) without one.
   */
  readonly threads?: number;
  /**
   * DuckDB's `memory_limit`, bytes: its buffer manager spills the seal's sort to the lake's temporary
   * folder beyond it instead of growing, and its allocator is flushed after a task that used an eighth
   * of it and by jemalloc's background threads between seals. DuckDB's defaults (80 % of the machine,
   * 128 MiB, no background threads) when absent.
   */
  readonly memoryLimitBytes?: number;
  /**
   * `.partial` files older than this are removed on open: they are what a writer that crashed
   * between writing and renaming leaves behind. Default one hour, so that a slow writer in another
   * process sharing the lake is not robbed of its file.
   */
  readonly removeTemporaryFilesOlderThanMs?: number;
  /**
   * Called after every temporary file of a batch is written and synced, before the first rename:
   * the point where a crash leaves only `.partial` files. A seam for fault-injection tests.
   */
  readonly afterTemporaryWrite?: (temporaryFiles: readonly string[]) => void | Promise<void>;
}

export interface LakePartitionWrite extends LakePartition {
  readonly rows: number;
  /** Absolute path of the data file. */
  readonly file: string;
}

export interface LakeWriteResult {
  readonly kind: LakeKind;
  readonly checkpointId: string;
  /** Absolute paths of the files written (one per partition), in partition order. */
  readonly files: readonly string[];
  readonly rows: number;
  readonly partitions: readonly LakePartitionWrite[];
}

/** Rows of the table's type, or an Arrow batch whose columns carry the table's column names. */
export type LakeBatch<K extends LakeKind> = readonly LakeRowByKind[K][] | RecordBatch | Table;

/** A value bound to a `$name` parameter of {@link ParquetLake.query}. */
export type LakeParam = string | number | bigint | boolean | null;

/** A value read back: DuckDB's plain-JS form (timestamps as `Date`, lists as arrays, counts as bigint). */
export type LakeValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | LakeValue[]
  | { [key: string]: LakeValue };

export type LakeRow = Record<string, LakeValue>;

export interface ParquetLake {
  readonly dir: string;
  /**
   * Writes one checkpoint's rows of a table, replacing any files the same checkpoint wrote before.
   * Resolves once every file is renamed into place and synced; rejects with {@link LakeInputError}
   * (bad rows or checkpoint id) or {@link LakeWriteError}, leaving no new file visible.
   */
  writeBatch<K extends LakeKind>(
    kind: K,
    batch: LakeBatch<K>,
    checkpointId: string,
  ): Promise<LakeWriteResult>;
  /**
   * Runs SQL on the lake. Each table is a view named after it (`readings`, `hourly`,
   * `quarantine`) over its Parquet files with `year` and `month` from the path; the session time
   * zone is UTC. Values go in `$name` parameters, never into the SQL text.
   */
  query(sql: string, params?: Readonly<Record<string, LakeParam>>): Promise<LakeRow[]>;
  /** Data files of a table visible to readers, sorted. */
  listFiles(kind: LakeKind): Promise<string[]>;
  /**
   * Removes every file `writer` wrote for epochs after `committed` (ids from `epochPartId`), in every
   * table: what a worker killed before its checkpoint left behind. Returns the files removed.
   */
  removeEpochsAfter(writer: string, committed: number): Promise<string[]>;
  /**
   * A spool for one part of `owner`'s rows of a table: rows are encoded to files in the lake's
   * temporary folder as they arrive, so the heap does not hold them, and DuckDB converts the files to
   * Parquet in its own threads when the part is written. `owner` (a worker id) names the files, so
   * that {@link removeSpools} can clear what a killed worker left.
   */
  spool<K extends LakeKind>(kind: K, owner: string): LakeSpool<K>;
  /** Removes spool files of `owner` that no open spool of this lake is using: a killed worker's. */
  removeSpools(owner: string): Promise<string[]>;
  /**
   * DuckDB's own account of its memory and the limits it runs under. Answers while a write runs (its
   * own connection, not queued behind the writes).
   */
  memory(): Promise<LakeMemory>;
  close(): Promise<void>;
}

/** What DuckDB reports about its memory (`duckdb_memory()`, `memory_limit`, `threads`). */
export interface LakeMemory {
  /** Bytes its buffer manager holds now (all tags of `duckdb_memory()`). */
  readonly usedBytes: number;
  /** Bytes spilled to its temporary directory now. */
  readonly temporaryBytes: number;
  /** `memory_limit` as DuckDB reads it back, e.g. `256.0 MiB`. */
  readonly memoryLimit: string;
  readonly threads: number;
  /** `allocator_background_threads`: jemalloc's threads hand freed pages back between seals. */
  readonly allocatorBackgroundThreads: boolean;
}

/** A position in a spool: its row count and the length of each of its files. */
export interface LakeSpoolMark {
  readonly rows: number;
  readonly parts: readonly { readonly length: number; readonly rows: number }[];
}

/** One part of a table's rows, spooled to files until it is written; see {@link ParquetLake.spool}. */
export interface LakeSpool<K extends LakeKind> {
  readonly kind: K;
  /** Rows spooled so far. */
  readonly rows: number;
  /**
   * Encodes `rows` onto the spool. A row the table cannot hold rejects the whole call with
   * {@link LakeInputError}, spooling none of its rows.
   */
  append(rows: readonly LakeRowByKind[K][]): void;
  /** Where the spool stands now, for {@link rewind}. */
  mark(): LakeSpoolMark;
  /** Takes back every row appended since `mark` was taken. */
  rewind(mark: LakeSpoolMark): void;
  /**
   * Writes the spooled rows as `checkpointId`'s files, as {@link ParquetLake.writeBatch} writes a
   * batch, then removes the spool files whatever the outcome. The spool takes no rows after this.
   */
  write(checkpointId: string): Promise<LakeWriteResult>;
  /** Removes the spool files without writing them. */
  discard(): Promise<void>;
}

const DEFAULT_TEMPORARY_MAX_AGE_MS = 60 * 60 * 1000;
/** DuckDB refuses to run a query below a few MiB per thread; below this a limit is a mistake. */
export const MIN_DUCKDB_MEMORY_BYTES = 32 * 1024 * 1024;
/** DuckDB's threads when the lake has a memory limit and no thread count is given. */
export const LAKE_THREADS_UNDER_BUDGET = 1;
/** DuckDB's spill files, under the lake's temporary folder. */
const DUCKDB_SPILL_FOLDER = 'duckdb-spill';
/**
 * Rows of a Parquet row group. DuckDB's writer holds a row group's columns (and their dictionaries) until
 * it is flushed, on top of the seal's sorted rows: at its default (122,880) that was ~110 MiB of a
 * 200,000-row readings part's 187 MiB peak, at 30,720 ~40 MiB, for files 0.2 % larger and no more CPU.
 * A multiple of DuckDB's vector size (2,048).
 */
export const PARQUET_ROW_GROUP_ROWS = 30_720;
/** The `COPY … TO` options of every lake file. */
const PARQUET_COPY_OPTIONS = `FORMAT PARQUET, COMPRESSION ${PARQUET_COMPRESSION}, ROW_GROUP_SIZE ${PARQUET_ROW_GROUP_ROWS}`;
/**
 * `read_csv`'s smallest `max_line_size` and `buffer_size` for a spool file, bytes. Its buffers are
 * `buffer_size` each, two at a time: at its default (16 × `max_line_size`) they held 64 MiB of a seal
 * while it read, here 4 MiB, for no more CPU. A longer line raises both (a buffer must hold a line).
 */
const SPOOL_READ_BUFFER_BYTES = 2 * 1024 * 1024;
/** ENUM staging pays off for repeated values; beyond this many distinct values a VARCHAR is cheaper. */
const MAX_ENUM_MEMBERS = 256;
// DuckDB's glob reads these as patterns, so a lake path containing them would match other folders.
const GLOB_CHARACTERS = /[*?[\]{}]/;

export async function openParquetLake(options: ParquetLakeOptions): Promise<ParquetLake> {
  const dir = resolve(options.dir);
  if (GLOB_CHARACTERS.test(dir)) {
    throw new LakeInputError('The lake path must not contain glob characters (* ? [ ] { })', { dir });
  }
  const config: Record<string, string> = {};
  if (options.threads !== undefined) config.threads = String(options.threads);
  if (options.memoryLimitBytes !== undefined) {
    if (
      !Number.isSafeInteger(options.memoryLimitBytes) ||
      options.memoryLimitBytes < MIN_DUCKDB_MEMORY_BYTES
    ) {
      throw new LakeInputError(
        `The lake's memory limit must be a whole number of bytes of at least ${MIN_DUCKDB_MEMORY_BYTES}`,
        {
          memoryLimitBytes: options.memoryLimitBytes,
        },
      );
    }
    config.memory_limit = `${Math.floor(options.memoryLimitBytes / 1024)}KiB`;
    // With it (and the limit) the memory no holder accounts for at the 50,000-meter day's peak fell
    // from ~0.8 to ~0.35-0.4 GB: DuckDB's default (128 MiB a thread) keeps what its seals freed.
    config.allocator_flush_threshold = `${Math.floor(options.memoryLimitBytes / 8 / 1024)}KiB`;
    // DuckDB's jemalloc keeps the pages a seal freed (dirty) until one of its own threads next allocates
    // or frees: between seals that was 90-200 MB of the worker's resident set no holder reports.
    // Background threads hand them back to the system on jemalloc's decay clock instead.
    config.allocator_background_threads = 'true';
    // One thread unless told otherwise: a seal sorts in every thread's memory at once, and on the
    // 20,000-meter run two threads held up to 230 MB at a seal against ~180 MB with one, for no less
    // processing time (the job's own loop keeps a second core busy while a part is sealed).
    config.threads = String(options.threads ?? LAKE_THREADS_UNDER_BUDGET);
    // Where the sort spills: inside the lake, next to the spool files it reads (not the working folder).
    config.temp_directory = join(dir, TEMPORARY_FOLDER, DUCKDB_SPILL_FOLDER);
  }
  let instance: DuckDBInstance | undefined;
  let connection: DuckDBConnection | undefined;
  try {
    await mkdir(dir, { recursive: true });
    await mkdirInside(dir, join(dir, TEMPORARY_FOLDER));
    await removeStaleTemporaryFiles(
      join(dir, TEMPORARY_FOLDER),
      options.removeTemporaryFilesOlderThanMs ?? DEFAULT_TEMPORARY_MAX_AGE_MS,
    );
    instance = await DuckDBInstance.create(':memory:', config);
    connection = await instance.connect();
    // TIMESTAMPTZ parts (year(), hour(), casts to text) follow the session zone; pin it.
    await connection.run(`SET TimeZone = 'UTC'`);
    const lake = new DuckDBParquetLake(dir, instance, connection, options.afterTemporaryWrite);
    for (const kind of lakeKinds) await lake.refreshView(kind);
    return lake;
  } catch (cause) {
    connection?.closeSync();
    instance?.closeSync();
    if (cause instanceof ParquetLakeError) throw cause;
    throw new LakeWriteError('Could not open the Parquet lake', { dir }, { cause });
  }
}

/** How a column is held in the DuckDB temp table before it is copied out. */
type StagingKind =
  | 'varchar'
  | 'enum'
  | 'time'
  | 'double'
  | 'utinyint'
  | 'uinteger'
  | 'ubigint'
  | 'bigint'
  | 'list';

interface StagingColumn {
  readonly name: string;
  readonly columnType: ColumnType;
  readonly kind: StagingKind;
  readonly nullable: boolean;
  readonly duckdbType: DuckDBType;
  readonly ddlType: string;
  readonly valueAt: ValueAt;
}

type ValueAt = (rowIndex: number) => CellValue;

/** A batch seen column by column, whatever it arrived as. */
interface ColumnarBatch {
  readonly length: number;
  readonly valueAt: readonly ValueAt[];
}

interface PartitionPart {
  readonly partition: LakePartition;
  /** Row indices of the batch in this partition; `null` when it holds the whole batch. */
  readonly rows: Int32Array | null;
  readonly rowCount: number;
}

class DuckDBParquetLake implements ParquetLake {
  readonly dir: string;
  private readonly instance: DuckDBInstance;
  private readonly connection: DuckDBConnection;
  /** A second connection for `memory()`, opened on first use. */
  private probe: DuckDBConnection | undefined;
  private readonly afterTemporaryWrite: ParquetLakeOptions['afterTemporaryWrite'];
  /** One connection, one statement at a time: every operation queues behind the previous one. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly viewHasFiles = new Map<LakeKind, boolean>();
  private sequence = 0;
  private closed = false;
  /** This lake's spools not yet written or discarded, and their files, which `removeSpools` leaves alone. */
  private readonly openSpools: SpoolRegistry = { spools: new Set(), files: new Set() };

  constructor(
    dir: string,
    instance: DuckDBInstance,
    connection: DuckDBConnection,
    afterTemporaryWrite: ParquetLakeOptions['afterTemporaryWrite'],
  ) {
    this.dir = dir;
    this.instance = instance;
    this.connection = connection;
    this.afterTemporaryWrite = afterTemporaryWrite;
  }

  writeBatch<K extends LakeKind>(
    kind: K,
    batch: LakeBatch<K>,
    checkpointId: string,
  ): Promise<LakeWriteResult> {
    return this.enqueue(() => this.write(kind, batch, checkpointId));
  }

  query(sql: string, params?: Readonly<Record<string, LakeParam>>): Promise<LakeRow[]> {
    return this.enqueue(async () => {
      for (const kind of lakeKinds) {
        if (this.viewHasFiles.get(kind) !== true) await this.refreshView(kind);
      }
      try {
        const reader = await this.connection.runAndReadAll(
          sql,
          params as Record<string, DuckDBValue> | undefined,
        );
        return reader.getRowObjectsJS() as LakeRow[];
      } catch (cause) {
        throw new LakeQueryError('Lake query failed', { operation: 'query' }, { cause });
      }
    });
  }

  async listFiles(kind: LakeKind): Promise<string[]> {
    return (await parquetFilesUnder(join(this.dir, lakeTables[kind].folder))).sort();
  }

  removeEpochsAfter(writer: string, committed: number): Promise<string[]> {
    return this.enqueue(async () => {
      const removed: string[] = [];
      for (const kind of lakeKinds) {
        for (const file of await this.listFiles(kind)) {
          const epoch = epochOfPartFile(writer, basename(file));
          if (epoch === undefined || epoch <= committed) continue;
          await rm(file, { force: true });
          removed.push(file);
        }
        // The view may now match no file: checked again at the next query.
        this.viewHasFiles.delete(kind);
      }
      return removed;
    });
  }

  spool<K extends LakeKind>(kind: K, owner: string): LakeSpool<K> {
    const table = lakeTables[kind] as LakeTable<unknown> | undefined;
    if (table === undefined) throw new LakeInputError('Unknown lake table', { kind: String(kind) });
    if (typeof owner !== 'string' || !isValidCheckpointId(owner)) {
      throw new LakeInputError('A spool owner must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', { kind });
    }
    if (this.closed) throw new ParquetLakeError('The lake is closed', { dir: this.dir });
    const prefix = join(this.dir, TEMPORARY_FOLDER, `${kind}.${owner}.${process.pid}.${++this.sequence}.`);
    return new CsvSpool<K>(kind as K, table, prefix, this.openSpools, (spool, checkpointId) =>
      this.enqueue(() => this.writeSpool(table, spool, checkpointId)),
    );
  }

  removeSpools(owner: string): Promise<string[]> {
    if (typeof owner !== 'string' || !isValidCheckpointId(owner)) {
      return Promise.reject(
        new LakeInputError('A spool owner must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', {}),
      );
    }
    return this.enqueue(async () => {
      const folder = join(this.dir, TEMPORARY_FOLDER);
      const removed: string[] = [];
      for (const entry of await readdir(folder)) {
        const path = join(folder, entry);
        if (!isSpoolOf(entry, owner) || this.openSpools.files.has(path)) continue;
        await rm(path, { force: true });
        removed.push(path);
      }
      return removed;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Rows spooled for a part never written come again with the replay of their epoch.
    for (const spool of [...this.openSpools.spools]) await spool.discard().catch(() => undefined);
    await this.queue.catch(() => undefined);
    this.probe?.closeSync();
    this.connection.closeSync();
    this.instance.closeSync();
  }

  async memory(): Promise<LakeMemory> {
    if (this.closed) throw new LakeQueryError('The lake is closed', { operation: 'memory' });
    try {
      this.probe ??= await this.instance.connect();
      const reader = await this.probe.runAndReadAll(
        `SELECT (SELECT sum(memory_usage_bytes) FROM duckdb_memory())::DOUBLE AS used,
                (SELECT sum(temporary_storage_bytes) FROM duckdb_memory())::DOUBLE AS temporary,
                current_setting('memory_limit') AS memory_limit,
                current_setting('threads')::INTEGER AS threads,
                current_setting('allocator_background_threads')::BOOLEAN AS background`,
      );
      const row = reader.getRowObjectsJS()[0] as {
        used: number;
        temporary: number;
        memory_limit: string;
        threads: number;
        background: boolean;
      };
      return {
        usedBytes: row.used,
        temporaryBytes: row.temporary,
        memoryLimit: row.memory_limit,
        threads: row.threads,
        allocatorBackgroundThreads: row.background,
      };
    } catch (cause) {
      throw new LakeQueryError("Could not read the lake engine's memory", { operation: 'memory' }, { cause });
    }
  }

  /**
   * Points the table's view at its files, or, while it has none (`read_parquet` refuses a glob
   * that matches nothing), at an empty relation with the same columns so queries still bind.
   */
  async refreshView(kind: LakeKind): Promise<void> {
    const table: LakeTable<unknown> = lakeTables[kind] as LakeTable<unknown>;
    const hasFiles = await hasParquetFile(join(this.dir, table.folder));
    if (this.viewHasFiles.get(kind) === hasFiles) return;
    const view = duckdbIdent(kind);
    const hiveTypes = partitionColumns.map((p) => `${duckdbLiteral(p.name)}: ${duckdbLiteral(p.duckdbType)}`);
    const source = hasFiles
      ? `SELECT * FROM read_parquet(${duckdbLiteral(join(this.dir, table.folder, '**', '*.parquet'))},
           hive_partitioning = true, hive_types = {${hiveTypes.join(', ')}}, union_by_name = true)`
      : `SELECT ${[
          ...table.columns.map((c) => `CAST(NULL AS ${duckdbTypeOf(c.type)}) AS ${duckdbIdent(c.name)}`),
          ...partitionColumns.map((p) => `CAST(NULL AS ${p.duckdbType}) AS ${duckdbIdent(p.name)}`),
        ].join(', ')} WHERE false`;
    await this.connection.run(`CREATE OR REPLACE VIEW ${view} AS ${source}`);
    this.viewHasFiles.set(kind, hasFiles);
  }

  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ParquetLakeError('The lake is closed', { dir: this.dir }));
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async write<K extends LakeKind>(
    kind: K,
    batch: LakeBatch<K>,
    checkpointId: string,
  ): Promise<LakeWriteResult> {
    const table = lakeTables[kind] as LakeTable<unknown> | undefined;
    if (table === undefined) throw new LakeInputError('Unknown lake table', { kind: String(kind) });
    if (typeof checkpointId !== 'string' || !isValidCheckpointId(checkpointId)) {
      throw new LakeInputError('A checkpoint id must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', { kind });
    }
    const context = { kind, checkpointId };
    const columnar = toColumnar(table, batch as readonly unknown[] | RecordBatch | Table, context);
    if (columnar.length === 0) return { kind, checkpointId, files: [], rows: 0, partitions: [] };
    const parts = splitByPartition(table, columnar, context);
    return this.publish(
      table,
      checkpointId,
      parts.map((part) => ({
        partition: part.partition,
        rowCount: part.rowCount,
        produce: (path: string) => this.copyPartToFile(table, columnar, part, path, context),
      })),
    );
  }

  /**
   * Makes each part's file as a synced temporary file, then renames them all into place: the step
   * every write shares, whatever produced the rows.
   */
  private async publish(
    table: LakeTable<unknown>,
    checkpointId: string,
    parts: readonly {
      readonly partition: LakePartition;
      readonly rowCount: number;
      readonly produce: (path: string) => Promise<void>;
    }[],
  ): Promise<LakeWriteResult> {
    const kind = table.kind;
    const context = { kind, checkpointId };
    const temporaryFiles: string[] = [];
    const written: LakePartitionWrite[] = [];
    try {
      for (const part of parts) {
        const [yearFolder, monthFolder] = partitionSegments(part.partition);
        const { year, month } = part.partition;
        const temporary = join(
          this.dir,
          TEMPORARY_FOLDER,
          `${kind}.${checkpointId}.${year}-${month}.${process.pid}.${++this.sequence}${TEMPORARY_SUFFIX}`,
        );
        temporaryFiles.push(temporary);
        await part.produce(temporary);
        await syncPath(temporary);
        const file = join(this.dir, table.folder, yearFolder, monthFolder, partFileName(checkpointId));
        written.push({ ...part.partition, rows: part.rowCount, file });
      }
      await this.afterTemporaryWrite?.(temporaryFiles);
    } catch (cause) {
      await Promise.all(temporaryFiles.map((f) => rm(f, { force: true })));
      if (cause instanceof ParquetLakeError) throw cause;
      throw new LakeWriteError('Writing the Parquet files failed', context, { cause });
    }

    // From here each rename publishes one whole file; a crash between renames leaves some partitions
    // published, and the replay of the checkpoint rewrites them all under the same names.
    try {
      for (let i = 0; i < written.length; i++) {
        const target = (written[i] as LakePartitionWrite).file;
        const folder = join(target, '..');
        await mkdirInside(this.dir, folder);
        await rename(temporaryFiles[i] as string, target);
        await syncPath(folder);
      }
    } catch (cause) {
      await Promise.all(temporaryFiles.map((f) => rm(f, { force: true })));
      throw new LakeWriteError('Publishing the Parquet files failed', context, { cause });
    }
    if (this.viewHasFiles.get(kind) !== true) await this.refreshView(kind);
    return {
      kind,
      checkpointId,
      files: written.map((w) => w.file),
      rows: written.reduce((sum, w) => sum + w.rows, 0),
      partitions: written,
    };
  }

  /** Writes a closed spool's parts as `checkpointId`'s files; removes the spool files in any case. */
  private async writeSpool(
    table: LakeTable<unknown>,
    spool: SpoolContents,
    checkpointId: string,
  ): Promise<LakeWriteResult> {
    const kind = table.kind;
    try {
      if (!isValidCheckpointId(checkpointId)) {
        throw new LakeInputError('A checkpoint id must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', { kind });
      }
      if (spool.parts.length === 0) return { kind, checkpointId, files: [], rows: 0, partitions: [] };
      const columns = spoolColumnsOf(table.columns);
      const readColumns = `{${columns.readTypes
        .map(([name, type]) => `${duckdbLiteral(name)}: ${duckdbLiteral(type)}`)
        .join(', ')}}`;
      const select = table.columns.map((c) => {
        const ident = duckdbIdent(c.name);
        return `${spoolOutputExpression(c, ident, duckdbTypeOf(c.type))} AS ${ident}`;
      });
      const order = table.sortColumns.map((name) =>
        String(table.columns.findIndex((c) => c.name === name) + 1),
      );
      const parts = [...spool.parts].sort(
        (a, b) => a.partition.year - b.partition.year || a.partition.month - b.partition.month,
      );
      return await this.publish(
        table,
        checkpointId,
        parts.map((part) => ({
          partition: part.partition,
          rowCount: part.rows,
          produce: async (path: string) => {
            // read_csv's lines may not exceed max_line_size, nor its buffers: a huge raw line raises both.
            const lineBytes = Math.max(SPOOL_READ_BUFFER_BYTES, part.maxLineBytes + 16);
            await this.connection.run(
              `COPY (SELECT ${select.join(', ')} FROM read_csv($source, columns = ${readColumns},
                 header = false, auto_detect = false, delim = ',', quote = '"', escape = '"',
                 nullstr = '\\N', allow_quoted_nulls = false, max_line_size = ${lineBytes},
                 buffer_size = ${lineBytes})
                 ${order.length > 0 ? ` ORDER BY ${order.join(', ')}` : ''})
               TO $path (${PARQUET_COPY_OPTIONS})`,
              { source: part.file, path },
            );
          },
        })),
      );
    } finally {
      await Promise.all(
        spool.parts.map(async (part) => {
          await rm(part.file, { force: true });
          this.openSpools.files.delete(part.file);
        }),
      );
    }
  }

  /** Appends one partition's rows to a temp table in data chunks and copies it to `path`. */
  private async copyPartToFile(
    table: LakeTable<unknown>,
    columnar: ColumnarBatch,
    part: PartitionPart,
    path: string,
    context: LakeErrorContext,
  ): Promise<void> {
    const staging = stagingColumnsOf(table.columns, columnar, part);
    const stagingTable = `lake_staging_${this.sequence}`;
    const definitions = staging.map(
      (c) => `${duckdbIdent(c.name)} ${c.ddlType}${c.nullable ? '' : ' NOT NULL'}`,
    );
    await this.connection.run(`CREATE OR REPLACE TEMP TABLE ${stagingTable} (${definitions.join(', ')})`);
    try {
      const appender = await this.connection.createAppender(stagingTable);
      try {
        appendRows(appender, staging, part, context);
      } finally {
        appender.closeSync();
      }
      const select = staging.map((c) => `${outputExpression(c)} AS ${duckdbIdent(c.name)}`);
      const order = table.sortColumns.map((name) => String(staging.findIndex((c) => c.name === name) + 1));
      await this.connection.run(
        `COPY (SELECT ${select.join(', ')} FROM ${stagingTable}${order.length > 0 ? ` ORDER BY ${order.join(', ')}` : ''})
         TO $path (${PARQUET_COPY_OPTIONS})`,
        { path },
      );
    } finally {
      // Best effort: failing to drop must not hide why the copy failed, and a leftover temp table
      // only costs memory until the next CREATE OR REPLACE or close.
      await this.connection.run(`DROP TABLE IF EXISTS ${stagingTable}`).catch(() => undefined);
    }
  }
}

function toColumnar(
  table: LakeTable<unknown>,
  batch: readonly unknown[] | RecordBatch | Table,
  context: LakeErrorContext,
): ColumnarBatch {
  if (Array.isArray(batch)) {
    const rows = batch as readonly unknown[];
    for (let i = 0; i < rows.length; i++) {
      if (typeof rows[i] !== 'object' || rows[i] === null) {
        throw new LakeInputError('A row is not an object', { ...context, row: i });
      }
    }
    return {
      length: rows.length,
      valueAt: table.columns.map((column) => {
        const get = column.get;
        return (i: number) => get(rows[i]);
      }),
    };
  }
  const arrow = batch as RecordBatch | Table;
  if (typeof arrow?.getChild !== 'function') {
    throw new LakeInputError('A batch is an array of rows or an Arrow RecordBatch or Table', context);
  }
  return {
    length: arrow.numRows,
    valueAt: table.columns.map((column) => {
      const vector = arrow.getChild(column.name);
      if (vector === null) {
        throw new LakeInputError('The Arrow batch lacks a column', { ...context, column: column.name });
      }
      let values: CellValue[];
      try {
        values = arrowColumnValues(vector, column.type, column.name);
      } catch (cause) {
        throw new LakeInputError(
          'An Arrow column has the wrong type',
          { ...context, column: column.name },
          { cause },
        );
      }
      return (i: number) => values[i] as CellValue;
    }),
  };
}

/** Groups row indices by partition, in partition order; a one-partition batch keeps no index list. */
function splitByPartition(
  table: LakeTable<unknown>,
  columnar: ColumnarBatch,
  context: LakeErrorContext,
): PartitionPart[] {
  const timeAt = columnar.valueAt[
    table.columns.findIndex((c) => c.name === table.partitionTimeColumn)
  ] as ValueAt;
  const fallbackIndex = table.columns.findIndex((c) => c.name === table.partitionFallbackColumn);
  const fallbackAt = fallbackIndex >= 0 ? columnar.valueAt[fallbackIndex] : undefined;
  const partitionOfRow = new Int32Array(columnar.length);
  const partitions: LakePartition[] = [];
  const counts: number[] = [];
  // Rows of a batch nearly always share a month: test against the last month's range before
  // building a Date.
  let start = 0;
  let end = -1;
  let current = -1;
  for (let i = 0; i < columnar.length; i++) {
    const time = partitionTime(timeAt(i), fallbackAt === undefined ? undefined : () => fallbackAt(i), table, {
      ...context,
      row: i,
    });
    if (time < start || time >= end) {
      const partition = rowPartition(time, { ...context, row: i });
      [start, end] = partitionRange(partition);
      current = partitions.findIndex((p) => p.year === partition.year && p.month === partition.month);
      if (current < 0) {
        current = partitions.push(partition) - 1;
        counts.push(0);
      }
    }
    partitionOfRow[i] = current;
    counts[current] = (counts[current] as number) + 1;
  }
  if (partitions.length === 1) {
    return [{ partition: partitions[0] as LakePartition, rows: null, rowCount: columnar.length }];
  }
  const indices = counts.map((count) => new Int32Array(count));
  const filled = counts.map(() => 0);
  for (let i = 0; i < columnar.length; i++) {
    const p = partitionOfRow[i] as number;
    (indices[p] as Int32Array)[filled[p]++] = i;
  }
  return partitions
    .map((partition, p) => ({ partition, rows: indices[p] as Int32Array, rowCount: counts[p] as number }))
    .sort((a, b) => a.partition.year - b.partition.year || a.partition.month - b.partition.month);
}

function stagingColumnsOf(
  columns: readonly Column<unknown>[],
  columnar: ColumnarBatch,
  part: PartitionPart,
): StagingColumn[] {
  return columns.map((column, index) => stagingColumnOf(column, columnar.valueAt[index] as ValueAt, part));
}

function stagingColumnOf(column: Column<unknown>, valueAt: ValueAt, part: PartitionPart): StagingColumn {
  const base = {
    name: column.name,
    columnType: column.type,
    nullable: isNullableColumnType(column.type),
    valueAt,
  };
  switch (column.type) {
    case 'String':
    case 'LowCardinalityString': {
      const members = enumMembers(valueAt, part, false);
      if (members !== null) {
        return {
          ...base,
          kind: 'enum',
          duckdbType: ENUM([...members.keys()]),
          ddlType: `ENUM(${[...members.values()].join(', ')})`,
        };
      }
      return { ...base, kind: 'varchar', duckdbType: VARCHAR, ddlType: 'VARCHAR' };
    }
    case 'DateTime':
    case 'NullableDateTime':
      // Epoch ms staged as DOUBLE fills a Float64Array directly; TIMESTAMP vectors want a BigInt per value.
      return { ...base, kind: 'time', duckdbType: DOUBLE, ddlType: 'DOUBLE' };
    case 'Float64':
    case 'NullableFloat64':
      return { ...base, kind: 'double', duckdbType: DOUBLE, ddlType: 'DOUBLE' };
    case 'UInt8':
      return { ...base, kind: 'utinyint', duckdbType: UTINYINT, ddlType: 'UTINYINT' };
    case 'UInt32':
      return { ...base, kind: 'uinteger', duckdbType: UINTEGER, ddlType: 'UINTEGER' };
    case 'UInt64':
      return { ...base, kind: 'ubigint', duckdbType: UBIGINT, ddlType: 'UBIGINT' };
    case 'Int64':
      return { ...base, kind: 'bigint', duckdbType: BIGINT, ddlType: 'BIGINT' };
    case 'ArrayString': {
      // Flags come from a small vocabulary: ENUM items spare a native string call per item.
      const members = enumMembers(valueAt, part, true);
      if (members !== null && members.size > 0) {
        return {
          ...base,
          kind: 'list',
          duckdbType: LIST(ENUM([...members.keys()])),
          ddlType: `ENUM(${[...members.values()].join(', ')})[]`,
        };
      }
      return { ...base, kind: 'list', duckdbType: LIST(VARCHAR), ddlType: 'VARCHAR[]' };
    }
  }
}

/**
 * The distinct values of a string column (or of a string-array column's items) when there are few:
 * an ENUM vector takes an index per value where a VARCHAR vector makes a native call per string,
 * several times faster for units, statuses, sources and flags that repeat across a batch. `null`
 * when the column is better left VARCHAR.
 */
function enumMembers(
  valueAt: ValueAt,
  part: PartitionPart,
  ofListItems: boolean,
): Map<string, string> | null {
  /** Member → its literal for the ENUM type's DDL. */
  const members = new Map<string, string>();
  const admit = (value: string): boolean => {
    if (members.has(value)) return true;
    if (members.size === MAX_ENUM_MEMBERS) return false;
    try {
      members.set(value, duckdbLiteral(value));
      return true;
    } catch {
      // A string DuckDB cannot take as a literal (NUL, lone surrogate) stays VARCHAR: the appender
      // takes any string.
      return false;
    }
  };
  let previous: CellValue | undefined;
  for (let i = 0; i < part.rowCount; i++) {
    const value = valueAt(part.rows === null ? i : (part.rows[i] as number));
    if (value === previous) continue;
    previous = value;
    if (typeof value === 'string') {
      if (!ofListItems && !admit(value)) return null;
    } else if (ofListItems && Array.isArray(value)) {
      for (const item of value as readonly unknown[]) {
        if (typeof item === 'string' && !admit(item)) return null;
      }
    }
  }
  return members;
}

function appendRows(
  appender: { appendDataChunk(chunk: DuckDBDataChunk): void },
  staging: readonly StagingColumn[],
  part: PartitionPart,
  context: LakeErrorContext,
): void {
  const types = staging.map((c) => c.duckdbType);
  const converters = staging.map((c) => converterOf(c, context));
  // DuckDB's vector size (2,048): the most rows a data chunk holds.
  const chunkSize = DuckDBVector.standardSize();
  const nulls: number[] = [];
  for (let start = 0; start < part.rowCount; start += chunkSize) {
    const size = Math.min(chunkSize, part.rowCount - start);
    const chunk = DuckDBDataChunk.create(types, size);
    for (let c = 0; c < staging.length; c++) {
      const vector = chunk.getColumnVector(c);
      const convert = converters[c] as Converter;
      const valueAt = (staging[c] as StagingColumn).valueAt;
      nulls.length = 0;
      for (let i = 0; i < size; i++) {
        const row = part.rows === null ? start + i : (part.rows[start + i] as number);
        const value = convert(valueAt(row), row);
        if (value === null) nulls.push(i);
        else vector.setItem(i, value);
      }
      // NULLs last: node-api keeps no validity mask until the first NULL, and once it has one every
      // setItem pays for BigInt bit twiddling, so this confines that cost to the NULL rows.
      for (const i of nulls) vector.setItem(i, null);
      vector.flush();
    }
    appender.appendDataChunk(chunk);
  }
}

type Converter = (value: CellValue, row: number) => DuckDBValue;

function converterOf(column: StagingColumn, context: LakeErrorContext): Converter {
  const { name, nullable } = column;
  const reject = (row: number, expected: string): never => {
    throw new LakeInputError(`Expected ${expected}`, { ...context, column: name, row });
  };
  switch (column.kind) {
    case 'varchar':
    case 'enum':
      return (value, row) => (typeof value === 'string' ? value : reject(row, 'a string'));
    case 'time':
      return (value, row) =>
        typeof value === 'number' && Number.isFinite(value)
          ? value
          : value === null && nullable
            ? null
            : reject(row, 'epoch milliseconds');
    case 'double':
      return (value, row) =>
        typeof value === 'number' ? value : value === null && nullable ? null : reject(row, 'a number');
    case 'utinyint':
    case 'uinteger': {
      const max = column.kind === 'utinyint' ? 0xff : 0xffff_ffff;
      return (value, row) => {
        const n = typeof value === 'boolean' ? Number(value) : value;
        return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
          ? n
          : reject(row, `an integer in 0..${max}`);
      };
    }
    case 'ubigint':
    case 'bigint': {
      const min = column.kind === 'ubigint' ? 0 : Number.MIN_SAFE_INTEGER;
      return (value, row) =>
        typeof value === 'number' && Number.isSafeInteger(value) && value >= min
          ? BigInt(value)
          : reject(row, 'a safe integer');
    }
    case 'list':
      return (value, row) => {
        if (!Array.isArray(value)) return reject(row, 'an array of strings');
        for (const item of value as readonly unknown[]) {
          if (typeof item !== 'string') return reject(row, 'an array of strings');
        }
        return listValue(value as readonly string[]);
      };
  }
}

/** The Parquet column expression for a staged column, typed as `schemas/parquet.ts` says. */
function outputExpression(column: StagingColumn): string {
  const ident = duckdbIdent(column.name);
  switch (column.kind) {
    case 'time':
      // Microseconds since the epoch make the instant directly: no session time zone is involved, and no
      // ICU call (`timezone('UTC', epoch_ms(…))`, the same values, spent ~7 % of a seal's CPU in ICU).
      return `make_timestamptz(CAST(${ident} AS BIGINT) * 1000)`;
    default:
      return `CAST(${ident} AS ${duckdbTypeOf(column.columnType)})`;
  }
}

/**
 * fsync of a file, or of a folder to make a rename in it durable: the directory entry, not only the
 * file's bytes, must reach the disk before the caller acknowledges upstream.
 */
/** A row's partition time (its fallback column's when the time is null), or a `LakeInputError`. */
function partitionTime(
  time: unknown,
  fallback: (() => unknown) | undefined,
  table: { readonly partitionTimeColumn: string },
  context: LakeErrorContext,
): number {
  const chosen = time === null && fallback !== undefined ? fallback() : time;
  if (typeof chosen !== 'number' || !Number.isFinite(chosen)) {
    throw new LakeInputError('A row has no usable partition time', {
      ...context,
      column: table.partitionTimeColumn,
    });
  }
  return chosen;
}

/** The year and month a row's time falls in, or a `LakeInputError` for a time out of range. */
function rowPartition(time: number, context: LakeErrorContext): LakePartition {
  try {
    return partitionOf(time);
  } catch (cause) {
    throw new LakeInputError('A row time is out of range', context, { cause });
  }
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function parquetFilesUnder(folder: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(folder, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return entries.filter((entry) => entry.endsWith('.parquet')).map((entry) => join(folder, entry));
}

async function hasParquetFile(folder: string): Promise<boolean> {
  return (await parquetFilesUnder(folder)).length > 0;
}

async function removeStaleTemporaryFiles(folder: string, maxAgeMs: number): Promise<void> {
  const cutoff = Date.now() - maxAgeMs;
  for (const entry of await readdir(folder)) {
    // A spool file is written to while its part lasts, so its age is the time since its last row.
    if (!entry.endsWith(TEMPORARY_SUFFIX) && !entry.endsWith(SPOOL_SUFFIX)) continue;
    const path = join(folder, entry);
    try {
      if ((await stat(path)).mtimeMs <= cutoff) await rm(path, { force: true });
    } catch (error) {
      // Another process may have renamed or removed it meanwhile.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

/**
 * Creates `folder` under the lake root `root` one level at a time, refusing any level that is a symbolic
 * link (or not a folder): a link planted as a lake child must not make the worker write outside the lake.
 */
async function mkdirInside(root: string, folder: string): Promise<void> {
  const rel = relative(root, folder);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new LakeWriteError('A lake folder lies outside the lake root', { folder });
  }
  let current = root;
  for (const part of rel.split(sep)) {
    if (part === '') continue;
    current = join(current, part);
    try {
      await mkdir(current);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
    }
    const info = await lstat(current);
    if (!info.isDirectory()) {
      throw new LakeWriteError(
        `Refusing to write through ${info.isSymbolicLink() ? 'a symbolic link' : 'a file'} in the lake`,
        { folder: current },
      );
    }
  }
}

/** One partition's spool file. */
interface SpoolPart {
  readonly partition: LakePartition;
  readonly file: string;
  rows: number;
  /** The longest line, bytes. */
  maxLineBytes: number;
}

/** A spool file being filled: lines go to `out` and from there to the file when it is full. */
interface OpenSpoolPart extends SpoolPart {
  readonly fd: number;
  /** Its `drained` bytes are in the file. */
  readonly out: SpoolBuffer;
}

/** The spools of a lake still taking rows, and their files. */
interface SpoolRegistry {
  readonly spools: Set<{ discard(): Promise<void> }>;
  readonly files: Set<string>;
}

/** What a closed spool hands to the lake to write. */
interface SpoolContents {
  readonly parts: readonly SpoolPart[];
}

/** Bytes buffered per partition before a write to its file. */
const SPOOL_BUFFER_BYTES = 1 << 20;

/** A part's rows spooled per partition to CSV files; encodes and writes synchronously, as rows arrive. */
class CsvSpool<K extends LakeKind> implements LakeSpool<K> {
  readonly kind: K;
  private readonly table: LakeTable<unknown>;
  private readonly writeLine: SpoolColumns['writeLine'];
  private readonly timeOf: (row: unknown) => unknown;
  private readonly fallbackOf: ((row: unknown) => unknown) | undefined;
  private readonly prefix: string;
  private readonly registry: SpoolRegistry;
  private readonly writeContents: (spool: SpoolContents, checkpointId: string) => Promise<LakeWriteResult>;
  private readonly parts: OpenSpoolPart[] = [];
  private count = 0;
  private closed = false;

  constructor(
    kind: K,
    table: LakeTable<unknown>,
    prefix: string,
    registry: SpoolRegistry,
    writeContents: (spool: SpoolContents, checkpointId: string) => Promise<LakeWriteResult>,
  ) {
    this.kind = kind;
    this.table = table;
    this.writeLine = spoolColumnsOf(table.columns).writeLine;
    this.timeOf = (table.columns.find((c) => c.name === table.partitionTimeColumn) as Column<unknown>).get;
    this.fallbackOf = table.columns.find((c) => c.name === table.partitionFallbackColumn)?.get;
    this.prefix = prefix;
    this.registry = registry;
    registry.spools.add(this);
    this.writeContents = writeContents;
  }

  get rows(): number {
    return this.count;
  }

  append(rows: readonly LakeRowByKind[K][]): void {
    const context = { kind: this.kind };
    if (this.closed) throw new ParquetLakeError('The spool was written or discarded', context);
    if (!Array.isArray(rows)) throw new LakeInputError('Spooled rows must be an array', context);
    if (rows.length === 0) return;
    // Where each part stood, so that a refused row takes the whole call back out.
    const mark = this.mark();
    try {
      this.encodeRows(rows, context);
    } catch (error) {
      this.rewind(mark);
      throw error;
    }
    this.count += rows.length;
  }

  mark(): LakeSpoolMark {
    return { rows: this.count, parts: this.parts.map((p) => ({ length: p.out.length, rows: p.rows })) };
  }

  rewind(mark: LakeSpoolMark): void {
    if (this.closed) throw new ParquetLakeError('The spool was written or discarded', { kind: this.kind });
    this.rollBack(mark.parts);
    this.count = mark.rows;
  }

  async write(checkpointId: string): Promise<LakeWriteResult> {
    if (this.closed) throw new ParquetLakeError('The spool was written or discarded', { kind: this.kind });
    let contents: SpoolContents;
    try {
      // A file that cannot be flushed fails the write, and the spool's files go.
      contents = this.close();
    } catch (cause) {
      await this.removeFiles();
      throw cause;
    }
    return this.writeContents(contents, checkpointId);
  }

  async discard(): Promise<void> {
    if (this.closed) return;
    try {
      this.close();
    } finally {
      await this.removeFiles();
    }
  }

  private async removeFiles(): Promise<void> {
    for (const part of this.parts) {
      await rm(part.file, { force: true });
      this.registry.files.delete(part.file);
    }
  }

  /** Encodes rows into their parts' buffers, line by line. */
  private encodeRows(rows: readonly unknown[], context: LakeErrorContext): void {
    const table = this.table;
    const timeOf = this.timeOf;
    const fallbackOf = this.fallbackOf;
    const writeLine = this.writeLine;
    let start = 0;
    let end = -1;
    let part: OpenSpoolPart | undefined;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (typeof row !== 'object' || row === null) {
        throw new LakeInputError('A row is not an object', { ...context, row: i });
      }
      const time = timeOf(row);
      // Rows of a call nearly always share a month: test against the last month's range first.
      if (part === undefined || !(typeof time === 'number' && time >= start && time < end)) {
        const chosen = partitionTime(
          time,
          fallbackOf === undefined ? undefined : () => fallbackOf(row),
          table,
          { ...context, row: i },
        );
        if (part === undefined || !(chosen >= start && chosen < end)) {
          const partition = rowPartition(chosen, { ...context, row: i });
          part = this.partOf(partition);
          [start, end] = partitionRange(partition);
        }
      }
      const out = part.out;
      const before = out.length;
      try {
        writeLine(row, out);
      } catch (cause) {
        // The call is rewound as a whole, the part of this line with it.
        if (!(cause instanceof SpoolValueError)) throw cause;
        throw new LakeInputError(cause.message, { ...context, column: cause.column, row: i });
      }
      const bytes = out.length - before;
      if (bytes > part.maxLineBytes) part.maxLineBytes = bytes;
      part.rows++;
    }
  }

  /** Cuts every part back to where `marks` found it (parts opened since stay, empty). */
  private rollBack(marks: readonly { readonly length: number; readonly rows: number }[]): void {
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as OpenSpoolPart;
      const mark = marks[i] ?? { length: 0, rows: 0 };
      const out = part.out;
      if (mark.length >= out.drained) {
        out.at = mark.length - out.drained;
      } else {
        ftruncateSync(part.fd, mark.length);
        out.drained = mark.length;
        out.at = 0;
      }
      part.rows = mark.rows;
    }
  }

  /** Flushes and closes every file; the spool takes no more rows. */
  private close(): SpoolContents {
    if (this.closed) throw new ParquetLakeError('The spool was written or discarded', { kind: this.kind });
    this.closed = true;
    this.registry.spools.delete(this);
    let failure: unknown;
    for (const part of this.parts) {
      try {
        if (failure === undefined) part.out.drain();
      } catch (error) {
        failure = error;
      }
      closeSync(part.fd);
    }
    if (failure !== undefined) throw failure;
    // A part whose every row was taken back out holds nothing to write.
    return { parts: this.parts.filter((p) => p.rows > 0) };
  }

  /** The part of `partition`, its file created when first needed. */
  private partOf(partition: LakePartition): OpenSpoolPart {
    const { year, month } = partition;
    const found = this.parts.find((p) => p.partition.year === year && p.partition.month === month);
    if (found !== undefined) return found;
    const file = `${this.prefix}${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}${SPOOL_SUFFIX}`;
    let fd: number;
    try {
      fd = openSync(file, 'w');
    } catch (cause) {
      throw new LakeWriteError('Cannot create a lake spool file', { kind: this.kind, file }, { cause });
    }
    this.registry.files.add(file);
    const out = new SpoolBuffer(SPOOL_BUFFER_BYTES, (bytes) => this.writeBytes(file, fd, bytes, out.drained));
    const part: OpenSpoolPart = { partition, file, fd, out, rows: 0, maxLineBytes: 0 };
    this.parts.push(part);
    return part;
  }

  /** Writes `bytes` at `position` of a part's file (a spool buffer's drain). */
  private writeBytes(file: string, fd: number, bytes: Uint8Array, position: number): void {
    try {
      writeAll(fd, bytes, position);
    } catch (cause) {
      throw new LakeWriteError('Cannot write a lake spool file', { kind: this.kind, file }, { cause });
    }
  }
}

/** Writes all of `bytes` (a write to a file may take fewer bytes than offered). */
function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** Whether a temporary-folder entry is a spool file of `owner` (see `DuckDBParquetLake.spool`). */
function isSpoolOf(entry: string, owner: string): boolean {
  if (!entry.endsWith(SPOOL_SUFFIX)) return false;
  const stem = entry.slice(0, -SPOOL_SUFFIX.length);
  const match = /^([a-z]+)\.(.+)\.\d+\.\d+\.\d{4}-\d{2}$/.exec(stem);
  return (
    match !== null && match[2] === owner && (lakeKinds as readonly string[]).includes(match[1] as string)
  );
}
