/**
 * Every threshold of the business rules in one validated profile. Defaults are the seeds' values; where
 * the seeds disagree, the default is named here and the alternative documented beside it (README, "Rule
 * profile").
 */

import { checkTimeZone } from './local-time.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export interface RuleProfile {
  units: {
    /** Missing unit: a value below this is taken as kW (seed: < 10). */
    inferKwBelow: number;
    /** Missing unit: a value above this is taken as W (seed: > 1000); in between is ambiguous → quarantine. */
    inferWattsAbove: number;
    /** Decimal places kept after conversion (B1.3). */
    decimals: number;
  };
  validation: {
    /**
     * Physical limit for residential meters in kW. Seeds: 20 kW (architecture doc, chosen) or 50 kW (B3.1).
     * A registry `max_kw` overrides it per meter.
     */
    residentialMaxKw: number;
    /** Physical limit for commercial meters without `max_kw` (B3.1 of the second seed: 50 kW). */
    commercialMaxKw: number;
    /** Readings further ahead of the reference clock than this are rejected as future (seed: ±1 h). */
    futureToleranceMs: number;
    /** Readings before this date are clock-reset dates (1970, 2000-01-01 …) and rejected. ISO date. */
    earliestValid: string;
    /** Readings older than this behind the reference clock are flagged backdated (not in replay mode). */
    backdatedAfterMs: number;
    /**
     * Readings more than this ahead of the event-time frontier (the later of the latest accepted reading
     * and the median of the batch) are quarantined as `far_future` instead of moving the watermark.
     */
    farFutureMs: number;
    /** Readings more than this behind the frontier are quarantined as `far_past` (a 2010 reading in 2024). */
    farPastMs: number;
  };
  gaps: {
    /** Reading interval used until a meter's own interval is inferred from its data. */
    defaultIntervalMs: number;
    /** Gaps shorter than this are filled by linear interpolation (seed: < 4 h). */
    interpolateBelowMs: number;
    /** Gaps at least this long are missing_extended with a critical alert (seed: ≥ 24 h). */
    extendedFromMs: number;
    /** A connectivity alert is raised when more than this many NULL readings come in a row (B2.3: > 4). */
    maxConsecutiveNulls: number;
    /** No meter's cadence is taken to be shorter than this, whatever its data shows (1 ms apart …). */
    minIntervalMs: number;
    /**
     * Rows one gap may emit; a longer gap becomes one `missing_extended` row for the whole span (and its
     * alert names the span), so one odd timestamp cannot emit millions of rows.
     */
    maxRowsPerGap: number;
  };
  rateOfChange: {
    /** Increase ratio above which a reading is a spike: > 500 % increase means cur > prev × 6. */
    spikeIncreasePct: number;
    /** Decrease above which a reading is a drop: > 90 % decrease means cur < prev × 0.1. */
    dropDecreasePct: number;
    /** Below this previous value (kW) ratios are noise and not judged. */
    minBaseKw: number;
  };
  faults: {
    /** Zero fault: 0 kW for at least this long. Seeds: 48 h (architecture doc, chosen) or 24 h (B3.2). */
    zeroMinDurationMs: number;
    /** Stuck fault: no variance for at least this long (seed: 24 h). */
    stuckMinDurationMs: number;
    /** Readings within this of each other count as "no variance" (B4.1 speaks of variance < 0.01 kW²). */
    stuckToleranceKw: number;
    /** Overload: above the meter's limit for at least this many consecutive readings (seed: 6). */
    overloadConsecutive: number;
    /** Overload limit in kW for meters without `max_kw` (seed: 20 kW). */
    overloadKw: number;
    /** Rolling window for low variance, erratic spike and communication failure (seed: 7 days). */
    rollingWindowMs: number;
    /** Low variance: coefficient of variation over the window below this (seed: 0.01). */
    lowVarianceCv: number;
    /** Erratic spike: a reading above mean + k·σ of the window (seed: 4). */
    spikeSigmas: number;
    /** Minimum readings in the window before low variance / erratic spike are judged. */
    minWindowReadings: number;
    /** Communication failure: more than this share of expected readings missing over the window (seed: 20 %). */
    commMissingShare: number;
    // --- Erratic spike judged against the meter's own normal (issue 13; README "Rule table") ---
    /**
     * Which erratic-spike rule runs. `own_profile` (default): an isolated excursion far above the meter's
     * own readings at that time of day (detect-erratic-excursion.ts). `seed_sigma`: B4.2 as written, a
     * reading above mean + `spikeSigmas`·σ of the window (detect-erratic-spike.ts), which fires on the
     * ordinary evening peak of most homes.
     */
    spikeRule: 'own_profile' | 'seed_sigma';
    /** own_profile: above this × the meter's highest reading within ±1 h of that time of day, per day of the window. */
    spikeProfileFactor: number;
    /** own_profile: and above this × the meter's highest reading of the whole window. */
    spikeWeekMaxFactor: number;
    /** own_profile: and at least this many kW above that time-of-day baseline. */
    spikeMinExcessKw: number;
    /** own_profile: back below the threshold within this many readings, or it is a load, not a spike. */
    spikeMaxReadings: number;
    /** own_profile: "back down" means below this share of the excursion's first reading. */
    spikeReturnShare: number;
    /** own_profile: history a meter needs before it is judged (the seed's window is 7 days; see README). */
    spikeMinHistoryMs: number;
    /** own_profile: days of the window with readings at that time of day before it is judged there. */
    spikeMinSlotDays: number;
    // --- end erratic spike ---
    // --- Neighborhood outlier against peers of the same type (issue 13) ---
    /**
     * Hours where the meter is above its own Q3 + this × IQR over the window are left out of its
     * correlation: a 7 kW EV charge at night or a sauna is the household's own business, not an atypical
     * daily pattern, yet a few such hours dominate a Pearson correlation.
     */
    neighborhoodTrimIqr: number;
    /** Consecutive day-end judgements below the correlation threshold before a fault is raised. */
    neighborhoodConsecutive: number;
    // --- end neighborhood outlier ---
    /**
     * Communication failure: history a meter needs before its missing share is judged (default 1 day;
     * the seed's window is 7 days, set this to 7 days to wait for it; README "Fault rules").
     */
    commMinObservedMs: number;
    /**
     * How long a reading is held back from the hourly aggregates (and so the daily peaks and the
     * neighborhood correlation) in event time, so that a zero or stuck fault recognised within it takes the
     * readings since its start out before the hour is emitted (default 48 h: the longest recognition delay,
     * `zeroMinDurationMs`). The cost is analytics latency of the same length; 0 emits an hour as soon as the
     * watermark passes it and leaves the readings before a fault's recognition in (README "Fault rules").
     */
    analyticsHoldMs: number;
    /** Neighborhood outlier: correlation of hourly profiles below this (seed: 0.3). */
    neighborhoodMinCorrelation: number;
    /** Window of hourly aggregates the neighborhood correlation is computed over. */
    neighborhoodWindowMs: number;
    /** Minimum meters with data in a neighborhood before correlation is judged. */
    neighborhoodMinMeters: number;
  };
  peaks: {
    /** Weekday peak hours [from, to) local to `timeZoneOffsetMinutes` (seed: 17:00–21:00). */
    peakFromHour: number;
    peakToHour: number;
    /** Off-peak [from, to) wrapping midnight (seed: 23:00–06:00). */
    offPeakFromHour: number;
    offPeakToHour: number;
    /** Offset of the utility's local time from UTC in minutes, for peak classes and days. */
    timeZoneOffsetMinutes: number;
    /** How many top hours per day are kept (seed: 3). */
    topHoursPerDay: number;
  };
  /** Plausible ranges of the optional measurements a reading may carry (`validate-measurements.ts`). */
  measurements: {
    voltageMinV: number;
    voltageMaxV: number;
    currentMinA: number;
    currentMaxA: number;
    powerFactorMin: number;
    powerFactorMax: number;
    frequencyMinHz: number;
    frequencyMaxHz: number;
    temperatureMinC: number;
    temperatureMaxC: number;
    humidityMinPct: number;
    humidityMaxPct: number;
  };
  /** Hours the daily peak ranking leaves out (`operators/peak-exclusions.ts`; README "Peak exclusions"). */
  exclusions: {
    /**
     * The job (`run`, the cross-meter stage) runs the exclusion stage, with weather and maintenance
     * windows read from the hot store's `weather_observations` and `maintenance_windows` tables.
     */
    enabled: boolean;
    /** How often (ms) the job re-reads those tables. */
    refreshMs: number;
    /** IANA time zone whose local dates decide holidays (daylight saving through Intl). */
    timeZone: string;
    /**
     * `date-holidays` calendar (`DE`, `DE-BY` …) for registry regions that are not calendar codes
     * themselves; empty: no holiday exclusion.
     */
    holidayCalendar: string;
    /** Weather of the region and hour above this (°C) excludes it (architecture doc: 35 °C). */
    hotAboveC: number;
    /** … or below this (°C) (architecture doc: −10 °C). */
    coldBelowC: number;
  };
  quality: {
    unitConversion: number;
    perInterpolatedHour: number;
    perValidationWarning: number;
    rateOfChangeFlag: number;
    fault: number;
    premiumFrom: number;
    standardFrom: number;
    /** Letter grades of the second seed, on the same 0–100 score: A ≥ 90, B ≥ 75, C ≥ 60, else F. */
    gradeA: number;
    gradeB: number;
    gradeC: number;
  };
  /** Allowed event-time disorder before the watermark passes a reading. */
  maxOutOfOrdernessMs: number;
}

export const defaultRuleProfile: RuleProfile = {
  units: { inferKwBelow: 10, inferWattsAbove: 1000, decimals: 4 },
  validation: {
    residentialMaxKw: 20,
    commercialMaxKw: 50,
    futureToleranceMs: HOUR,
    earliestValid: '2010-01-01T00:00:00Z',
    backdatedAfterMs: 7 * DAY,
    farFutureMs: 2 * DAY,
    farPastMs: 400 * DAY,
  },
  gaps: {
    defaultIntervalMs: 15 * 60_000,
    interpolateBelowMs: 4 * HOUR,
    extendedFromMs: DAY,
    maxConsecutiveNulls: 4,
    minIntervalMs: 60_000,
    maxRowsPerGap: 2_880,
  },
  rateOfChange: { spikeIncreasePct: 500, dropDecreasePct: 90, minBaseKw: 0.05 },
  faults: {
    zeroMinDurationMs: 48 * HOUR,
    stuckMinDurationMs: DAY,
    stuckToleranceKw: 0,
    overloadConsecutive: 6,
    overloadKw: 20,
    rollingWindowMs: 7 * DAY,
    lowVarianceCv: 0.01,
    spikeSigmas: 4,
    minWindowReadings: 96,
    spikeRule: 'own_profile',
    spikeProfileFactor: 3,
    spikeWeekMaxFactor: 1.5,
    spikeMinExcessKw: 1,
    spikeMaxReadings: 2,
    spikeReturnShare: 0.5,
    spikeMinHistoryMs: 3 * DAY,
    spikeMinSlotDays: 3,
    commMissingShare: 0.2,
    neighborhoodMinCorrelation: 0.3,
    neighborhoodWindowMs: 3 * DAY,
    neighborhoodMinMeters: 5,
    neighborhoodTrimIqr: 1.5,
    neighborhoodConsecutive: 3,
    commMinObservedMs: DAY,
    analyticsHoldMs: 48 * HOUR,
  },
  peaks: {
    peakFromHour: 17,
    peakToHour: 21,
    offPeakFromHour: 23,
    offPeakToHour: 6,
    timeZoneOffsetMinutes: 0,
    topHoursPerDay: 3,
  },
  // 230 V ± 10 % is the EN 50160 band; the wider bounds leave sags and swells in and refuse wiring errors.
  measurements: {
    voltageMinV: 150,
    voltageMaxV: 280,
    currentMinA: 0,
    currentMaxA: 200,
    powerFactorMin: 0,
    powerFactorMax: 1,
    frequencyMinHz: 45,
    frequencyMaxHz: 65,
    temperatureMinC: -40,
    temperatureMaxC: 70,
    humidityMinPct: 0,
    humidityMaxPct: 100,
  },
  exclusions: {
    enabled: true,
    refreshMs: 60_000,
    timeZone: 'Europe/Berlin',
    holidayCalendar: 'DE',
    hotAboveC: 35,
    coldBelowC: -10,
  },
  quality: {
    unitConversion: 5,
    perInterpolatedHour: 10,
    perValidationWarning: 15,
    rateOfChangeFlag: 20,
    fault: 30,
    premiumFrom: 90,
    standardFrom: 70,
    gradeA: 90,
    gradeB: 75,
    gradeC: 60,
  },
  maxOutOfOrdernessMs: HOUR,
};

export class RuleProfileError extends Error {
  override readonly name = 'RuleProfileError';
  constructor(readonly problems: string[]) {
    super(`invalid rule profile:\n  - ${problems.join('\n  - ')}`);
  }
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type RuleProfileOverrides = DeepPartial<RuleProfile>;

/**
 * Merges overrides (e.g. a JSON file a utility keeps) onto the defaults and checks every threshold, so a
 * typo stops the job at start rather than silently disabling a rule.
 */
export function resolveRuleProfile(overrides: unknown = {}): RuleProfile {
  const problems: string[] = [];
  const merged = mergeInto(defaultRuleProfile, overrides, '', problems) as RuleProfile;
  const positive = (path: string, v: number) => {
    if (!(v > 0)) problems.push(`${path} must be > 0, got ${v}`);
  };
  const share = (path: string, v: number) => {
    if (!(v >= 0 && v <= 1)) problems.push(`${path} must be within [0, 1], got ${v}`);
  };
  const hour = (path: string, v: number) => {
    if (!(Number.isInteger(v) && v >= 0 && v <= 24)) problems.push(`${path} must be an hour 0–24, got ${v}`);
  };
  const { units, validation, gaps, rateOfChange, faults, peaks, quality } = merged;
  if (!(units.inferKwBelow < units.inferWattsAbove))
    problems.push('units.inferKwBelow must be < units.inferWattsAbove');
  if (!(Number.isInteger(units.decimals) && units.decimals >= 0 && units.decimals <= 9))
    problems.push(`units.decimals must be an integer 0–9, got ${units.decimals}`);
  positive('validation.residentialMaxKw', validation.residentialMaxKw);
  positive('validation.commercialMaxKw', validation.commercialMaxKw);
  if (Number.isNaN(Date.parse(validation.earliestValid)))
    problems.push(`validation.earliestValid is not a date: ${validation.earliestValid}`);
  positive('gaps.defaultIntervalMs', gaps.defaultIntervalMs);
  positive('gaps.minIntervalMs', gaps.minIntervalMs);
  if (!(gaps.minIntervalMs <= gaps.defaultIntervalMs))
    problems.push('gaps.minIntervalMs must be <= gaps.defaultIntervalMs');
  if (!(Number.isInteger(gaps.maxRowsPerGap) && gaps.maxRowsPerGap >= 1))
    problems.push(`gaps.maxRowsPerGap must be an integer >= 1, got ${gaps.maxRowsPerGap}`);
  positive('validation.farFutureMs', validation.farFutureMs);
  positive('validation.farPastMs', validation.farPastMs);
  if (!(validation.farFutureMs > validation.futureToleranceMs))
    problems.push('validation.farFutureMs must be > validation.futureToleranceMs');
  if (!(gaps.interpolateBelowMs <= gaps.extendedFromMs))
    problems.push('gaps.interpolateBelowMs must be <= gaps.extendedFromMs');
  positive('rateOfChange.spikeIncreasePct', rateOfChange.spikeIncreasePct);
  if (!(rateOfChange.dropDecreasePct > 0 && rateOfChange.dropDecreasePct < 100))
    problems.push(
      `rateOfChange.dropDecreasePct must be within (0, 100), got ${rateOfChange.dropDecreasePct}`,
    );
  positive('faults.zeroMinDurationMs', faults.zeroMinDurationMs);
  positive('faults.stuckMinDurationMs', faults.stuckMinDurationMs);
  if (!(Number.isFinite(faults.analyticsHoldMs) && faults.analyticsHoldMs >= 0))
    problems.push(`faults.analyticsHoldMs must be a finite number >= 0, got ${faults.analyticsHoldMs}`);
  positive('faults.overloadConsecutive', faults.overloadConsecutive);
  positive('faults.rollingWindowMs', faults.rollingWindowMs);
  positive('faults.spikeSigmas', faults.spikeSigmas);
  share('faults.commMissingShare', faults.commMissingShare);
  if (faults.spikeRule !== 'own_profile' && faults.spikeRule !== 'seed_sigma')
    problems.push(
      `faults.spikeRule must be own_profile or seed_sigma, got ${JSON.stringify(faults.spikeRule)}`,
    );
  positive('faults.spikeProfileFactor', faults.spikeProfileFactor);
  positive('faults.spikeWeekMaxFactor', faults.spikeWeekMaxFactor);
  positive('faults.spikeMinExcessKw', faults.spikeMinExcessKw + 1);
  if (!(Number.isInteger(faults.spikeMaxReadings) && faults.spikeMaxReadings >= 1))
    problems.push(`faults.spikeMaxReadings must be an integer >= 1, got ${faults.spikeMaxReadings}`);
  share('faults.spikeReturnShare', faults.spikeReturnShare);
  positive('faults.neighborhoodTrimIqr', faults.neighborhoodTrimIqr);
  if (!(Number.isInteger(faults.neighborhoodConsecutive) && faults.neighborhoodConsecutive >= 1))
    problems.push(
      `faults.neighborhoodConsecutive must be an integer >= 1, got ${faults.neighborhoodConsecutive}`,
    );
  positive('faults.commMinObservedMs', faults.commMinObservedMs + 1);
  positive('faults.spikeMinHistoryMs', faults.spikeMinHistoryMs + 1);
  if (!(Number.isInteger(faults.spikeMinSlotDays) && faults.spikeMinSlotDays >= 1))
    problems.push(`faults.spikeMinSlotDays must be an integer >= 1, got ${faults.spikeMinSlotDays}`);
  if (!(faults.neighborhoodMinCorrelation >= -1 && faults.neighborhoodMinCorrelation <= 1))
    problems.push('faults.neighborhoodMinCorrelation must be within [-1, 1]');
  for (const k of ['peakFromHour', 'peakToHour', 'offPeakFromHour', 'offPeakToHour'] as const)
    hour(`peaks.${k}`, peaks[k]);
  const m = merged.measurements;
  for (const [lo, hi] of [
    ['voltageMinV', 'voltageMaxV'],
    ['currentMinA', 'currentMaxA'],
    ['powerFactorMin', 'powerFactorMax'],
    ['frequencyMinHz', 'frequencyMaxHz'],
    ['temperatureMinC', 'temperatureMaxC'],
    ['humidityMinPct', 'humidityMaxPct'],
  ] as const)
    if (!(m[lo] < m[hi])) problems.push(`measurements.${lo} must be < measurements.${hi}`);
  try {
    checkTimeZone(merged.exclusions.timeZone);
  } catch {
    problems.push(`exclusions.timeZone is not an IANA time zone: ${merged.exclusions.timeZone}`);
  }
  if (!/^([A-Z]{2}(-[A-Z0-9]{1,3})?)?$/.test(merged.exclusions.holidayCalendar))
    problems.push(
      `exclusions.holidayCalendar must be a calendar code such as DE or DE-BY, got ${merged.exclusions.holidayCalendar}`,
    );
  if (!(merged.exclusions.refreshMs >= 1000)) problems.push('exclusions.refreshMs must be >= 1000');
  if (!(merged.exclusions.coldBelowC < merged.exclusions.hotAboveC))
    problems.push('exclusions.coldBelowC must be < exclusions.hotAboveC');
  if (!(quality.standardFrom <= quality.premiumFrom))
    problems.push('quality.standardFrom must be <= quality.premiumFrom');
  if (!(quality.gradeC <= quality.gradeB && quality.gradeB <= quality.gradeA))
    problems.push('quality grades must satisfy gradeC <= gradeB <= gradeA');
  positive('maxOutOfOrdernessMs', merged.maxOutOfOrdernessMs + 1);
  if (problems.length > 0) throw new RuleProfileError(problems);
  return merged;
}

function mergeInto(base: unknown, over: unknown, path: string, problems: string[]): unknown {
  if (over === undefined) return structuredClone(base);
  if (typeof base === 'object' && base !== null) {
    if (typeof over !== 'object' || over === null || Array.isArray(over)) {
      problems.push(`${path || 'profile'} must be an object`);
      return structuredClone(base);
    }
    const result: Record<string, unknown> = {};
    for (const key of Object.keys(over)) {
      if (!(key in base)) problems.push(`unknown setting ${path ? `${path}.` : ''}${key}`);
    }
    for (const [key, value] of Object.entries(base)) {
      result[key] = mergeInto(
        value,
        (over as Record<string, unknown>)[key],
        path ? `${path}.${key}` : key,
        problems,
      );
    }
    return result;
  }
  if (typeof over !== typeof base) {
    problems.push(`${path} must be a ${typeof base}, got ${JSON.stringify(over)}`);
    return base;
  }
  return over;
}
