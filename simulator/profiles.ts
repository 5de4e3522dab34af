/**
 * Load shapes and weather. Shapes are smooth sums of bumps sampled at the middle of each 15-minute
 * interval, so consecutive clean readings change by far less than the 6× / 0.1× rate-of-change limits.
 * Times are UTC: the simulated grid lives in one time zone.
 */
import { DAY_MS, type ResolvedOptions, SLOTS_PER_DAY } from './options.js';
import { normal, substream } from './rng.js';

function ringBump(hour: number, centre: number, width: number): number {
  let distance = Math.abs(hour - centre);
  if (distance > 12) distance = 24 - distance;
  return Math.exp(-(distance * distance) / (2 * width * width));
}

function logistic(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

function sampleDay(shape: (hour: number) => number): Float64Array {
  const samples = new Float64Array(SLOTS_PER_DAY);
  for (let q = 0; q < SLOTS_PER_DAY; q++) samples[q] = shape((q + 0.5) / 4);
  return samples;
}

/**
 * Residential shapes above the night base load, each peaking at 1 (scaled per meter and per day): a
 * short morning peak (breakfast, showers before work), light daytime use, and an evening peak around
 * 18:45 that is narrow enough, as in metered homes, to sit well above 4σ of the household's week.
 * Weekends: a later, broader morning and more daytime use.
 */
export const homeMorningWeekday = sampleDay((h) => ringBump(h, 7.25, 0.75));
export const homeMorningWeekend = sampleDay((h) => ringBump(h, 9.25, 1.2));
export const homeEveningWeekday = sampleDay((h) => ringBump(h, 18.75, 1.4));
export const homeEveningWeekend = sampleDay((h) => ringBump(h, 18.25, 1.7));
export const homeDaytimeWeekday = sampleDay((h) => 0.2 * ringBump(h, 13, 3));
export const homeDaytimeWeekend = sampleDay((h) => 0.5 * ringBump(h, 13.5, 3));

/** Industrial occupancy 0…1 by shifts worked: 06–14, 06–22, or round the clock with shift changes. */
export const industrialOccupancy: Record<1 | 2 | 3, Float64Array> = {
  1: sampleDay((h) => logistic((h - 6) / 0.3) * logistic((14 - h) / 0.3)),
  2: sampleDay((h) => logistic((h - 6) / 0.3) * logistic((22 - h) / 0.3)),
  3: sampleDay((h) => 1 - 0.25 * (ringBump(h, 6, 0.4) + ringBump(h, 14, 0.4) + ringBump(h, 22, 0.4))),
};

/** Commercial occupancy 0…1: business hours 07:30–18:30 with one-hour ramps. */
export const commercialOccupancy = sampleDay((h) => logistic((h - 7.5) / 0.4) * logistic((18.5 - h) / 0.4));
/** Weekend occupancy relative to a weekday: closed, with lighting and HVAC schedules still running. */
export const commercialWeekendFactor = 0.3;
/**
 * A night-shift household lives its day 6 hours later (up at 13:00, its evening meal after midnight):
 * 12 hours would put its morning peak onto everybody's evening. A shop turned round opens at night.
 */
export const invertedShiftHours = { home: 6, shop: 12, industrial: 12 } as const;

/** Heating starts below, cooling above these outdoor temperatures (°C). */
export const heatingBaseC = 16;
export const coolingBaseC = 22;

/**
 * Hourly outdoor temperature per region (row-major: region × hour). A temperate climate by day of
 * year, a day-to-day anomaly shared mostly across regions (weather systems are large) and smoothed
 * between days, and a diurnal cycle coldest around 03:00.
 */
export function buildTemperatures(options: ResolvedOptions, regionCount: number): Float64Array {
  const rng = substream(options.seed, 'weather');
  const days = options.days;
  const dayAnomaly = new Float64Array((days + 1) * regionCount);
  let shared = normal(rng) * 3;
  const own = new Float64Array(regionCount);
  for (let r = 0; r < regionCount; r++) own[r] = normal(rng) * 1.5;
  for (let d = 0; d <= days; d++) {
    shared = 0.7 * shared + normal(rng) * 2.2;
    for (let r = 0; r < regionCount; r++) {
      own[r] = 0.7 * own[r] + normal(rng) * 1.0;
      dayAnomaly[d * regionCount + r] = shared + own[r];
    }
  }
  const regionOffsetC = [-3, 2.5, 0, 1, -1];
  const temperatures = new Float64Array(regionCount * days * 24);
  for (let h = 0; h < days * 24; h++) {
    const ms = options.startMs + h * 3_600_000;
    const dayOfYear = (ms - Date.UTC(new Date(ms).getUTCFullYear(), 0, 1)) / DAY_MS;
    const climate = 10 - 10 * Math.cos((2 * Math.PI * (dayOfYear - 20)) / 365.25);
    const hourOfDay = h % 24;
    const diurnal = 4 * Math.cos((2 * Math.PI * (hourOfDay - 15)) / 24);
    // Anomalies are anchored at noon and interpolated, so the temperature never jumps at midnight.
    const dayPosition = (h - 12) / 24;
    const d0 = Math.max(0, Math.floor(dayPosition));
    const weight = Math.min(1, Math.max(0, dayPosition - d0));
    for (let r = 0; r < regionCount; r++) {
      const a0 = dayAnomaly[d0 * regionCount + r];
      const a1 = dayAnomaly[Math.min(days, d0 + 1) * regionCount + r];
      temperatures[r * days * 24 + h] =
        climate + regionOffsetC[r % regionOffsetC.length] + a0 + (a1 - a0) * weight + diurnal;
    }
  }
  return temperatures;
}
