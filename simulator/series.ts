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
  invertedActivityScale,
  residentialActivityMax,
  residentialWeekday,
  residentialWeekend,
} from './profiles.js';
import type { SimMeter, SimRegistry } from './registry.js';
import { normal, type Rng, substream } from './rng.js';

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
  for (const meter of registry.meters) {
    if (meter.info.vacant) continue; // a vacant property draws nothing: the matrix is already 0
    const span = inverted.get(meter.index);
    fillMeter(
      values,
      meter,
      options.slots,
      temperatures.subarray(meter.region * options.hours, (meter.region + 1) * options.hours),
      weekend,
      span ? span.start : options.slots,
      span ? span.end : options.slots,
      substream(options.seed, 'load', meter.index),
    );
  }
  return values;
}

/** One meter's clean series; a function of its own so the hot loop is optimized on its own. */
function fillMeter(
  values: Int32Array,
  meter: SimMeter,
  slots: number,
  temperatures: Float64Array,
  weekend: Uint8Array,
  invertFrom: number,
  invertTo: number,
  rng: Rng,
): void {
  const offset = meter.index * slots;
  const innovationSd = DEVIATION_SD * Math.sqrt(1 - DEVIATION_PERSISTENCE * DEVIATION_PERSISTENCE);
  const ceilingKw = meter.limitKw * CLEAN_HEADROOM;
  const { commercial, baseKw, peakKw, shiftSlots, heatKwPerDegree, coolKwPerDegree } = meter;
  const noiseSd = meter.noise;
  let deviation = normal(rng) * DEVIATION_SD;
  for (let s = 0; s < slots; s++) {
    const day = (s / SLOTS_PER_DAY) | 0;
    const slotOfDay = s - day * SLOTS_PER_DAY;
    const shaped = (slotOfDay + shiftSlots + SLOTS_PER_DAY) % SLOTS_PER_DAY;
    const temperature = temperatures[s >> 2];
    const heatingDegrees = temperature < heatingBaseC ? heatingBaseC - temperature : 0;
    const coolingDegrees = temperature > coolingBaseC ? temperature - coolingBaseC : 0;
    const isInverted = s >= invertFrom && s < invertTo;
    let loadKw: number;
    if (commercial) {
      const dayFactor = weekend[day] === 1 ? commercialWeekendFactor : 1;
      const open = commercialOccupancy[shaped];
      const occupancy = dayFactor * (isInverted ? 1 - open : open);
      loadKw =
        baseKw +
        (peakKw - baseKw) * occupancy +
        heatKwPerDegree * heatingDegrees * (0.6 + 0.4 * occupancy) +
        coolKwPerDegree * coolingDegrees * (0.3 + 0.7 * occupancy);
    } else {
      const shape = weekend[day] === 1 ? residentialWeekend : residentialWeekday;
      const activity = isInverted
        ? invertedActivityScale * (residentialActivityMax - shape[shaped])
        : shape[shaped];
      // Thermostats follow occupancy (set back at night and when out), so weather load shares the
      // daily shape instead of flattening it.
      const occupied = 0.3 + (0.7 * activity) / residentialActivityMax;
      loadKw =
        baseKw +
        peakKw * activity +
        (heatKwPerDegree * heatingDegrees + coolKwPerDegree * coolingDegrees) * occupied;
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
