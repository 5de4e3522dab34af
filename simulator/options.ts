import type { AnomalyKind, FaultKind } from './kinds.js';
import { anomalyKinds, faultKinds } from './kinds.js';

export const SLOT_MINUTES = 15;
export const SLOT_MS = SLOT_MINUTES * 60_000;
export const SLOTS_PER_HOUR = 4;
export const SLOTS_PER_DAY = 96;
export const DAY_MS = 86_400_000;
/** Slots in the 7-day windows the low-variance, erratic-spike and comm-failure rules use. */
export const WEEK_SLOTS = 7 * SLOTS_PER_DAY;

export interface SimulationOptions {
  /** Registered meters (ids MTR-000001 …). */
  meters: number;
  /** Whole simulated days. */
  days: number;
  /** First simulated day at UTC midnight: `2024-03-11` or `2024-03-11T00:00:00Z`. */
  start: string;
  /** Any non-negative safe integer; the same seed gives the same bytes. */
  seed: number;
  /** Meters per gateway; one CSV file per gateway and hour. Default 100. */
  gatewaySize?: number;
  /** Meters per fault kind as a fraction of all meters (default 0.015; at least 3 per kind from 200 meters). */
  faultRate?: number;
  /** Meters per anomaly kind as a fraction of all meters (default 0.01; at least 3 per kind from 200 meters). */
  anomalyRate?: number;
  /** Exact number of meters per fault kind, overriding `faultRate`. */
  faultCounts?: Partial<Record<FaultKind, number>>;
  /** Exact number of meters (unknown ids for `unknown_meter`) per anomaly kind, overriding `anomalyRate`. */
  anomalyCounts?: Partial<Record<AnomalyKind, number>>;
  /** Meters reporting in watts (default 0.15). */
  wattMeterFraction?: number;
  /** Meters that sometimes leave the unit empty (default 0.08). */
  unitDroppingMeterFraction?: number;
  /**
   * Meters reading every 30 minutes instead of 15 (default 0.3). Faults and anomalies are injected on
   * 15-minute meters only; half-hourly meters are part of the healthy fleet the false faults are counted on.
   */
  halfHourlyMeterFraction?: number;
  /**
   * Half-hourly meters send energy per interval (kWh in 30 minutes, unit `kWh`) instead of kW (default
   * false: the pipeline takes kWh as kW until standardizeUnits converts energy per interval).
   */
  halfHourlyKwh?: boolean;
  /** Physical limit of a residential meter without `max_kw` (default 20, as the seeds say). */
  residentialLimitKw?: number;
  /** Physical limit of a commercial meter without `max_kw` (default 50, B3.1 of the second seed). */
  commercialLimitKw?: number;
}

export interface SimulateOptions extends SimulationOptions {
  /** Output folder: registry.csv, labels.json and raw/YYYY/MM/DD/HH/gw-XXXX.csv. */
  out: string;
  /** Replace registry.csv, labels.json and raw/ left in `out` by an earlier run. */
  overwrite?: boolean;
}

export interface ResolvedOptions {
  readonly meters: number;
  readonly days: number;
  readonly startMs: number;
  readonly seed: number;
  readonly gatewaySize: number;
  readonly faultRate: number;
  readonly anomalyRate: number;
  readonly faultCounts: Partial<Record<FaultKind, number>>;
  readonly anomalyCounts: Partial<Record<AnomalyKind, number>>;
  readonly wattMeterFraction: number;
  readonly unitDroppingMeterFraction: number;
  readonly halfHourlyMeterFraction: number;
  readonly halfHourlyKwh: boolean;
  readonly residentialLimitKw: number;
  readonly commercialLimitKw: number;
  /** 15-minute intervals per meter. */
  readonly slots: number;
  readonly hours: number;
}

/** A simulation option that cannot be used, with the option's name and the value given. */
export class SimulationOptionsError extends Error {
  override readonly name = 'SimulationOptionsError';
  constructor(
    readonly option: string,
    readonly value: unknown,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${option}: ${message}`, options);
  }
}

/** The matrix of values is held in memory (4 bytes and 1 flag byte per interval); past this, split the run. */
export const MAX_INTERVALS = 120_000_000;
const MAX_METERS = 899_999;

function integerIn(option: string, value: unknown, low: number, high: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < low || value > high) {
    throw new SimulationOptionsError(option, value, `must be an integer from ${low} to ${high}`);
  }
  return value;
}

function fractionIn(option: string, value: unknown, high: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > high) {
    throw new SimulationOptionsError(option, value, `must be a number from 0 to ${high}`);
  }
  return value;
}

function booleanOption(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new SimulationOptionsError(option, value, 'must be true or false');
  return value;
}

function positiveNumber(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new SimulationOptionsError(option, value, 'must be a positive number');
  }
  return value;
}

/** Parses `YYYY-MM-DD` or an ISO-8601 instant that falls on a UTC midnight. */
export function parseStartDate(value: unknown): number {
  if (typeof value !== 'string') {
    throw new SimulationOptionsError('start', value, 'must be a date such as 2024-03-11');
  }
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const instant = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(value);
  if (!dateOnly && !instant) {
    throw new SimulationOptionsError(
      'start',
      value,
      'must be YYYY-MM-DD or an ISO-8601 instant at UTC midnight',
    );
  }
  const ms = Date.parse(dateOnly ? `${value}T00:00:00Z` : value);
  if (!Number.isFinite(ms)) {
    throw new SimulationOptionsError('start', value, 'is not a calendar date');
  }
  if (dateOnly && new Date(ms).toISOString().slice(0, 10) !== value) {
    throw new SimulationOptionsError('start', value, 'is not a calendar date');
  }
  if (ms % DAY_MS !== 0) {
    throw new SimulationOptionsError('start', value, 'must fall on a UTC midnight');
  }
  if (ms < Date.UTC(2001, 0, 1) || ms > Date.UTC(2200, 0, 1)) {
    // Clock-reset anomalies write 1970 and 2000 dates; simulated time must stay clear of them.
    throw new SimulationOptionsError('start', value, 'must be between 2001-01-01 and 2200-01-01');
  }
  return ms;
}

function countsFor<K extends string>(
  option: string,
  value: unknown,
  allowed: readonly K[],
): Partial<Record<K, number>> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SimulationOptionsError(option, value, 'must be an object of kind → count');
  }
  const counts: Partial<Record<K, number>> = {};
  for (const [kind, count] of Object.entries(value)) {
    if (!(allowed as readonly string[]).includes(kind)) {
      throw new SimulationOptionsError(
        `${option}.${kind}`,
        count,
        `unknown kind; one of ${allowed.join(', ')}`,
      );
    }
    counts[kind as K] = integerIn(`${option}.${kind}`, count, 0, MAX_METERS);
  }
  return counts;
}

export function resolveOptions(options: SimulationOptions): ResolvedOptions {
  const meters = integerIn('meters', options.meters, 1, MAX_METERS);
  const days = integerIn('days', options.days, 1, 366);
  const startMs = parseStartDate(options.start);
  const seed = integerIn('seed', options.seed, 0, Number.MAX_SAFE_INTEGER);
  const slots = days * SLOTS_PER_DAY;
  if (meters * slots > MAX_INTERVALS) {
    throw new SimulationOptionsError(
      'meters',
      meters,
      `meters × days × 96 = ${meters * slots} intervals exceeds the in-memory limit of ${MAX_INTERVALS}; run fewer days at a time`,
    );
  }
  const residentialLimitKw = positiveNumber('residentialLimitKw', options.residentialLimitKw ?? 20);
  const commercialLimitKw = positiveNumber('commercialLimitKw', options.commercialLimitKw ?? 50);
  if (residentialLimitKw < 10 || commercialLimitKw < 45) {
    // Clean load profiles reach about 12 kW (residential) and 45 kW (commercial without max_kw).
    throw new SimulationOptionsError(
      residentialLimitKw < 10 ? 'residentialLimitKw' : 'commercialLimitKw',
      residentialLimitKw < 10 ? residentialLimitKw : commercialLimitKw,
      'is below what clean profiles reach (residential ≥ 10 kW, commercial ≥ 45 kW)',
    );
  }
  return {
    meters,
    days,
    startMs,
    seed,
    gatewaySize: integerIn('gatewaySize', options.gatewaySize ?? 100, 1, 100_000),
    faultRate: fractionIn('faultRate', options.faultRate ?? 0.015, 0.1),
    anomalyRate: fractionIn('anomalyRate', options.anomalyRate ?? 0.01, 0.03),
    faultCounts: countsFor('faultCounts', options.faultCounts, faultKinds),
    anomalyCounts: countsFor('anomalyCounts', options.anomalyCounts, anomalyKinds),
    wattMeterFraction: fractionIn('wattMeterFraction', options.wattMeterFraction ?? 0.15, 1),
    unitDroppingMeterFraction: fractionIn(
      'unitDroppingMeterFraction',
      options.unitDroppingMeterFraction ?? 0.08,
      1,
    ),
    halfHourlyMeterFraction: fractionIn('halfHourlyMeterFraction', options.halfHourlyMeterFraction ?? 0.3, 1),
    halfHourlyKwh: booleanOption('halfHourlyKwh', options.halfHourlyKwh ?? false),
    residentialLimitKw,
    commercialLimitKw,
    slots,
    hours: days * 24,
  };
}

/** `2024-03-11T00:15:00Z`: labels and clean readings use this form. */
export function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}
