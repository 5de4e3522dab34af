/**
 * The meter registry and each meter's hidden load model. Neighborhoods mix types as real ones do: a
 * residential street holds homes and a few shops (e.g. 18 homes + 2 shops), a business district shops
 * and offices, an industrial estate plants (registered `commercial`, with `max_kw`). What each profile is
 * modelled on: simulator/README.md.
 */
import type { MeterInfo } from '../schemas/reading.js';
import type { ResolvedOptions } from './options.js';
import { chance, intBetween, normal, pick, type Rng, substream, uniform } from './rng.js';

/** What a neighborhood is: a street of homes with a few shops, a business district, an industrial estate. */
export type NeighborhoodKind = 'residential' | 'business' | 'industrial';

/** The load model a meter follows. `shop` and `industrial` meters are registered `commercial`. */
export type LoadProfile = 'home' | 'shop' | 'industrial';

export interface SimNeighborhood {
  readonly index: number;
  readonly name: string;
  readonly region: number;
  /** True for business districts and industrial estates (no homes). */
  readonly commercial: boolean;
  readonly kind: NeighborhoodKind;
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
  readonly profile: LoadProfile;
  /** Reading cadence in 15-minute slots: 1 (15 min) or 2 (30 min: one reading per pair of slots). */
  readonly cadenceSlots: 1 | 2;
  /** Homes: amplitude of the morning and evening peaks above the base load, kW. */
  readonly morningKw: number;
  readonly eveningKw: number;
  /** Homes: an EV charger's power (7–7.4 kW), 0 without one; share of nights it charges. */
  readonly evKw: number;
  readonly evNights: number;
  /** Homes: an electric shower (UK-style, 8–10 kW for a few minutes), morning (true) or evening habit. */
  readonly shower: boolean;
  readonly showerMorning: boolean;
  /** Heating by a heat pump (kW per degree below 16 °C, running all day) rather than occupancy-driven. */
  readonly heatPump: boolean;
  /** Industrial: shifts worked (1: 06–14, 2: 06–22, 3: round the clock) and the weekend's share. */
  readonly shifts: 1 | 2 | 3;
  readonly weekendShare: number;
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
  /** Sends energy per half hour (kWh) instead of kW: half-hourly meters with `halfHourlyKwh`. */
  readonly reportsKwh: boolean;
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
  profile: LoadProfile,
  regionName: string,
  regionalFormat: boolean,
): SimMeter {
  const rng = substream(options.seed, 'meter', index);
  const commercial = profile !== 'home';
  const vacant = !commercial && chance(rng, 0.012);
  let baseKw: number;
  let peakKw: number;
  let heat: number;
  let cool: number;
  let maxKw: number | null = null;
  let morningKw = 0;
  let eveningKw = 0;
  let evKw = 0;
  let evNights = 0;
  let shower = false;
  let showerMorning = true;
  let heatPump = false;
  let shifts: 1 | 2 | 3 = 1;
  let weekendShare = 0;
  if (profile === 'shop') {
    const large = chance(rng, 0.45);
    peakKw = large ? uniform(rng, 22, 60) : uniform(rng, 10, 20);
    baseKw = peakKw * uniform(rng, 0.18, 0.32);
    heat = peakKw * uniform(rng, 0.004, 0.012);
    cool = peakKw * uniform(rng, 0.008, 0.022);
    if (large) maxKw = Math.min(150, Math.max(60, roundUpTo10(peakKw * 2.2)));
  } else if (profile === 'industrial') {
    peakKw = uniform(rng, 60, 220);
    baseKw = peakKw * uniform(rng, 0.2, 0.4);
    heat = peakKw * uniform(rng, 0.001, 0.004);
    cool = peakKw * uniform(rng, 0.002, 0.008);
    // An estate's plants keep the same shifts (its transport, its workforce): plants of different shift
    // patterns side by side would not correlate, and the registry has no finer type to tell them apart.
    shifts = ([1, 2, 2, 3] as const)[hood.index % 4]!;
    weekendShare = uniform(rng, 0.1, 0.5);
    maxKw = roundUpTo10(peakKw * 1.6);
  } else {
    baseKw = uniform(rng, 0.15, 0.5);
    peakKw = 0;
    morningKw = uniform(rng, 0.4, 1.4);
    // Skewed: most evening peaks are 1–2 kW above base, a few households cook and heat far more.
    eveningKw = Math.min(4, 0.7 + Math.exp(normal(rng) * 0.45) * 0.9);
    heatPump = chance(rng, 0.2);
    heat = heatPump ? uniform(rng, 0.12, 0.22) : chance(rng, 0.3) ? uniform(rng, 0.03, 0.08) : 0;
    cool = chance(rng, 0.35) ? uniform(rng, 0.08, 0.22) : uniform(rng, 0, 0.015);
    if (chance(rng, 0.15)) {
      evKw = uniform(rng, 7, 7.4);
      evNights = uniform(rng, 0.25, 0.6);
    }
    shower = chance(rng, 0.3);
    showerMorning = chance(rng, 0.7);
  }
  const shiftSlots = intBetween(rng, commercial ? -4 : -3, commercial ? 4 : 3);
  const noise = uniform(rng, 0.1, 0.15);
  const cadenceSlots: 1 | 2 = chance(rng, options.halfHourlyMeterFraction) ? 2 : 1;
  const reportsKwh = options.halfHourlyKwh && cadenceSlots === 2;
  const wattDraw = chance(rng, options.wattMeterFraction);
  const reportsWatts = wattDraw && !reportsKwh;
  // Half-hourly kWh payloads spell their unit kWh; kW meters then never use that spelling.
  const spellings = options.halfHourlyKwh ? kilowattSpellings.filter((u) => u !== 'kWh') : kilowattSpellings;
  const spelled = pick(rng, reportsWatts ? wattSpellings : spellings);
  const unit = reportsKwh ? 'kWh' : spelled;
  // Energy without a unit cannot be told from power: kWh meters always send theirs.
  const dropDraw = chance(rng, options.unitDroppingMeterFraction) ? uniform(rng, 0.05, 0.15) : 0;
  const unitDropRate = reportsKwh ? 0 : dropDraw;
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
    profile,
    cadenceSlots,
    morningKw,
    eveningKw,
    evKw,
    evNights,
    shower,
    showerMorning,
    heatPump,
    shifts,
    weekendShare,
    limitKw: maxKw ?? (commercial ? options.commercialLimitKw : options.residentialLimitKw),
    baseKw,
    peakKw,
    shiftSlots,
    noise,
    heatKwPerDegree: heat,
    coolKwPerDegree: cool,
    reportsWatts,
    reportsKwh,
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
  let commercialHoods = 0;
  for (let n = 0; n < sizes.length; n++) {
    const size = sizes[n];
    // Business districts and industrial estates hold ~8 % of the meters whatever the neighborhood sizes
    // turned out to be; shops in residential streets bring the commercial share near 15 %.
    const commercial = commercialMeters + size / 2 <= 0.08 * (firstMeter + size);
    if (commercial) {
      commercialMeters += size;
      commercialHoods += 1;
    }
    const kind: NeighborhoodKind = !commercial
      ? 'residential'
      : commercialHoods % 3 === 0
        ? 'industrial'
        : 'business';
    const region = Math.floor((n * regionCount) / sizes.length);
    perRegion[region] += 1;
    neighborhoods.push({
      index: n,
      name: `${regions[region]}-${String(perRegion[region]).padStart(2, '0')}`,
      region,
      commercial,
      kind,
      firstMeter,
      meterCount: size,
    });
    firstMeter += size;
  }
  const meters: SimMeter[] = [];
  for (const hood of neighborhoods) {
    const regionalFormat = hood.index % 3 === 0;
    // A residential street: one shop per ten meters, spread along it (18 homes + 2 shops in 20).
    const shops = hood.kind === 'residential' ? Math.round(hood.meterCount / 10) : 0;
    const every = shops > 0 ? Math.floor(hood.meterCount / shops) : 0;
    for (let i = 0; i < hood.meterCount; i++) {
      const profile: LoadProfile =
        hood.kind === 'industrial'
          ? 'industrial'
          : hood.kind === 'business' || (every > 0 && i % every === every - 1 && i < shops * every)
            ? 'shop'
            : 'home';
      meters.push(
        buildMeter(options, hood.firstMeter + i, hood, profile, regions[hood.region], regionalFormat),
      );
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
