/**
 * The one reading schema. The TypeScript types below, the column lists under them, and everything
 * derived from those lists (Arrow schema, ClickHouse DDL, Parquet layout in `schemas/`) must agree;
 * the column lists are the single source, so add a field here first.
 */

/** A reading as it arrived: strings untouched, so a rejected record can be stored exactly as it came. */
export interface RawReading {
  readonly meterId: string;
  /** ISO-8601 as sent; may be garbage. */
  readonly timestamp: string;
  /** As sent; empty string for a NULL reading. */
  readonly value: string;
  /** As sent; empty string when missing. */
  readonly unit: string;
  /** The original line (CSV) or object (JSON, re-serialized) for the quarantine table. */
  readonly raw: string;
  /** Where it came from: a landing file path, or `stream:<name>:<seq>`. */
  readonly source: string;
  /**
   * Server time when the reading was received, epoch ms: the landing file's hour partition, or the
   * JetStream message's publish time. Timestamp sanity (future, backdated) is judged against it, never
   * against the wall clock of the worker, so replays judge a reading as it was judged live.
   */
  readonly receivedAt: number;
  /**
   * Length of the interval the value covers, in minutes, when the source says (a NEM12 `200` record, a
   * Green Button `ReadingType`, a CSV `interval_minutes` column): an energy value (kWh, Wh, MWh) over it
   * becomes mean power. Absent: the meter's cadence from the registry, if any.
   */
  readonly intervalMinutes?: number;
  /** Quality the source itself gave the value (estimated, substituted), kept as reading flags. */
  readonly sourceFlags?: readonly SourceQualityFlag[];
  /**
   * The optional measurement columns of a readings CSV or JSON (voltage, current …), as sent; absent when
   * the payload has none. Validated by `validateMeasurements`.
   */
  readonly measurements?: Readonly<Partial<Record<MeasurementName, string>>>;
}

/** The optional electrical and ambient measurements a reading may carry (Metrify seed, "Smart Meter Readings"). */
export const MEASUREMENT_NAMES = [
  'voltage',
  'current',
  'power_factor',
  'frequency',
  'temperature',
  'humidity',
] as const;
export type MeasurementName = (typeof MEASUREMENT_NAMES)[number];
/** Validated measurements stored on a reading: NULL (or absent) when the source did not send one. */
export type Measurements = Partial<Record<MeasurementName, number | null>>;

/** Flags that carry a utility's own quality method (NEM12 `E`/`S`/`F`, Green Button `ReadingQuality`). */
export const SOURCE_QUALITY_FLAGS = ['source_estimated', 'source_substituted'] as const;
export type SourceQualityFlag = (typeof SOURCE_QUALITY_FLAGS)[number];

export type ReadingStatus = 'measured' | 'interpolated' | 'missing';
export type QualityTier = 'premium' | 'standard' | 'quarantine';
export type Grade = 'A' | 'B' | 'C' | 'F';
export type PeakClass = 'peak' | 'off_peak' | 'standard';
export type Season = 'winter' | 'spring' | 'summer' | 'fall';

/**
 * Flags a reading may carry; stored in `readings.flags`. One fixed order: a flag set held as bits (a
 * columnar batch) gives flag `READING_FLAGS[i]` bit `i`, so add a flag at the end.
 */
export const READING_FLAGS = [
  'unit_converted',
  'unit_inferred',
  'MISSING_READING',
  'missing_short',
  'missing_extended',
  'interpolated',
  'spike',
  'drop',
  'backdated',
  'fault_excluded',
  /** An energy value (kWh, Wh, MWh) over a known interval, stored as the interval's mean kW. */
  'energy_converted',
  ...SOURCE_QUALITY_FLAGS,
  /** Admitted by a person's review (`greenstream review approve`), not by the rules. */
  'reviewed',
  /** Its value is the reviewer's correction, not the value received. */
  'reviewed_corrected',
  /** Its score was set by a person's review (`greenstream review override`). */
  'score_overridden',
  /** Transient: above the physical limit; seen by the overload detector, then quarantined, never stored. */
  'over_limit',
] as const;
export type ReadingFlag = (typeof READING_FLAGS)[number];

/** The key of a reading's dense meter number; see `Reading[METER_IX]`. */
export const METER_IX: unique symbol = Symbol('meterIx');

/** A reading admitted to the `readings` table. Times are epoch milliseconds, UTC. */
export interface Reading {
  meterId: string;
  ts: number;
  /** NULL for a missing reading (NULL value or an absent interval in a gap). */
  kw: number | null;
  rawValue: string;
  rawUnit: string;
  status: ReadingStatus;
  flags: readonly ReadingFlag[];
  /** Validation warnings that count against the score (each −15). */
  warnings: number;
  qualityScore: number;
  qualityTier: QualityTier;
  grade: Grade;
  peakClass: PeakClass;
  season: Season;
  recordId: string;
  source: string;
  processedAt: number;
  pipelineVersion: string;
  /** Optional measurements sent with the reading (absent for most sources). */
  measurements?: Measurements;
  /**
   * Not a column: the meter's number in the run's dense key index of meters, given by parsing, so that
   * per-meter stages find their state without hashing the id (`operators/meter-key.ts`). Absent on rows
   * made elsewhere (a stage then numbers the meter itself). Keyed by a symbol so that it is no field of
   * the row: JSON and `Object.keys` do not see it, and a restored run's rows equal an uninterrupted one's.
   */
  [METER_IX]?: number | undefined;
}

/** A record not admitted to `readings`, with every reason it was held back. */
export interface QuarantineRecord {
  meterId: string;
  /** NULL when the timestamp could not be parsed. */
  ts: number | null;
  raw: string;
  reasons: string[];
  source: string;
  quarantinedAt: number;
}

export type FaultType =
  | 'zero'
  | 'stuck'
  | 'overload'
  | 'low_variance'
  | 'erratic_spike'
  | 'comm_failure'
  | 'neighborhood_outlier';

export interface FaultEvent {
  meterId: string;
  faultType: FaultType;
  windowStart: number;
  windowEnd: number;
  detectedAt: number;
  /** JSON text: the figures that tripped the rule. */
  evidence: string;
}

export type AlertSeverity = 'critical' | 'high' | 'warning';
export type AlertKind =
  | 'missing_extended'
  | 'connectivity'
  | 'meter_fault'
  | 'transformation_failure'
  | 'quality_degradation'
  | 'backlog';

export interface Alert {
  severity: AlertSeverity;
  kind: AlertKind;
  /** Empty when the alert is not about one meter. */
  meterId: string;
  ts: number;
  message: string;
}

/** `unknown`: registered from a file's own metadata (`greenstream import`); no physical limit applies. */
export type MeterType = 'residential' | 'commercial' | 'unknown';

/** One row of the meter registry (the side input). */
export interface MeterInfo {
  meterId: string;
  region: string;
  neighborhood: string;
  meterType: MeterType;
  vacant: boolean;
  /** Per-meter physical limit; NULL means the profile's default for the meter type. */
  maxKw: number | null;
  /** The meter's interval (cadence) in minutes when known: an energy value without its own interval uses it. */
  intervalMinutes?: number | null;
  /**
   * Where a meter registered from a file came from and what the file said of it (format, file, unit, and
   * for Green Button its `LocalTimeParameters`), as JSON; absent for meters of the registry CSV.
   */
  origin?: string;
}

export interface HourlyConsumption {
  meterId: string;
  neighborhood: string;
  /** Start of the hour, epoch ms UTC. */
  hour: number;
  avgKw: number;
  minKw: number;
  maxKw: number;
  stddevKw: number;
  count: number;
}

export interface DailyPeak {
  /** Start of the UTC day, epoch ms. */
  day: number;
  /** Start of the hour, epoch ms UTC. */
  hour: number;
  totalKw: number;
  rank: number;
}

export interface QualityLogEntry {
  batchId: string;
  source: string;
  recordsIn: number;
  stored: number;
  quarantined: number;
  deadLettered: number;
  avgScore: number;
  loggedAt: number;
}

/**
 * Column types, as a small vocabulary every backend maps: ClickHouse DDL, Arrow, Parquet (DuckDB).
 * `DateTime` is seconds precision in ClickHouse 18.16; `ts` keeps full precision as milliseconds in
 * `ts_ms` where it matters.
 */
export type ColumnType =
  | 'String'
  | 'LowCardinalityString'
  | 'DateTime'
  | 'NullableDateTime'
  | 'Float64'
  | 'NullableFloat64'
  | 'UInt8'
  | 'UInt32'
  | 'UInt64'
  | 'Int64'
  | 'ArrayString';

export interface Column<Row> {
  readonly name: string;
  readonly type: ColumnType;
  readonly get: (row: Row) => string | number | boolean | null | readonly string[];
  readonly doc: string;
  /** The migration that added the column to an existing table; absent: created with the table. */
  readonly since?: number;
}

const MEASUREMENT_DOCS: Readonly<Record<MeasurementName, string>> = {
  voltage: 'Voltage, V; NULL when not sent',
  current: 'Current, A; NULL when not sent',
  power_factor: 'Power factor, 0–1; NULL when not sent',
  frequency: 'Grid frequency, Hz; NULL when not sent',
  temperature: 'Ambient temperature at the meter, °C; NULL when not sent',
  humidity: 'Ambient relative humidity at the meter, %; NULL when not sent',
};

export const readingColumns: readonly Column<Reading>[] = [
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'Meter id from the registry' },
  { name: 'ts', type: 'DateTime', get: (r) => r.ts, doc: 'Interval start, UTC' },
  {
    name: 'kw',
    type: 'NullableFloat64',
    get: (r) => r.kw,
    doc: 'Power in kW (4 decimals); NULL when missing',
  },
  { name: 'raw_value', type: 'String', get: (r) => r.rawValue, doc: 'Value as received' },
  { name: 'raw_unit', type: 'String', get: (r) => r.rawUnit, doc: 'Unit as received (empty: missing)' },
  {
    name: 'status',
    type: 'LowCardinalityString',
    get: (r) => r.status,
    doc: 'measured | interpolated | missing',
  },
  { name: 'flags', type: 'ArrayString', get: (r) => r.flags, doc: 'Flags such as unit_converted, spike' },
  { name: 'quality_score', type: 'UInt8', get: (r) => r.qualityScore, doc: '0–100' },
  {
    name: 'quality_tier',
    type: 'LowCardinalityString',
    get: (r) => r.qualityTier,
    doc: 'premium | standard | quarantine',
  },
  { name: 'grade', type: 'LowCardinalityString', get: (r) => r.grade, doc: 'A | B | C | F' },
  {
    name: 'peak_class',
    type: 'LowCardinalityString',
    get: (r) => r.peakClass,
    doc: 'peak | off_peak | standard',
  },
  {
    name: 'season',
    type: 'LowCardinalityString',
    get: (r) => r.season,
    doc: 'winter | spring | summer | fall',
  },
  {
    name: 'record_id',
    type: 'String',
    get: (r) => r.recordId,
    doc: 'SHA256(meter_id + timestamp + value), hex',
  },
  { name: 'source', type: 'String', get: (r) => r.source, doc: 'Landing file or stream:<name>:<seq>' },
  {
    name: 'processed_at',
    type: 'DateTime',
    get: (r) => r.processedAt,
    doc: 'When the pipeline processed it',
  },
  { name: 'pipeline_version', type: 'String', get: (r) => r.pipelineVersion, doc: 'GreenStream version' },
  ...MEASUREMENT_NAMES.map(
    (name): Column<Reading> => ({
      name,
      type: 'NullableFloat64',
      get: (r) => r.measurements?.[name] ?? null,
      doc: MEASUREMENT_DOCS[name],
      since: 30,
    }),
  ),
];

/** ClickHouse `DateTime` ends at 2106-02-07 (unsigned 32-bit seconds). */
const MAX_DATETIME_MS = 4_294_967_295_000;

export const quarantineColumns: readonly Column<QuarantineRecord>[] = [
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'As received (may be empty)' },
  {
    name: 'ts',
    type: 'NullableDateTime',
    // A clock-reset or far-future time outside DateTime's 1970–2106 range is kept in `raw` only.
    get: (r) => (r.ts !== null && r.ts >= 0 && r.ts < MAX_DATETIME_MS ? r.ts : null),
    doc: 'NULL when unparseable or outside 1970–2106 (the raw line keeps it)',
  },
  { name: 'raw', type: 'String', get: (r) => r.raw, doc: 'Original line or object' },
  { name: 'reasons', type: 'ArrayString', get: (r) => r.reasons, doc: 'Why it was held back' },
  { name: 'source', type: 'String', get: (r) => r.source, doc: 'Landing file or stream:<name>:<seq>' },
  { name: 'quarantined_at', type: 'DateTime', get: (r) => r.quarantinedAt, doc: 'When' },
];

export const faultColumns: readonly Column<FaultEvent>[] = [
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'Meter' },
  { name: 'fault_type', type: 'LowCardinalityString', get: (r) => r.faultType, doc: 'zero | stuck | …' },
  { name: 'window_start', type: 'DateTime', get: (r) => r.windowStart, doc: 'First reading of the fault' },
  { name: 'window_end', type: 'DateTime', get: (r) => r.windowEnd, doc: 'Last reading of the fault' },
  { name: 'detected_at', type: 'DateTime', get: (r) => r.detectedAt, doc: 'Event time of detection' },
  { name: 'evidence', type: 'String', get: (r) => r.evidence, doc: 'JSON figures' },
];

export const alertColumns: readonly Column<Alert>[] = [
  {
    name: 'severity',
    type: 'LowCardinalityString',
    get: (r) => r.severity,
    doc: 'critical | high | warning',
  },
  { name: 'kind', type: 'LowCardinalityString', get: (r) => r.kind, doc: 'missing_extended | …' },
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'Empty when not about one meter' },
  { name: 'ts', type: 'DateTime', get: (r) => r.ts, doc: 'Event time' },
  { name: 'message', type: 'String', get: (r) => r.message, doc: 'Human-readable' },
];

export const meterColumns: readonly Column<MeterInfo>[] = [
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'Meter id' },
  { name: 'region', type: 'String', get: (r) => r.region, doc: 'Region' },
  { name: 'neighborhood', type: 'String', get: (r) => r.neighborhood, doc: 'Neighborhood' },
  {
    name: 'meter_type',
    type: 'LowCardinalityString',
    get: (r) => r.meterType,
    doc: 'residential | commercial | unknown (registered from an imported file)',
  },
  { name: 'vacant', type: 'UInt8', get: (r) => (r.vacant ? 1 : 0), doc: '1 when the property is vacant' },
  { name: 'max_kw', type: 'NullableFloat64', get: (r) => r.maxKw, doc: 'Per-meter limit' },
];

export const hourlyColumns: readonly Column<HourlyConsumption>[] = [
  { name: 'meter_id', type: 'String', get: (r) => r.meterId, doc: 'Meter' },
  { name: 'neighborhood', type: 'String', get: (r) => r.neighborhood, doc: 'Neighborhood' },
  { name: 'hour', type: 'DateTime', get: (r) => r.hour, doc: 'Hour start, UTC' },
  { name: 'avg_kw', type: 'Float64', get: (r) => r.avgKw, doc: 'Mean kW' },
  { name: 'min_kw', type: 'Float64', get: (r) => r.minKw, doc: 'Min kW' },
  { name: 'max_kw', type: 'Float64', get: (r) => r.maxKw, doc: 'Max kW' },
  { name: 'stddev_kw', type: 'Float64', get: (r) => r.stddevKw, doc: 'Population stddev kW' },
  { name: 'count', type: 'UInt32', get: (r) => r.count, doc: 'Readings in the hour' },
];

export const dailyPeakColumns: readonly Column<DailyPeak>[] = [
  { name: 'day', type: 'DateTime', get: (r) => r.day, doc: 'UTC day start' },
  { name: 'hour', type: 'DateTime', get: (r) => r.hour, doc: 'Hour start, UTC' },
  { name: 'total_kw', type: 'Float64', get: (r) => r.totalKw, doc: 'Sum of hourly mean kW over meters' },
  { name: 'rank', type: 'UInt8', get: (r) => r.rank, doc: '1–3' },
];

export const qualityLogColumns: readonly Column<QualityLogEntry>[] = [
  { name: 'batch_id', type: 'String', get: (r) => r.batchId, doc: 'Batch or checkpoint id' },
  { name: 'source', type: 'String', get: (r) => r.source, doc: 'Source of the batch' },
  { name: 'records_in', type: 'UInt64', get: (r) => r.recordsIn, doc: 'Records read' },
  { name: 'stored', type: 'UInt64', get: (r) => r.stored, doc: 'Readings stored' },
  { name: 'quarantined', type: 'UInt64', get: (r) => r.quarantined, doc: 'Records quarantined' },
  { name: 'dead_lettered', type: 'UInt64', get: (r) => r.deadLettered, doc: 'Messages dead-lettered' },
  { name: 'avg_score', type: 'Float64', get: (r) => r.avgScore, doc: 'Mean quality score' },
  { name: 'logged_at', type: 'DateTime', get: (r) => r.loggedAt, doc: 'When' },
];
