/**
 * Faults and anomalies, each kind on meters of its own (a meter carries at most one injected kind,
 * plus the population-wide unit variations), so one injection's evidence is never blurred by another.
 * Choosing meters happens before the load is generated (a night-shift outlier changes the load model);
 * everything else edits the generated values.
 */
import {
  type Dataset,
  type ExtraReading,
  FLAG_DUPLICATE_NEXT_FILE,
  FLAG_DUPLICATE_SAME_FILE,
  FLAG_MISSING_UNIT,
  FLAG_OVERRIDE,
  type PendingLabel,
  type SlotOverride,
} from './dataset.js';
import { formatKw, formatW, gatewayName } from './format.js';
import { type AnomalyKind, anomalyKinds, type FaultKind, faultKinds, type LabelKind } from './kinds.js';
import type { LabelSummary } from './labels.js';
import {
  DAY_MS,
  isoSeconds,
  type ResolvedOptions,
  SLOT_MS,
  SLOTS_PER_DAY,
  SLOTS_PER_HOUR,
  WEEK_SLOTS,
} from './options.js';
import type { SimMeter, SimRegistry } from './registry.js';
import { chance, intBetween, pick, type Rng, shuffleInPlace, substream, uniform } from './rng.js';
import { type InvertedSpan, KW_QUANTUM, MISSING, NULL_VALUE } from './series.js';

type InjectedKind = FaultKind | Exclude<AnomalyKind, 'unknown_meter'>;

export interface MeterAssignment {
  readonly meters: ReadonlyMap<InjectedKind, readonly number[]>;
  readonly unknownMeters: number;
  readonly inverted: ReadonlyMap<number, InvertedSpan>;
  readonly skipped: LabelSummary['skipped'];
  readonly shortfall: LabelSummary['shortfall'];
}

/** Simulated time a kind needs, in intervals, and why. */
const minimumSlots: Partial<Record<LabelKind, [number, string]>> = {
  zero: [216, 'needs at least 54 h of simulated time (a 50–60 h zero span with margins)'],
  stuck: [160, 'needs at least 40 h of simulated time (a 26–36 h stuck span with margins)'],
  gap_missing_extended: [128, 'needs at least 32 h of simulated time (a 26–30 h silence)'],
};

function defaultCount(meters: number, rate: number): number {
  if (rate === 0) return 0;
  return Math.max(meters >= 200 ? 3 : 1, Math.round(rate * meters));
}

function eligible(kind: InjectedKind, meter: SimMeter, registry: SimRegistry): boolean {
  switch (kind) {
    case 'neighborhood_outlier':
      // Judged against peers of its own type: the two shops of a residential street have too few, and a
      // round-the-clock plant turned upside down looks the same. A heat-pump home's load follows the
      // outdoor temperature, not its occupants: a night-shift household there stays typical.
      return (
        (meter.profile === 'home' && !meter.heatPump) ||
        (meter.profile === 'shop' && registry.neighborhoods[meter.neighborhood]!.commercial)
      );
    case 'overload':
      return !meter.commercial || meter.info.maxKw !== null;
    case 'erratic_spike':
    case 'spike':
    case 'drop':
      return !meter.commercial;
    default:
      return true;
  }
}

export function assignMeters(options: ResolvedOptions, registry: SimRegistry): MeterAssignment {
  const rng = substream(options.seed, 'assign');
  // Injections go to 15-minute meters (their kinds are defined on 15-minute slots); half-hourly meters
  // belong to the healthy fleet.
  const pool = shuffleInPlace(
    rng,
    registry.meters.filter((m) => !m.info.vacant && m.cadenceSlots === 1).map((m) => m.index),
  );
  const used = new Uint8Array(registry.meters.length);
  const meters = new Map<InjectedKind, number[]>();
  const skipped: LabelSummary['skipped'] = {};
  const shortfall: LabelSummary['shortfall'] = {};
  const kinds: InjectedKind[] = [...faultKinds, ...anomalyKinds.filter((k) => k !== 'unknown_meter')];
  for (const kind of kinds) {
    const isFault = (faultKinds as readonly string[]).includes(kind);
    const requested = isFault
      ? (options.faultCounts[kind as FaultKind] ?? defaultCount(options.meters, options.faultRate))
      : (options.anomalyCounts[kind as AnomalyKind] ?? defaultCount(options.meters, options.anomalyRate));
    const need = minimumSlots[kind];
    if (requested > 0 && need && options.slots < need[0]) {
      skipped[kind] = need[1];
      continue;
    }
    const chosen: number[] = [];
    for (const index of pool) {
      if (chosen.length >= requested) break;
      if (used[index] === 1 || !eligible(kind, registry.meters[index], registry)) continue;
      used[index] = 1;
      chosen.push(index);
    }
    if (chosen.length < requested) shortfall[kind] = { requested, injected: chosen.length };
    if (chosen.length > 0) meters.set(kind, chosen);
  }
  const inverted = new Map<number, InvertedSpan>();
  const spanRng = substream(options.seed, 'inverted');
  for (const index of meters.get('neighborhood_outlier') ?? []) {
    const length = Math.min(options.slots, WEEK_SLOTS);
    const start = options.slots > length ? intBetween(spanRng, 0, options.slots - length) : 0;
    inverted.set(index, { start, end: start + length });
  }
  const unknownMeters =
    options.anomalyCounts.unknown_meter ?? defaultCount(options.meters, options.anomalyRate);
  return { meters, unknownMeters, inverted, skipped, shortfall };
}

function meanAndSd(values: readonly number[]): { mean: number; sd: number } {
  let sum = 0;
  let squares = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
  }
  const mean = sum / values.length;
  return { mean, sd: Math.sqrt(Math.max(0, squares / values.length - mean * mean)) };
}

class Injector {
  private readonly slots: number;
  constructor(
    private readonly data: Dataset,
    private readonly assignment: MeterAssignment,
  ) {
    this.slots = data.options.slots;
  }

  private readonly isoCache: string[] = [];

  private iso(slot: number): string {
    let text = this.isoCache[slot];
    if (text === undefined) {
      text = isoSeconds(this.data.options.startMs + slot * SLOT_MS);
      this.isoCache[slot] = text;
    }
    return text;
  }

  private offset(meter: number): number {
    return meter * this.slots;
  }

  private meter(index: number): SimMeter {
    return this.data.registry.meters[index];
  }

  private override(meter: number, slot: number, change: SlotOverride): void {
    const index = this.offset(meter) + slot;
    this.data.flags[index] |= FLAG_OVERRIDE;
    this.data.overrides.set(index, change);
  }

  private label(
    meter: number,
    kind: LabelKind,
    first: number,
    last: number,
    count: number,
    extra: Partial<PendingLabel> = {},
  ): void {
    this.data.labels.push({
      meterId: this.meter(meter).info.meterId,
      kind,
      role: 'injected',
      start: this.iso(first),
      end: this.iso(last),
      count,
      ...extra,
    });
  }

  /** A label for readings at scattered slots; their lines are recorded once the data is final. */
  private readingsLabel(
    meter: number,
    kind: LabelKind,
    slots: number[],
    details?: Record<string, string | number | boolean>,
  ): void {
    this.label(meter, kind, slots[0], slots[slots.length - 1], slots.length, {
      readings: slots.map((s) => this.iso(s)),
      lineSlots: slots,
      ...(details ? { details } : {}),
    });
  }

  /** Up to `count` slots in [from, to), at least `gap` apart, each passing `accept`. */
  private pickSlots(
    rng: Rng,
    count: number,
    from: number,
    to: number,
    gap: number,
    accept: (slot: number) => boolean = () => true,
  ): number[] {
    const chosen: number[] = [];
    for (let attempt = 0; attempt < 400 && chosen.length < count; attempt++) {
      const slot = intBetween(rng, from, to - 1);
      if (chosen.some((c) => Math.abs(c - slot) < gap) || !accept(slot)) continue;
      chosen.push(slot);
    }
    return chosen.sort((a, b) => a - b);
  }

  run(): void {
    for (const [kind, meters] of this.assignment.meters) {
      meters.forEach((meter, i) => {
        const rng = substream(this.data.options.seed, `inject:${kind}`, i);
        this.inject(kind, meter, rng);
      });
    }
    this.unknownMeters();
    this.dropUnits();
    this.wattLabels();
  }

  private inject(kind: InjectedKind, meter: number, rng: Rng): void {
    const T = this.slots;
    const values = this.data.values;
    const at = this.offset(meter);
    const info = this.meter(meter);
    const limit = Math.round(info.limitKw * KW_QUANTUM);
    switch (kind) {
      case 'zero': {
        const length = intBetween(rng, 200, 240);
        const start = intBetween(rng, 8, T - length - 8);
        values.fill(0, at + start, at + start + length);
        this.label(meter, kind, start, start + length - 1, length, { details: { hours: length / 4 } });
        return;
      }
      case 'stuck': {
        const length = intBetween(rng, 104, 144);
        const start = intBetween(rng, 8, T - length - 8);
        // A frozen register repeats the last value it measured.
        const frozen = values[at + start];
        values.fill(frozen, at + start, at + start + length);
        this.label(meter, kind, start, start + length - 1, length, {
          details: { hours: length / 4, valueKw: frozen / KW_QUANTUM },
        });
        return;
      }
      case 'overload': {
        const length = intBetween(rng, 8, 16);
        const start = intBetween(rng, 8, T - length - 8);
        let low = Number.POSITIVE_INFINITY;
        let high = 0;
        for (let s = start; s < start + length; s++) {
          const v = Math.round(limit * uniform(rng, 1.1, 1.4));
          values[at + s] = v;
          low = Math.min(low, v);
          high = Math.max(high, v);
        }
        this.label(meter, kind, start, start + length - 1, length, {
          details: { limitKw: info.limitKw, minKw: low / KW_QUANTUM, maxKw: high / KW_QUANTUM },
        });
        return;
      }
      case 'low_variance': {
        const length = Math.min(T, WEEK_SLOTS);
        const start = T > length ? intBetween(rng, 0, T - length) : 0;
        let sum = 0;
        for (let s = start; s < start + length; s++) sum += values[at + s];
        const level = sum / length;
        // Varies in the 4th decimal: never exactly stuck, but a coefficient of variation near 0.002.
        const amplitude = Math.max(3, level * 0.003);
        const written: number[] = [];
        for (let s = start; s < start + length; s++) {
          const v = Math.round(level + uniform(rng, -amplitude, amplitude));
          values[at + s] = v;
          written.push(v);
        }
        const { mean, sd } = meanAndSd(written);
        this.label(meter, kind, start, start + length - 1, length, {
          details: {
            meanKw: Math.round(mean) / KW_QUANTUM,
            cv: Number((sd / mean).toFixed(6)),
            windowDays: length / SLOTS_PER_DAY,
          },
        });
        return;
      }
      case 'erratic_spike':
        this.erraticSpikes(meter, rng);
        return;
      case 'comm_failure': {
        const rate = uniform(rng, 0.3, 0.4);
        let missing = 0;
        for (let s = 0; s < T; s++) {
          if (chance(rng, rate)) {
            values[at + s] = MISSING;
            missing += 1;
          }
        }
        this.label(meter, kind, 0, T - 1, missing, {
          details: { expected: T, missing, missingFraction: Number((missing / T).toFixed(4)) },
        });
        return;
      }
      case 'neighborhood_outlier': {
        const span = this.assignment.inverted.get(meter);
        if (!span) return;
        this.label(meter, kind, span.start, span.end - 1, span.end - span.start, {
          details: { profile: 'inverted', days: (span.end - span.start) / SLOTS_PER_DAY },
        });
        return;
      }
      case 'null_reading': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 4), 4, T - 4, 8);
        for (const s of slots) values[at + s] = NULL_VALUE;
        this.readingsLabel(meter, kind, slots);
        return;
      }
      case 'consecutive_nulls': {
        const length = intBetween(rng, 5, 8);
        const start = intBetween(rng, 8, T - length - 8);
        const slots: number[] = [];
        for (let s = start; s < start + length; s++) {
          values[at + s] = NULL_VALUE;
          slots.push(s);
        }
        this.readingsLabel(meter, kind, slots);
        return;
      }
      case 'gap_short_interp':
      case 'gap_missing_short':
      case 'gap_missing_extended': {
        const [low, high] =
          kind === 'gap_short_interp' ? [2, 12] : kind === 'gap_missing_short' ? [24, 72] : [104, 120];
        const length = intBetween(rng, low, high);
        const silent = kind === 'gap_missing_extended' && (chance(rng, 0.5) || T < length + 24);
        const start = silent ? T - length : intBetween(rng, 8, T - length - 8);
        values.fill(MISSING, at + start, at + start + length);
        this.label(meter, kind, start, start + length - 1, length, {
          details: {
            hours: length / 4,
            lastReadingBefore: this.iso(start - 1),
            ...(silent ? { silentUntilEnd: true } : { firstReadingAfter: this.iso(start + length) }),
          },
        });
        return;
      }
      case 'negative_value': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8);
        for (const s of slots) values[at + s] = -Math.round(uniform(rng, 0.05, 2) * KW_QUANTUM);
        this.readingsLabel(meter, kind, slots);
        return;
      }
      case 'out_of_range': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8);
        for (const s of slots) values[at + s] = Math.round(limit * uniform(rng, 1.2, 2.5));
        this.readingsLabel(meter, kind, slots, { limitKw: info.limitKw });
        return;
      }
      case 'future_timestamp': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8);
        for (const s of slots) {
          // Beyond the end of the simulated time too, so the line never lands on a real interval.
          const ahead = this.data.options.days + intBetween(rng, 2, 30);
          this.override(meter, s, {
            timestamp: isoSeconds(this.data.options.startMs + s * SLOT_MS + ahead * DAY_MS),
          });
        }
        this.readingsLabel(meter, kind, slots);
        return;
      }
      case 'clock_reset': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8);
        for (const s of slots) {
          const epoch = chance(rng, 0.5) ? Date.UTC(1970, 0, 1) : Date.UTC(2000, 0, 1);
          const timeOfDay = (this.data.options.startMs + s * SLOT_MS) % DAY_MS;
          this.override(meter, s, { timestamp: isoSeconds(epoch + timeOfDay) });
        }
        this.readingsLabel(meter, kind, slots);
        return;
      }
      case 'duplicate': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 3), 4, T - 4, 8);
        let nextFile = 0;
        for (const s of slots) {
          const hour = Math.floor(s / SLOTS_PER_HOUR);
          if (hour < this.data.options.hours - 1 && chance(rng, 0.3)) {
            this.data.flags[at + s] |= FLAG_DUPLICATE_NEXT_FILE;
            nextFile += 1;
          } else {
            this.data.flags[at + s] |= FLAG_DUPLICATE_SAME_FILE;
          }
        }
        this.readingsLabel(meter, kind, slots, { sameFile: slots.length - nextFile, nextFile });
        return;
      }
      case 'malformed_line': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8);
        const variants: string[] = [];
        for (const s of slots) {
          const variant = pick(rng, malformedVariants);
          variants.push(variant);
          this.override(meter, s, { line: malformedLine(variant, info, this.iso(s), values[at + s], rng) });
        }
        this.readingsLabel(meter, kind, slots, { variants: variants.join(',') });
        return;
      }
      case 'bad_unit': {
        const slots = this.pickSlots(rng, intBetween(rng, 1, 3), 8, T - 8, 8);
        const units: string[] = [];
        for (const s of slots) {
          const unit = pick(rng, ['Volts', 'V', 'Amps', 'kVA']);
          units.push(unit);
          this.override(meter, s, { unit });
        }
        this.readingsLabel(meter, kind, slots, { units: units.join(',') });
        return;
      }
      case 'ambiguous_unit': {
        // Values between 10 and 1000 with no unit: watts or kilowatts cannot be told apart.
        const wattsRange = (v: number) => v > 200 && v < 9_500;
        const kilowattRange = (v: number) => v > 105_000 && v < 9_000_000;
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 8, (s) => {
          const v = values[at + s];
          return wattsRange(v) || kilowattRange(v);
        });
        const trueKw: number[] = [];
        for (const s of slots) {
          const v = values[at + s];
          trueKw.push(v / KW_QUANTUM);
          this.override(meter, s, { value: wattsRange(v) ? formatW(v) : formatKw(v), unit: '' });
        }
        if (slots.length > 0) this.readingsLabel(meter, kind, slots, { trueKw: trueKw.join(',') });
        return;
      }
      case 'spike': {
        // From a low reading, one reading 6.5–8× higher: a > 500 % increase well inside the meter's range.
        const slots = this.pickSlots(rng, intBetween(rng, 1, 2), 8, T - 8, 12, (s) => {
          const previous = values[at + s - 1];
          return previous > 500 && previous < 8_000;
        });
        const ratios: string[] = [];
        for (const s of slots) {
          const ratio = uniform(rng, 6.5, 8);
          values[at + s] = Math.round(values[at + s - 1] * ratio);
          ratios.push(ratio.toFixed(2));
        }
        if (slots.length > 0) this.readingsLabel(meter, kind, slots, { ratios: ratios.join(',') });
        return;
      }
      case 'drop': {
        // A reading under 10 % of the one before, then a recovery in steps of at most 2.5×.
        const slots = this.pickSlots(rng, 1, 8, T - 16, 24, (s) => values[at + s - 1] >= 12_000);
        for (const s of slots) {
          values[at + s] = Math.max(1, Math.round(values[at + s - 1] * uniform(rng, 0.04, 0.07)));
          for (let j = s + 1; j < Math.min(T, s + 10); j++) {
            const ceiling = Math.round(values[at + j - 1] * 2.5);
            if (values[at + j] <= ceiling) break;
            values[at + j] = ceiling;
          }
        }
        if (slots.length > 0) this.readingsLabel(meter, kind, slots);
        return;
      }
    }
  }

  /**
   * Single readings no household load explains, after three days of history and below 90 % of the
   * meter's limit: above mean + 7.5σ of every 7-day window that could hold them (trailing and
   * day-aligned; so the seed's literal rule finds them too), at least 4× the meter's highest reading
   * within an hour of that time of day over the 7 days before, and at least 2× its highest reading of
   * those 7 days (so an EV home's 7 kW nights do not explain it). Slots where that cannot stay under the
   * limit are passed over.
   */
  private erraticSpikes(meter: number, rng: Rng): void {
    const T = this.slots;
    const values = this.data.values;
    const at = this.offset(meter);
    const limit = this.meter(meter).limitKw * KW_QUANTUM;
    const history = Math.min(3 * SLOTS_PER_DAY, Math.floor(T / 2));
    const spacing = Math.min(SLOTS_PER_DAY, Math.floor(T / 4));
    const windowsOf = (s: number): [number, number][] => {
      const windows: [number, number][] = [[Math.max(0, s - WEEK_SLOTS), s]];
      if (T <= WEEK_SLOTS) windows.push([0, T]);
      else {
        for (let d = 0; d * SLOTS_PER_DAY + WEEK_SLOTS <= T; d++) {
          const from = d * SLOTS_PER_DAY;
          if (s >= from && s < from + WEEK_SLOTS) windows.push([from, from + WEEK_SLOTS]);
        }
      }
      return windows;
    };
    const stats = (from: number, to: number) => {
      const window: number[] = [];
      for (let j = from; j < to; j++) window.push(values[at + j]);
      return meanAndSd(window);
    };
    const targetOf = (s: number): number => {
      let target = 0;
      for (const [from, to] of windowsOf(s)) {
        const { mean, sd } = stats(from, to);
        target = Math.max(target, mean + 7.5 * sd);
      }
      // As the rule reads its baseline: the clock hours within one hour of this one on each of the 7
      // days before, and every clock hour of the 7 days before this one.
      const hour = Math.floor(s / SLOTS_PER_HOUR);
      const maxOver = (fromHour: number, toHour: number): number => {
        let top = 0;
        for (let j = Math.max(0, fromHour * SLOTS_PER_HOUR); j < toHour * SLOTS_PER_HOUR; j++)
          top = Math.max(top, values[at + j]);
        return top;
      };
      let slotMax = 0;
      for (let d = 1; d <= 7; d++) slotMax = Math.max(slotMax, maxOver(hour - 24 * d - 1, hour - 24 * d + 2));
      const weekMax = maxOver(hour - 168, hour);
      return Math.max(target, 4 * slotMax, 2 * weekMax, values[at + s] + 2 * KW_QUANTUM);
    };
    const slots = this.pickSlots(
      rng,
      intBetween(rng, 1, 2),
      history,
      T - 4,
      spacing,
      (s) => targetOf(s) <= limit * 0.9,
    );
    const targets = slots.map(targetOf);
    slots.forEach((s, i) => {
      values[at + s] = Math.round(targets[i]);
    });
    let weakest = Number.POSITIVE_INFINITY;
    for (const s of slots) {
      for (const [from, to] of windowsOf(s)) {
        const { mean, sd } = stats(from, to);
        weakest = Math.min(weakest, (values[at + s] - mean) / sd);
      }
    }
    if (slots.length > 0) {
      this.readingsLabel(meter, 'erratic_spike', slots, {
        valuesKw: slots.map((s) => values[at + s] / KW_QUANTUM).join(','),
        minSigma: Number(weakest.toFixed(2)),
      });
    }
  }

  private unknownMeters(): void {
    const { options, registry } = this.data;
    const rng = substream(options.seed, 'inject:unknown_meter');
    const ids = new Set<string>();
    for (let i = 0; i < this.assignment.unknownMeters; i++) {
      let id: string;
      do {
        id = chance(rng, 0.8)
          ? `MTR-${String(options.meters + intBetween(rng, 1000, 99_999)).padStart(6, '0')}`
          : `SM-${intBetween(rng, 10_000, 99_999)}`;
      } while (ids.has(id));
      ids.add(id);
      const gateway = intBetween(rng, 0, registry.gateways - 1);
      const firstHour = intBetween(rng, 0, options.hours - 1);
      const lastHour = Math.min(options.hours - 1, firstHour + intBetween(rng, 0, 5));
      const readings: ExtraReading[] = [];
      for (let hour = firstHour; hour <= lastHour; hour++) {
        const key = hour * registry.gateways + gateway;
        const list = this.data.extras.get(key) ?? [];
        for (let q = 0; q < SLOTS_PER_HOUR; q++) {
          const reading = {
            meterId: id,
            slot: hour * SLOTS_PER_HOUR + q,
            value: Math.round(uniform(rng, 0.3, 3) * KW_QUANTUM),
            unit: 'kW',
          };
          list.push(reading);
          readings.push(reading);
        }
        this.data.extras.set(key, list);
      }
      this.data.labels.push({
        meterId: id,
        kind: 'unknown_meter',
        role: 'injected',
        start: this.iso(readings[0].slot),
        end: this.iso(readings[readings.length - 1].slot),
        count: readings.length,
        readings: readings.map((r) => this.iso(r.slot)),
        extraLines: { gateway, readings },
        details: { gateway: gatewayName(gateway) },
      });
    }
  }

  /** Some meters leave the unit out, only where inference gives the right answer (< 10 → kW, > 1000 → W). */
  private dropUnits(): void {
    const { options, registry, values, flags } = this.data;
    for (const meter of registry.meters) {
      if (meter.unitDropRate === 0) continue;
      const rng = substream(options.seed, 'units', meter.index);
      const at = this.offset(meter.index);
      const slots: number[] = [];
      for (let s = 0; s < this.slots; s++) {
        const v = values[at + s];
        if (flags[at + s] !== 0 || v < 0) continue; // also skips MISSING and NULL_VALUE
        const inferable = meter.reportsWatts ? v > 10_500 : v < 95_000;
        if (inferable && rng.next() < meter.unitDropRate) {
          flags[at + s] |= FLAG_MISSING_UNIT;
          slots.push(s);
        }
      }
      if (slots.length > 0) {
        this.label(meter.index, 'missing_unit', slots[0], slots[slots.length - 1], slots.length, {
          readings: slots.map((s) => this.iso(s)),
          details: { unitWhenPresent: meter.unit },
        });
      }
    }
  }

  private wattLabels(): void {
    const { registry, values, flags } = this.data;
    for (const meter of registry.meters) {
      if (!meter.reportsWatts) continue;
      const at = this.offset(meter.index);
      let first = -1;
      let last = -1;
      let count = 0;
      for (let s = 0; s < this.slots; s++) {
        const v = values[at + s];
        if (v === MISSING || v === NULL_VALUE || flags[at + s] & (FLAG_MISSING_UNIT | FLAG_OVERRIDE))
          continue;
        if (first < 0) first = s;
        last = s;
        count += 1;
      }
      if (count > 0) this.label(meter.index, 'unit_w', first, last, count, { details: { unit: meter.unit } });
    }
  }
}

const malformedVariants = [
  'too_few_columns',
  'too_many_columns',
  'stray_quote',
  'text_after_quote',
  'garbage',
  'bad_number',
  'bad_timestamp',
] as const;

function malformedLine(
  variant: (typeof malformedVariants)[number],
  meter: SimMeter,
  timestamp: string,
  value: number,
  rng: Rng,
): string {
  const id = meter.info.meterId;
  const text = meter.reportsWatts ? formatW(value) : formatKw(value);
  const hex = Math.floor(rng.next() * 0xffffff)
    .toString(16)
    .padStart(6, '0');
  switch (variant) {
    case 'too_few_columns':
      return `${id},${timestamp},${text}`;
    case 'too_many_columns':
      return `${id},${timestamp},${text},${meter.unit},${hex},${hex}`;
    case 'stray_quote':
      return `${id},${timestamp},${text.slice(0, 2)}"${text.slice(2)},${meter.unit}`;
    case 'text_after_quote':
      return `"${id}"x,${timestamp},${text},${meter.unit}`;
    case 'garbage':
      return pick(rng, [
        `~~~${hex}~~~#@!%&*`,
        '<html><body>502 Bad Gateway</body></html>',
        `ERROR: buffer overrun at 0x${hex}`,
        `\u00ff\u00fe${hex}\ufffd\ufffd`,
      ]);
    case 'bad_number':
      return `${id},${timestamp},${pick(rng, ['abc', '1.2.3', 'NaN', 'Infinity', '--5'])},${meter.unit}`;
    case 'bad_timestamp':
      return `${id},${pick(rng, ['2024-13-45T25:61:00Z', 'not-a-date', '', '1710511200'])},${text},${meter.unit}`;
  }
}

export function injectAll(data: Dataset, assignment: MeterAssignment): void {
  new Injector(data, assignment).run();
}
