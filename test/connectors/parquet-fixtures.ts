/** Deterministic rows for the Parquet lake and Arrow tests (not a test file: shared by several). */

import type {
  Grade,
  HourlyConsumption,
  PeakClass,
  QualityTier,
  QuarantineRecord,
  Reading,
  ReadingFlag,
  ReadingStatus,
  Season,
} from '../../schemas/reading.js';
import { MEASUREMENT_NAMES } from '../../schemas/reading.js';

const QUARTER_HOUR = 15 * 60 * 1000;

/** A meter id that would break any SQL built by pasting it in. */
export const HOSTILE_METER_ID = `MTR-'; DROP TABLE readings; --\\"ü`;

const STATUSES: readonly ReadingStatus[] = ['measured', 'interpolated', 'missing'];
const TIERS: readonly QualityTier[] = ['premium', 'standard', 'quarantine'];
const GRADES: readonly Grade[] = ['A', 'B', 'C', 'F'];
const PEAKS: readonly PeakClass[] = ['peak', 'off_peak', 'standard'];
const FLAG_SETS: readonly (readonly ReadingFlag[])[] = [
  [],
  ['unit_converted'],
  ['spike', 'unit_inferred'],
  [],
  ['MISSING_READING', 'missing_short'],
];

export interface ReadingOptions {
  /** Epoch ms of the first interval. */
  readonly start: number;
  readonly meters: number;
  /** Intervals per meter, 15 minutes apart. */
  readonly intervals: number;
}

/**
 * Readings of `meters` meters over `intervals` quarter hours, meter-major in time order as a
 * stream delivers them. Every value depends only on the position, so two calls agree.
 */
export function makeReadings({ start, meters, intervals }: ReadingOptions): Reading[] {
  const readings: Reading[] = [];
  for (let slot = 0; slot < intervals; slot++) {
    for (let m = 0; m < meters; m++) {
      const i = slot * meters + m;
      const ts = start + slot * QUARTER_HOUR;
      const status = STATUSES[i % 3] as ReadingStatus;
      const kw =
        status === 'missing' ? null : Math.round(((i * 7919) % 100_000) + 0.1234 * (i % 10)) / 10_000;
      const meterId = m === 0 ? HOSTILE_METER_ID : `MTR-${String(m).padStart(5, '0')}`;
      readings.push({
        meterId,
        ts,
        kw,
        rawValue: kw === null ? '' : String(kw * 1000),
        rawUnit: kw === null ? '' : i % 4 === 0 ? 'W' : 'kW',
        status,
        flags: [...(FLAG_SETS[i % FLAG_SETS.length] as readonly ReadingFlag[])],
        warnings: i % 2,
        qualityScore: 100 - (i % 101),
        qualityTier: TIERS[i % 3] as QualityTier,
        grade: GRADES[i % 4] as Grade,
        peakClass: PEAKS[i % 3] as PeakClass,
        season: seasonOf(ts),
        recordId: `${meterId}|${ts}|${i.toString(16).padStart(12, '0')}`,
        // Non-ASCII in some sources exercises the UTF-8 paths.
        source: i % 5 === 0 ? 'raw/2024/01/31/23/zählerstände – nord.csv' : `stream:readings:${i}`,
        processedAt: ts + 61_234 + (i % 1000),
        pipelineVersion: '0.1.0',
      });
    }
  }
  return readings;
}

function seasonOf(ts: number): Season {
  const month = new Date(ts).getUTCMonth() + 1;
  if (month === 12 || month <= 2) return 'winter';
  if (month <= 5) return 'spring';
  if (month <= 8) return 'summer';
  return 'fall';
}

export function makeQuarantine(start: number, count: number): QuarantineRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    meterId: i % 4 === 0 ? '' : `MTR-${i}`,
    ts: i % 3 === 0 ? null : start + i * QUARTER_HOUR,
    raw: `MTR-${i},2024-13-45T99:00:00Z,"12,5",kW\n'quoted' \\ backslash`,
    reasons: i % 2 === 0 ? ['invalid_timestamp', 'value out of range: 1e309'] : ['unknown meter'],
    source: 'raw/2024/03/01/00/batch.csv',
    quarantinedAt: start + 3_600_000 + i,
  }));
}

export function makeHourly(start: number, meters: number, hours: number): HourlyConsumption[] {
  const rows: HourlyConsumption[] = [];
  for (let h = 0; h < hours; h++) {
    for (let m = 0; m < meters; m++) {
      rows.push({
        meterId: `MTR-${m}`,
        neighborhood: `N-${m % 3}`,
        hour: start + h * 3_600_000,
        avgKw: 1.25 + m,
        minKw: 0.5,
        maxKw: 3.75 + h,
        stddevKw: 0.125,
        count: 4,
      });
    }
  }
  return rows;
}

/** The `readings` view's row for a reading, as DuckDB returns it (times as Date, lists as arrays). */
export function readingAsLakeRow(r: Reading): Record<string, unknown> {
  return {
    meter_id: r.meterId,
    ts: new Date(r.ts),
    kw: r.kw,
    raw_value: r.rawValue,
    raw_unit: r.rawUnit,
    status: r.status,
    flags: [...r.flags],
    quality_score: r.qualityScore,
    quality_tier: r.qualityTier,
    grade: r.grade,
    peak_class: r.peakClass,
    season: r.season,
    record_id: r.recordId,
    source: r.source,
    processed_at: new Date(r.processedAt),
    pipeline_version: r.pipelineVersion,
    ...Object.fromEntries(MEASUREMENT_NAMES.map((m) => [m, r.measurements?.[m] ?? null])),
  };
}
