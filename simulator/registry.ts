/**
 * The meter registry and each meter's hidden load model. Neighborhoods hold meters of one type (a
 * residential street or a business district), so a neighborhood's mean profile is one that its clean
 * meters actually follow: mixing 30 kW shops with 1 kW homes would let the shops dictate the mean.
 */
import type { MeterInfo } from '../schemas/reading.js';
import type { ResolvedOptions } from './options.js';
import { chance, intBetween, normal, pick, type Rng, substream, uniform } from './rng.js';

export interface SimNeighborhood {
  readonly index: number;
  readonly name: string;
  readonly region: number;
  readonly commercial: boolean;
  readonly firstMeter: number;
  readonly meterCount: number;
}

export interface SimMeter {
  readonly index: number;
  readonly info: MeterInfo;
  readonly neighborhood: number;
  readonly region: number;
  readonly gateway: number;
  readonly commercial: boolean;
  /** The limit the pipeline applies: `max_kw` or the type's default. */
  readonly limitKw: number;
  /** Residential: night base load. Commercial: closed-hours load. kW. */
  readonly baseKw: number;
  /** Residential: scale of the activity shape. Commercial: business-hours plateau. kW. */
  readonly peakKw: number;
  /** Per-meter shift of the daily shape, in 15-minute intervals. */
  readonly shiftSlots: number;
  /** Standard deviation of the multiplicative noise per reading. */
  readonly noise: number;
  readonly heatKwPerDegree: number;
  readonly coolKwPerDegree: number;
  readonly reportsWatts: boolean;
  /** The unit as this meter spells it. */
  readonly unit: string;
  /** Share of eligible readings sent without a unit (0 for most meters). */
  readonly unitDropRate: number;
  /** The `location` column text, already CSV-quoted when it holds a comma. */
  readonly locationField: string;
}

export interface SimRegistry {
  readonly meters: readonly SimMeter[];
  readonly neighborhoods: readonly SimNeighborhood[];
  readonly regions: readonly string[];
  readonly gateways: number;
}

const regionNames = ['north', 'south', 'east', 'west', 'central'];
const kilowattSpellings = ['kW', 'kW', 'kW', 'kW', 'kW', 'kW', 'kW', 'KW', 'Kilowatts', 'kilowatt', 'kWh'];
const wattSpellings = ['W', 'W', 'W', 'Watts', 'Watts', 'watt'];

export function meterId(index: number): string {
  return `MTR-${String(index + 1).padStart(6, '0')}`;
}

function neighborhoodSizes(meters: number, rng: Rng): number[] {
  const sizes: number[] = [];
  let assigned = 0;
  while (assigned < meters) {
    const remaining = meters - assigned;
    let size = intBetween(rng, 20, 50);
    if (remaining <= 50) size = remaining;
    else if (remaining - size < 20) size = remaining - 20;
    sizes.push(size);
    assigned += size;
  }
  return sizes;
}

function regionCountFor(meters: number): number {
  if (meters < 40) return 1;
  return Math.min(5, Math.max(2, Math.round(meters / 250)));
}

function roundUpTo10(value: number): number {
  return Math.ceil(value / 10) * 10;
}

function buildMeter(
  options: ResolvedOptions,
  index: number,
  hood: SimNeighborhood,
  regionName: string,
  regionalFormat: boolean,
): SimMeter {
  const rng = substream(options.seed, 'meter', index);
  const commercial = hood.commercial;
  const vacant = !commercial && chance(rng, 0.012);
  let baseKw: number;
  let peakKw: number;
  let heat: number;
  let cool: number;
  let maxKw: number | null = null;
  if (commercial) {
    const large = chance(rng, 0.45);
    peakKw = large ? uniform(rng, 22, 60) : uniform(rng, 10, 20);
    baseKw = peakKw * uniform(rng, 0.18, 0.32);
    heat = peakKw * uniform(rng, 0.004, 0.012);
    cool = peakKw * uniform(rng, 0.008, 0.022);
    if (large) maxKw = Math.min(150, Math.max(60, roundUpTo10(peakKw * 2.2)));
  } else {
    baseKw = uniform(rng, 0.2, 0.5);
    peakKw = Math.min(1.8, Math.max(0.75, 1.2 + normal(rng) * 0.3));
    heat = chance(rng, 0.3) ? uniform(rng, 0.04, 0.09) : uniform(rng, 0, 0.012);
    cool = chance(rng, 0.6) ? uniform(rng, 0.03, 0.12) : uniform(rng, 0, 0.015);
  }
  const shiftSlots = intBetween(rng, commercial ? -4 : -3, commercial ? 4 : 3);
  const noise = uniform(rng, 0.05, 0.1);
  const reportsWatts = chance(rng, options.wattMeterFraction);
  const unit = pick(rng, reportsWatts ? wattSpellings : kilowattSpellings);
  const unitDropRate = chance(rng, options.unitDroppingMeterFraction) ? uniform(rng, 0.05, 0.15) : 0;
  const typeName = commercial ? 'Commercial' : 'Residential';
  const zone = hood.index + 1;
  const region = regionName[0].toUpperCase() + regionName.slice(1);
  const locationField = regionalFormat ? `"Zone ${zone}, ${region}"` : `${typeName}_Zone_${zone}`;
  const info: MeterInfo = {
    meterId: meterId(index),
    region: regionName,
    neighborhood: hood.name,
    meterType: commercial ? 'commercial' : 'residential',
    vacant,
    maxKw,
  };
  return {
    index,
    info,
    neighborhood: hood.index,
    region: hood.region,
    gateway: Math.floor(index / options.gatewaySize),
    commercial,
    limitKw: maxKw ?? (commercial ? options.commercialLimitKw : options.residentialLimitKw),
    baseKw,
    peakKw,
    shiftSlots,
    noise,
    heatKwPerDegree: heat,
    coolKwPerDegree: cool,
    reportsWatts,
    unit,
    unitDropRate,
    locationField,
  };
}

export function buildRegistry(options: ResolvedOptions): SimRegistry {
  const rng = substream(options.seed, 'neighborhoods');
  const sizes = neighborhoodSizes(options.meters, rng);
  const regionCount = regionCountFor(options.meters);
  const regions = regionNames.slice(0, regionCount);
  const neighborhoods: SimNeighborhood[] = [];
  const perRegion = new Array<number>(regionCount).fill(0);
  let firstMeter = 0;
  let commercialMeters = 0;
  for (let n = 0; n < sizes.length; n++) {
    const size = sizes[n];
    // Keeps the commercial share near 15 % whatever the neighborhood sizes turned out to be.
    const commercial = commercialMeters + size / 2 <= 0.15 * (firstMeter + size);
    if (commercial) commercialMeters += size;
    const region = Math.floor((n * regionCount) / sizes.length);
    perRegion[region] += 1;
    neighborhoods.push({
      index: n,
      name: `${regions[region]}-${String(perRegion[region]).padStart(2, '0')}`,
      region,
      commercial,
      firstMeter,
      meterCount: size,
    });
    firstMeter += size;
  }
  const meters: SimMeter[] = [];
  for (const hood of neighborhoods) {
    const regionalFormat = hood.index % 3 === 0;
    for (let i = 0; i < hood.meterCount; i++) {
      meters.push(buildMeter(options, hood.firstMeter + i, hood, regions[hood.region], regionalFormat));
    }
  }
  return { meters, neighborhoods, regions, gateways: Math.ceil(options.meters / options.gatewaySize) };
}

export const registryHeader = 'meter_id,region,neighborhood,meter_type,vacant,max_kw';

export function registryCsv(meters: readonly MeterInfo[]): string {
  const lines = [registryHeader];
  for (const m of meters) {
    lines.push(`${m.meterId},${m.region},${m.neighborhood},${m.meterType},${m.vacant},${m.maxKw ?? ''}`);
  }
  return `${lines.join('\n')}\n`;
}
