/**
 * The ClickHouse hot store schema, derived from the column lists in `schemas/reading.ts`:
 * the DDL of every table in database `greenstream`, the migrations that create them, the
 * views that see through ReplacingMergeTree duplicates, the README table, and the mapping of
 * stored values back to the column vocabulary.
 *
 * One schema runs on Debian's ClickHouse 18.16 and on chDB 26.x. Features newer than 18.16
 * (LowCardinality, TTL) are used only when `SELECT version()` says the engine has them.
 *
 * Reading the tables: they are ReplacingMergeTrees, so a record inserted twice (a replay, a
 * retried batch) is stored twice until a background merge collapses it. Queries must see
 * through that, with one of:
 * - `FROM greenstream.readings FINAL` (simplest; merges at read time),
 * - `FROM greenstream.readings_latest` (a view doing exactly that, for every table), or
 * - `ORDER BY processed_at DESC LIMIT 1 BY meter_id, ts`, or `argMax(col, processed_at)` grouped
 *   by the sorting key.
 * Deduplication happens only within a partition, so every partition key below is a function of
 * the sorting key (never of a wall-clock column).
 */

import { type SqlFragment, sql } from '../codecs/sql.js';
import { modelMigrations } from './models.js';
import {
  type Alert,
  alertColumns,
  type Column,
  type ColumnType,
  type DailyPeak,
  dailyPeakColumns,
  type FaultEvent,
  faultColumns,
  type HourlyConsumption,
  hourlyColumns,
  type MeterInfo,
  meterColumns,
  type QualityLogEntry,
  type QuarantineRecord,
  qualityLogColumns,
  quarantineColumns,
  type Reading,
  readingColumns,
} from './reading.js';
import { reviewLogMigration } from './review.js';

/** The database users query; a public contract. Tests may use another name for isolation. */
export const HOT_DATABASE = 'greenstream';

/** What the connected engine supports, from `SELECT version()`. */
export interface ClickHouseCapabilities {
  readonly version: string;
  readonly major: number;
  readonly minor: number;
  /** `LowCardinality(String)`; experimental before 19.x and absent from 18.16. */
  readonly lowCardinality: boolean;
  /** Table `TTL` clauses; added in 19.6. */
  readonly ttl: boolean;
  /** `RowBinary` inserts: read by 18.16 (the oldest server in scope) and every later version. */
  readonly rowBinary: boolean;
}

/**
 * Reads the capabilities from a version string such as `18.16.1` or `26.7.2.1`. The thresholds
 * are conservative (20.1 for LowCardinality and TTL, 18.16 for RowBinary): no 19.x server is in
 * scope, and a too-high bar only costs a plain `String` column, a missing TTL or a text insert.
 */
export function capabilitiesOf(version: string): ClickHouseCapabilities {
  const match = /^(\d+)\.(\d+)/.exec(version.trim());
  if (!match) throw new Error(`Unrecognised ClickHouse version: ${JSON.stringify(version)}`);
  const major = Number(match[1]);
  const minor = Number(match[2]);
  const modern = major >= 20;
  const rowBinary = major > 18 || (major === 18 && minor >= 16);
  return { version: version.trim(), major, minor, lowCardinality: modern, ttl: modern, rowBinary };
}

/** The ClickHouse type of a column type on an engine with the given capabilities. */
export function clickhouseType(
  type: ColumnType,
  capabilities: Pick<ClickHouseCapabilities, 'lowCardinality'>,
): string {
  switch (type) {
    case 'String':
      return 'String';
    case 'LowCardinalityString':
      return capabilities.lowCardinality ? 'LowCardinality(String)' : 'String';
    case 'DateTime':
      return "DateTime('UTC')";
    case 'NullableDateTime':
      return "Nullable(DateTime('UTC'))";
    case 'Float64':
      return 'Float64';
    case 'NullableFloat64':
      return 'Nullable(Float64)';
    case 'UInt8':
      return 'UInt8';
    case 'UInt32':
      return 'UInt32';
    case 'UInt64':
      return 'UInt64';
    case 'Int64':
      return 'Int64';
    case 'ArrayString':
      return 'Array(String)';
  }
}

/** The row type stored in each hot table. */
export interface HotTableRows {
  readings: Reading;
  faults: FaultEvent;
  alerts: Alert;
  quarantine: QuarantineRecord;
  quality_log: QualityLogEntry;
  meters: MeterInfo;
  hourly_consumption: HourlyConsumption;
  daily_peaks: DailyPeak;
}

export type HotTableName = keyof HotTableRows;

export interface HotTableSpec<Row> {
  readonly name: HotTableName;
  readonly columns: readonly Column<Row>[];
  /** The ReplacingMergeTree sorting key: one stored row per distinct key. */
  readonly sortingKey: readonly string[];
  /** Partition by `toYYYYMM(column)`; must be a sorting-key column, or dedup would miss. */
  readonly monthlyPartitionOf?: string;
  /** ReplacingMergeTree version column: the row with the highest value wins; else the last inserted. */
  readonly versionColumn?: string;
  /** Wall-clock column a retention TTL counts from (only tables that have one). */
  readonly retentionColumn?: string;
  readonly doc: string;
}

type HotTables = { readonly [K in HotTableName]: HotTableSpec<HotTableRows[K]> };

export const hotTables: HotTables = {
  readings: {
    name: 'readings',
    columns: readingColumns,
    sortingKey: ['meter_id', 'ts'],
    monthlyPartitionOf: 'ts',
    versionColumn: 'processed_at',
    retentionColumn: 'processed_at',
    doc: 'One row per meter and 15-minute interval (a gap gets one `missing` row per absent interval); the latest processing wins.',
  },
  faults: {
    name: 'faults',
    columns: faultColumns,
    sortingKey: ['meter_id', 'fault_type', 'window_start'],
    monthlyPartitionOf: 'window_start',
    versionColumn: 'detected_at',
    doc: 'Meter faults, one row per meter, fault type and window start.',
  },
  alerts: {
    name: 'alerts',
    columns: alertColumns,
    sortingKey: ['kind', 'meter_id', 'ts', 'severity', 'message'],
    monthlyPartitionOf: 'ts',
    doc: 'Alerts raised by the pipeline; the same alert raised again on a replay is stored once.',
  },
  quarantine: {
    name: 'quarantine',
    columns: quarantineColumns,
    sortingKey: ['source', 'raw'],
    versionColumn: 'quarantined_at',
    retentionColumn: 'quarantined_at',
    doc: 'Every record not admitted to `readings`, with its reasons; one row per source and raw record.',
  },
  quality_log: {
    name: 'quality_log',
    columns: qualityLogColumns,
    sortingKey: ['source', 'batch_id'],
    versionColumn: 'logged_at',
    retentionColumn: 'logged_at',
    doc: 'Per batch or file: records in, stored, quarantined, dead-lettered, average score.',
  },
  meters: {
    name: 'meters',
    columns: meterColumns,
    sortingKey: ['meter_id'],
    doc: 'The meter registry (side input); the last version loaded wins.',
  },
  hourly_consumption: {
    name: 'hourly_consumption',
    columns: hourlyColumns,
    sortingKey: ['meter_id', 'hour'],
    monthlyPartitionOf: 'hour',
    doc: 'Per meter and UTC hour: mean, min, max, population stddev and count of kW; the last computation wins.',
  },
  daily_peaks: {
    name: 'daily_peaks',
    columns: dailyPeakColumns,
    sortingKey: ['day', 'rank'],
    monthlyPartitionOf: 'day',
    doc: 'The three peak hours of each UTC day by total kW over all meters.',
  },
};

export const hotTableNames: readonly HotTableName[] = Object.keys(hotTables) as HotTableName[];

/** The view over `table` that sees through duplicates (`SELECT * FROM table FINAL`). */
export function latestViewName(table: HotTableName): string {
  return `${table}_latest`;
}

/** Retention in days per table, counted from the table's wall-clock `retentionColumn`. */
export type RetentionDays = Partial<Record<'readings' | 'quarantine' | 'quality_log', number>>;

/**
 * The retention policy in the business rules (seeds: "Validated Data: 2 years (active
 * database)", "Error Logs: 1 year"). Opt-in: a TTL on 2-year-old test or backfill data would
 * delete it on the first merge, so callers pass this explicitly.
 */
export const SEED_RETENTION_DAYS: Readonly<Required<RetentionDays>> = {
  readings: 730,
  quarantine: 365,
  quality_log: 365,
};

export interface DdlContext {
  readonly database: string;
  readonly capabilities: ClickHouseCapabilities;
  /** Applied only when `capabilities.ttl`; 18.16 keeps data until it is dropped by hand. */
  readonly retentionDays?: RetentionDays;
}

function columnDefinitions<Row>(spec: HotTableSpec<Row>, capabilities: ClickHouseCapabilities): SqlFragment {
  // Columns added by a later migration are left to it, so that it can add them to existing tables alike.
  return sql.join(
    spec.columns
      .filter((c) => c.since === undefined)
      .map(
        (c) => sql`  ${sql.ident(c.name)} ${sql.raw(clickhouseType(c.type, capabilities))} COMMENT ${c.doc}`,
      ),
    ',\n',
  );
}

function retentionClause<Row>(spec: HotTableSpec<Row>, context: DdlContext): SqlFragment {
  const days = (context.retentionDays as Partial<Record<HotTableName, number>> | undefined)?.[spec.name];
  if (days === undefined || !spec.retentionColumn || !context.capabilities.ttl) return sql``;
  if (!Number.isInteger(days) || days <= 0)
    throw new RangeError(`Retention for ${spec.name} must be whole days > 0`);
  return sql`\nTTL ${sql.ident(spec.retentionColumn)} + INTERVAL ${days} DAY`;
}

/** `CREATE TABLE IF NOT EXISTS` for one hot table. */
export function createTableDdl(table: HotTableName, context: DdlContext): SqlFragment {
  const spec: HotTableSpec<unknown> = hotTables[table] as HotTableSpec<unknown>;
  const engine = spec.versionColumn
    ? sql`ReplacingMergeTree(${sql.ident(spec.versionColumn)})`
    : sql`ReplacingMergeTree()`;
  const partition = spec.monthlyPartitionOf
    ? sql`\nPARTITION BY toYYYYMM(${sql.ident(spec.monthlyPartitionOf)})`
    : sql``;
  const key = sql.join(spec.sortingKey.map((c) => sql.ident(c)));
  return sql`CREATE TABLE IF NOT EXISTS ${sql.ident(context.database, table)} (
${columnDefinitions(spec, context.capabilities)}
) ENGINE = ${engine}${partition}
ORDER BY (${key})${retentionClause(spec, context)}`;
}

/** `CREATE VIEW IF NOT EXISTS <table>_latest AS SELECT * FROM <table> FINAL`. */
export function createLatestViewDdl(table: HotTableName, database: string): SqlFragment {
  return sql`CREATE VIEW IF NOT EXISTS ${sql.ident(database, latestViewName(table))} AS SELECT * FROM ${sql.ident(database, table)} FINAL`;
}

export const SCHEMA_MIGRATIONS_TABLE = 'schema_migrations';

/** The bootstrap statements, run before any migration; idempotent. */
export function bootstrapDdl(database: string): SqlFragment[] {
  return [
    sql`CREATE DATABASE IF NOT EXISTS ${sql.ident(database)}`,
    sql`CREATE TABLE IF NOT EXISTS ${sql.ident(database, SCHEMA_MIGRATIONS_TABLE)} (
  version UInt32 COMMENT 'Migration number',
  name String COMMENT 'What it did',
  applied_at DateTime('UTC') COMMENT 'When it was applied'
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version`,
  ];
}

export interface Migration {
  /** Strictly increasing; recorded in `schema_migrations` once applied. */
  readonly version: number;
  readonly name: string;
  /** Every statement is `IF NOT EXISTS`, so a migration interrupted half-way can simply rerun. */
  readonly statements: (context: DdlContext) => readonly SqlFragment[];
  /** ClickHouse error codes a statement may fail with when a rerun finds it already done (e.g. 44, 15: the column exists). */
  readonly alreadyDoneCodes?: readonly number[];
}

export const hotStoreMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'create hot tables',
    statements: (context) => hotTableNames.map((t) => createTableDdl(t, context)),
  },
  {
    version: 2,
    name: 'create *_latest views reading through duplicates',
    statements: (context) => hotTableNames.map((t) => createLatestViewDdl(t, context.database)),
  },
  reviewLogMigration,
  ...modelMigrations,
];

// ---------------------------------------------------------------------------------------------
// Values as stored and read back.

/** A column value in the shape JavaScript reads back from ClickHouse (times as epoch ms). */
export type StoredValue = string | number | null | readonly string[];

/**
 * What a column value becomes once stored: DateTime loses sub-second precision, booleans
 * become 0/1. Tests compare `storedRow(table, row)` with `decodeStoredRow(table, json)`.
 */
export function storedValue(type: ColumnType, value: ReturnType<Column<unknown>['get']>): StoredValue {
  if (value === null) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if ((type === 'DateTime' || type === 'NullableDateTime') && typeof value === 'number') {
    return Math.floor(value / 1000) * 1000;
  }
  return value;
}

function parseUtcDateTime(text: string): number {
  // DateTime('UTC') columns print in their own time zone: 'YYYY-MM-DD hh:mm:ss' is UTC.
  const ms = Date.parse(`${text.replace(' ', 'T')}Z`);
  if (Number.isNaN(ms)) throw new Error(`Unexpected DateTime text ${JSON.stringify(text)}`);
  return ms;
}

/** Decodes one value of a `JSONEachRow` result (64-bit integers arrive as strings there). */
export function decodeStoredValue(type: ColumnType, json: unknown): StoredValue {
  if (json === null || json === undefined) return null;
  switch (type) {
    case 'DateTime':
    case 'NullableDateTime':
      return typeof json === 'number' ? json * 1000 : parseUtcDateTime(String(json));
    case 'Float64':
    case 'NullableFloat64':
    case 'UInt8':
    case 'UInt32':
    case 'UInt64':
    case 'Int64':
      return Number(json);
    case 'ArrayString':
      return Array.isArray(json) ? json.map(String) : [];
    default:
      return String(json);
  }
}

/** A row keyed by column name, values as stored. */
export type StoredRow = Readonly<Record<string, StoredValue>>;

export function storedRow<K extends HotTableName>(table: K, row: HotTableRows[K]): StoredRow {
  const out: Record<string, StoredValue> = {};
  for (const c of hotTables[table].columns as readonly Column<HotTableRows[K]>[]) {
    out[c.name] = storedValue(c.type, c.get(row));
  }
  return out;
}

export function decodeStoredRow(table: HotTableName, json: Readonly<Record<string, unknown>>): StoredRow {
  const out: Record<string, StoredValue> = {};
  for (const c of hotTables[table].columns as readonly Column<unknown>[]) {
    out[c.name] = decodeStoredValue(c.type, json[c.name]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Documentation.

function docType(type: ColumnType): string {
  const legacy = clickhouseType(type, { lowCardinality: false });
  const modern = clickhouseType(type, { lowCardinality: true });
  return legacy === modern ? `\`${legacy}\`` : `\`${modern}\` (\`${legacy}\` on 18.16)`;
}

function markdownCell(text: string): string {
  // `stream:<name>:<seq>` would otherwise render as an HTML tag and vanish.
  return text.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The README section describing every hot table: engine, key, and one line per column (name,
 * ClickHouse type, meaning), generated from the same column lists as the DDL.
 */
export function hotSchemaMarkdown(database: string = HOT_DATABASE): string {
  const parts: string[] = [
    `Every table in \`${database}\` is a ReplacingMergeTree: a record stored twice (a replay, a retried ` +
      'batch) is kept twice until a background merge collapses it, so queries must see through duplicates: ' +
      `\`FROM ${database}.readings FINAL\`, the \`${database}.<table>_latest\` views (\`SELECT * … FINAL\`), ` +
      'or `ORDER BY processed_at DESC LIMIT 1 BY meter_id, ts`. ClickHouse 18.16 may apply a filter on a ' +
      '`_latest` view only after merging the whole table; on large tables write `FROM <table> FINAL WHERE …`. ' +
      'Times are UTC `DateTime` with second precision.',
    '',
  ];
  for (const name of hotTableNames) {
    const spec = hotTables[name] as HotTableSpec<unknown>;
    const engine = spec.versionColumn ? `ReplacingMergeTree(${spec.versionColumn})` : 'ReplacingMergeTree';
    const partition = spec.monthlyPartitionOf
      ? `, partitioned by \`toYYYYMM(${spec.monthlyPartitionOf})\``
      : '';
    parts.push(
      `### \`${database}.${name}\``,
      '',
      `${spec.doc} ${engine} ordered by \`(${spec.sortingKey.join(', ')})\`${partition}. ` +
        `Query it with \`FINAL\` or through \`${database}.${latestViewName(name)}\`.`,
      '',
      '| Column | Type | Meaning |',
      '| --- | --- | --- |',
      ...spec.columns.map((c) => `| \`${c.name}\` | ${docType(c.type)} | ${markdownCell(c.doc)} |`),
      '',
    );
  }
  return parts.join('\n');
}
