/**
 * Clean load for every meter and interval, as integers of 0.1 W (1e-4 kW): printed values are exact,
 * repeated values are bit-identical (stuck meters), and the matrix costs 4 bytes per interval.
 */
import { DAY_MS, type ResolvedOptions, SLOTS_PER_DAY } from './options.js';
import {
  commercialOccupancy,
  commercialWeekendFactor,
  coolingBaseC,
  heatingBaseC,
  homeDaytimeWeekday,
  homeDaytimeWeekend,
  homeEveningWeekday,
  homeEveningWeekend,
  homeMorningWeekday,
  homeMorningWeekend,
  industrialOccupancy,
  invertedShiftHours,
} from './profiles.js';
import type { SimMeter, SimRegistry } from './registry.js';
import { chance, normal, type Rng, substream, uniform } from './rng.js';

/** No line was sent for this interval. */
export const MISSING = -2147483648;
/** A line was sent with an empty value. */
export const NULL_VALUE = -2147483647;
/** Stored values are kW × this. */
export const KW_QUANTUM = 10_000;

/** Intervals [start, end) during which a meter follows the inverted (night-shift) day. */
export interface InvertedSpan {
  readonly start: number;
  readonly end: number;
}

/** Persistence of the slow per-meter deviation (habits, occupancy) from one interval to the next. */
const DEVIATION_PERSISTENCE = 0.97;
const DEVIATION_SD = 0.07;
const DEVIATION_LIMIT = 0.15;
const NOISE_LIMIT_SD = 2;
/** Clean values stay below this share of the meter's limit, whatever the weather and noise. */
const CLEAN_HEADROOM = 0.92;

export function weekendDays(options: ResolvedOptions): Uint8Array {
  const weekend = new Uint8Array(options.days);
  for (let d = 0; d < options.days; d++) {
    const weekday = new Date(options.startMs + d * DAY_MS).getUTCDay();
    weekend[d] = weekday === 0 || weekday === 6 ? 1 : 0;
  }
  return weekend;
}

export function generateLoad(
  options: ResolvedOptions,
  registry: SimRegistry,
  temperatures: Float64Array,
  inverted: ReadonlyMap<number, InvertedSpan>,
): Int32Array {
  const values = new Int32Array(registry.meters.length * options.slots);
  const weekend = weekendDays(options);
  const events = new Float64Array(options.slots);
  for (const meter of registry.meters) {
    if (meter.info.vacant) continue; // a vacant property draws nothing: the matrix is already 0
    const span = inverted.get(meter.index);
    const own = temperatures.subarray(meter.region * options.hours, (meter.region + 1) * options.hours);
    events.fill(0);
    if (meter.profile === 'home')
      applianceEvents(events, meter, weekend, substream(options.seed, 'events', meter.index));
    fillMeter(
      values,
      meter,
      options.slots,
      own,
      weekend,
      dayFactors(meter, own, weekend, substream(options.seed, 'days', meter.index)),
      events,
      span ? span.start : options.slots,
      span ? span.end : options.slots,
      substream(options.seed, 'load', meter.index),
    );
    if (meter.cadenceSlots === 2) halfHourly(values, meter.index * options.slots, options.slots);
  }
  return values;
}

/**
 * A 30-minute meter: the pair's mean in the first slot of each half hour (the energy of the half hour
 * as a mean kW), nothing in the second.
 */
function halfHourly(values: Int32Array, offset: number, slots: number): void {
  for (let s = 0; s + 1 < slots; s += 2) {
    values[offset + s] = Math.max(1, Math.round((values[offset + s] + values[offset + s + 1]) / 2));
    values[offset + s + 1] = MISSING;
  }
}

/**
 * Height of each day's peaks relative to the meter's usual: day-to-day variation (log-normal, ±15 %),
 * more at weekends (people at home) and on cold days (lighting, cooking, heating in the evening).
 */
function dayFactors(
  meter: SimMeter,
  temperatures: Float64Array,
  weekend: Uint8Array,
  rng: Rng,
): Float64Array {
  const days = weekend.length;
  const factors = new Float64Array(days);
  for (let d = 0; d < days; d++) {
    let mean = 0;
    for (let h = 0; h < 24; h++) mean += temperatures[d * 24 + h] / 24;
    const cold = mean < 12 ? 12 - mean : 0;
    const weekendLift = meter.profile === 'home' && weekend[d] === 1 ? 1.1 : 1;
    factors[d] = Math.exp(normal(rng) * 0.15) * weekendLift * (1 + 0.025 * cold);
  }
  return factors;
}

/** Adds `kw` over `length` slots from `from`, within the run. */
function addRun(events: Float64Array, from: number, length: number, kw: number): void {
  const end = Math.min(events.length, from + length);
  for (let s = Math.max(0, from); s < end; s++) events[s] += kw;
}

/**
 * A household's appliances as kW added to 15-minute means, heavy-tailed as metered homes are: kettles
 * (3 kW for 2–5 minutes), cooking (1–2.2 kW for 45–90 minutes), laundry and dishwashers (a 2 kW heating
 * phase, then the motor), electric showers (9 kW for 5–9 minutes, at the household's habitual time) and,
 * in some homes, 7 kW EV charging for 1.5–5 hours on some nights.
 */
function applianceEvents(events: Float64Array, meter: SimMeter, weekend: Uint8Array, rng: Rng): void {
  const days = weekend.length;
  const slotAt = (day: number, hour: number) => day * SLOTS_PER_DAY + Math.floor(hour * 4) + meter.shiftSlots;
  for (let d = 0; d < days; d++) {
    const kettles = 1 + Math.floor(uniform(rng, 0, 5));
    for (let k = 0; k < kettles; k++) {
      const p = rng.next();
      const hour =
        p < 0.4 ? uniform(rng, 6.5, 9.5) : p < 0.55 ? uniform(rng, 11, 14) : uniform(rng, 15.5, 22.5);
      addRun(events, slotAt(d, hour), 1, (3 * uniform(rng, 2, 5)) / 15);
    }
    if (chance(rng, 0.6)) {
      addRun(
        events,
        slotAt(d, uniform(rng, 17, 19.5)),
        3 + Math.floor(uniform(rng, 0, 4)),
        uniform(rng, 1, 2.2),
      );
    }
    if (chance(rng, 0.5)) {
      const from = slotAt(d, uniform(rng, 8, 21.5));
      addRun(events, from, 2, uniform(rng, 1.8, 2.2));
      addRun(events, from + 2, 2 + Math.floor(uniform(rng, 0, 5)), uniform(rng, 0.2, 0.5));
    }
    if (meter.shower && chance(rng, 0.85)) {
      const hour = meter.showerMorning ? uniform(rng, 6.5, 8.5) : uniform(rng, 20, 22.5);
      addRun(events, slotAt(d, hour), 1, (9 * uniform(rng, 5, 9)) / 15);
    }
    if (meter.evKw > 0 && chance(rng, meter.evNights)) {
      const from = slotAt(d, uniform(rng, 21.5, 25.5));
      addRun(events, from, 6 + Math.floor(uniform(rng, 0, 15)), meter.evKw);
    }
  }
}

/** One meter's clean series; a function of its own so the hot loop is optimized on its own. */
function fillMeter(
  values: Int32Array,
  meter: SimMeter,
  slots: number,
  temperatures: Float64Array,
  weekend: Uint8Array,
  dayFactor: Float64Array,
  events: Float64Array,
  invertFrom: number,
  invertTo: number,
  rng: Rng,
): void {
  const offset = meter.index * slots;
  const innovationSd = DEVIATION_SD * Math.sqrt(1 - DEVIATION_PERSISTENCE * DEVIATION_PERSISTENCE);
  const ceilingKw = meter.limitKw * CLEAN_HEADROOM;
  const { profile, baseKw, peakKw, shiftSlots, heatKwPerDegree, coolKwPerDegree } = meter;
  const noiseSd = meter.noise;
  const invertSlots = invertedShiftHours[profile] * 4;
  let deviation = normal(rng) * DEVIATION_SD;
  let machine = 1;
  for (let s = 0; s < slots; s++) {
    const day = (s / SLOTS_PER_DAY) | 0;
    const slotOfDay = s - day * SLOTS_PER_DAY;
    const isInverted = s >= invertFrom && s < invertTo;
    const shaped =
      (slotOfDay - shiftSlots + (isInverted ? invertSlots : 0) + 2 * SLOTS_PER_DAY) % SLOTS_PER_DAY;
    const temperature = temperatures[s >> 2];
    const heatingDegrees = temperature < heatingBaseC ? heatingBaseC - temperature : 0;
    const coolingDegrees = temperature > coolingBaseC ? temperature - coolingBaseC : 0;
    const isWeekend = weekend[day] === 1;
    let loadKw: number;
    if (profile === 'shop') {
      const dayFactor = isWeekend ? commercialWeekendFactor : 1;
      const open = commercialOccupancy[shaped];
      const occupancy = dayFactor * open;
      loadKw =
        baseKw +
        (peakKw - baseKw) * occupancy +
        heatKwPerDegree * heatingDegrees * (0.6 + 0.4 * occupancy) +
        coolKwPerDegree * coolingDegrees * (0.3 + 0.7 * occupancy);
    } else if (profile === 'industrial') {
      // Machines switch in and out: a level held for the hour, changing from hour to hour.
      if ((s & 3) === 0) machine = Math.exp(normal(rng) * 0.08);
      const occupancy = industrialOccupancy[meter.shifts][shaped] * (isWeekend ? meter.weekendShare : 1);
      loadKw =
        baseKw +
        (peakKw - baseKw) * occupancy * machine +
        heatKwPerDegree * heatingDegrees +
        coolKwPerDegree * coolingDegrees * (0.5 + 0.5 * occupancy);
    } else {
      const morning = (isWeekend ? homeMorningWeekend : homeMorningWeekday)[shaped];
      const evening = (isWeekend ? homeEveningWeekend : homeEveningWeekday)[shaped];
      const daytime = (isWeekend ? homeDaytimeWeekend : homeDaytimeWeekday)[shaped];
      const f = dayFactor[day];
      // Thermostats follow occupancy (set back at night and when out); a heat pump runs all day.
      const occupied = Math.min(1, 0.25 + morning + evening + 2 * daytime);
      const heating = heatKwPerDegree * heatingDegrees * (meter.heatPump ? 0.7 + 0.3 * occupied : occupied);
      loadKw =
        baseKw +
        meter.morningKw * morning * f +
        meter.eveningKw * evening * f +
        meter.eveningKw * daytime +
        heating +
        coolKwPerDegree * coolingDegrees * occupied +
        events[s];
    }
    deviation = DEVIATION_PERSISTENCE * deviation + innovationSd * normal(rng);
    if (deviation > DEVIATION_LIMIT) deviation = DEVIATION_LIMIT;
    else if (deviation < -DEVIATION_LIMIT) deviation = -DEVIATION_LIMIT;
    let noise = normal(rng);
    if (noise > NOISE_LIMIT_SD) noise = NOISE_LIMIT_SD;
    else if (noise < -NOISE_LIMIT_SD) noise = -NOISE_LIMIT_SD;
    let kw = loadKw * Math.exp(deviation) * (1 + noiseSd * noise);
    if (kw > ceilingKw) kw = ceilingKw;
    const quantized = Math.round(kw * KW_QUANTUM);
    values[offset + s] = Math.max(1, quantized);
  }
}
