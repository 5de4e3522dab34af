/**
 * The layout of the cold Parquet lake, derived from the column lists in `reading.ts`:
 *
 *     <lake>/<table>/year=YYYY/month=MM/part-<checkpointId>.parquet
 *
 * Hive-style partitions on the UTC year and month of each table's event time; the partition values
 * live in the path only (readers add them with `hive_partitioning`). One file per checkpoint and
 * partition, named after the checkpoint, so writing the same checkpoint again replaces the file
 * instead of adding a copy. Files are Snappy-compressed.
 */
import {
  type Column,
  type ColumnType,
  type HourlyConsumption,
  hourlyColumns,
  type QuarantineRecord,
  quarantineColumns,
  type Reading,
  readingColumns,
} from './reading.js';

/** The tables the lake holds; each is also the folder name and the name of its query view. */
export type LakeKind = 'readings' | 'hourly' | 'quarantine';

export const lakeKinds: readonly LakeKind[] = ['readings', 'hourly', 'quarantine'];

export interface LakeRowByKind {
  readings: Reading;
  hourly: HourlyConsumption;
  quarantine: QuarantineRecord;
}

export interface LakeTable<Row> {
  readonly kind: LakeKind;
  /** Folder under the lake root. */
  readonly folder: string;
  readonly columns: readonly Column<Row>[];
  /** The DateTime column whose UTC year and month choose the partition. */
  readonly partitionTimeColumn: string;
  /** Used when the partition time is NULL (a quarantined record whose time did not parse). */
  readonly partitionFallbackColumn?: string;
  /**
   * Row order inside a file. Sorting by meter then time lets readers skip row groups on either
   * and compresses ids and timestamps well.
   */
  readonly sortColumns: readonly string[];
}

export const lakeTables: { readonly [K in LakeKind]: LakeTable<LakeRowByKind[K]> } = {
  readings: {
    kind: 'readings',
    folder: 'readings',
    columns: readingColumns,
    partitionTimeColumn: 'ts',
    sortColumns: ['meter_id', 'ts'],
  },
  hourly: {
    kind: 'hourly',
    folder: 'hourly',
    columns: hourlyColumns,
    partitionTimeColumn: 'hour',
    sortColumns: ['meter_id', 'hour'],
  },
  quarantine: {
    kind: 'quarantine',
    folder: 'quarantine',
    columns: quarantineColumns,
    partitionTimeColumn: 'ts',
    partitionFallbackColumn: 'quarantined_at',
    sortColumns: [],
  },
};

/** Partition columns as readers see them (from the path, typed explicitly: `month=01` is not text). */
export const partitionColumns = [
  { name: 'year', duckdbType: 'INTEGER' },
  { name: 'month', duckdbType: 'INTEGER' },
] as const;

export const PARQUET_COMPRESSION = 'SNAPPY';

/**
 * Parquet column types, as DuckDB names them. Times are `TIMESTAMPTZ`: Parquet
 * `TIMESTAMP(MICROS, isAdjustedToUTC=true)`, so every reader takes them as UTC instants.
 * `LowCardinalityString` is a plain string: Parquet dictionary-encodes it anyway.
 */
export function duckdbTypeOf(type: ColumnType): string {
  switch (type) {
    case 'String':
    case 'LowCardinalityString':
      return 'VARCHAR';
    case 'DateTime':
    case 'NullableDateTime':
      return 'TIMESTAMPTZ';
    case 'Float64':
    case 'NullableFloat64':
      return 'DOUBLE';
    case 'UInt8':
      return 'UTINYINT';
    case 'UInt32':
      return 'UINTEGER';
    case 'UInt64':
      return 'UBIGINT';
    case 'Int64':
      return 'BIGINT';
    case 'ArrayString':
      return 'VARCHAR[]';
  }
}

export interface LakePartition {
  readonly year: number;
  /** 1–12. */
  readonly month: number;
}

/** The UTC year and month of an epoch-millisecond time. */
export function partitionOf(epochMs: number): LakePartition {
  const date = new Date(epochMs);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(year) || year < 0 || year > 9999) {
    throw new RangeError(`Time ${epochMs} has no four-digit UTC year`);
  }
  return { year, month: date.getUTCMonth() + 1 };
}

/** `[start, end)` of the partition in epoch ms, so callers can test membership without a Date. */
export function partitionRange(partition: LakePartition): readonly [number, number] {
  return [Date.UTC(partition.year, partition.month - 1, 1), Date.UTC(partition.year, partition.month, 1)];
}

/** Path segments of a partition under its table folder: `['year=2024', 'month=01']`. */
export function partitionSegments(partition: LakePartition): readonly [string, string] {
  return [
    `year=${String(partition.year).padStart(4, '0')}`,
    `month=${String(partition.month).padStart(2, '0')}`,
  ];
}

// Checkpoint ids end up in file names: keep them to characters that are safe on every file system,
// never leading with a dot (hidden files) and never a path separator.
const CHECKPOINT_ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function isValidCheckpointId(checkpointId: string): boolean {
  return CHECKPOINT_ID.test(checkpointId);
}

/** The data file of one checkpoint in one partition. */
export function partFileName(checkpointId: string): string {
  if (!isValidCheckpointId(checkpointId)) {
    throw new RangeError('A checkpoint id must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}');
  }
  return `part-${checkpointId}.parquet`;
}

/**
 * The id of part `part` of a writer's epoch (checkpoint number) `epoch`: ids sort in write order, and a
 * writer's files of one epoch share the prefix `<writer>-<epoch>`.
 */
export function epochPartId(writer: string, epoch: number, part: number): string {
  return `${writer}-${String(epoch).padStart(10, '0')}-${String(part).padStart(6, '0')}`;
}

/** The epoch of a data file written by `writer` (see `epochPartId`), or undefined for another's file. */
export function epochOfPartFile(writer: string, fileName: string): number | undefined {
  const prefix = `part-${writer}-`;
  if (!fileName.startsWith(prefix)) return undefined;
  const digits = /^(\d{10})[-.]/.exec(fileName.slice(prefix.length));
  return digits === null ? undefined : Number(digits[1]);
}

/** Glob of a table's data files relative to the lake root, in `/` form. */
export function tableGlob(kind: LakeKind): string {
  return `${lakeTables[kind].folder}/**/*.parquet`;
}

/**
 * Folder under the lake root where files are written before being renamed into place. It sits in
 * the lake (same file system, so the rename is atomic) but outside every table folder, and its files
 * end in `.partial`, so no table glob can see a half-written file.
 */
export const TEMPORARY_FOLDER = '.tmp';
export const TEMPORARY_SUFFIX = '.partial';
/** Suffix of the CSV spool files a writer fills in the temporary folder until a part is written. */
export const SPOOL_SUFFIX = '.spool.csv';
