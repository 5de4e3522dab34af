/**
 * Side effects: after injection, every rule is run over the final data in each reasonable reading of
 * it (previous reading or previous valid one; gaps counted with or without NULLs and rejected lines;
 * trailing, day-aligned and growing windows) and with a margin on its threshold. What trips and is not
 * the injection itself becomes a `side_effect` label naming the injected kinds on that meter, so a
 * detector is neither blamed nor credited for it. Clean meters are not scanned: whatever a rule reports
 * on one is a false fault, which is what the detection test counts. Vacant meters (all zeros) carry side
 * effects without an injected cause, marked `details.vacant`.
 */
import { type Dataset, FLAG_OVERRIDE, type PendingLabel } from './dataset.js';
import type { LabelKind } from './kinds.js';
import { isoSeconds, SLOT_MS, SLOTS_PER_DAY, SLOTS_PER_HOUR, WEEK_SLOTS } from './options.js';
import type { SimMeter } from './registry.js';
import { KW_QUANTUM, MISSING, NULL_VALUE } from './series.js';

/** How an interval's line reaches the rules. */
const ABSENT = 0; // no line
const REJECTED = 1; // a line the pipeline rejects or quarantines before the rules (bad unit, negative, …)
const NULL_LINE = 2; // a line with an empty value
const OVER_LIMIT = 3; // quarantined as out of range, but evidence for the overload rule
const ADMITTED = 4;

/** Thresholds with margins: each seed value moved towards "more likely to trip". */
const margins = {
  stuckSlots: 88, // 22 h of identical values (rule: 24 h)
  stuckVarianceKw2: 0.01, // B4.1's alternative stuck rule: variance < 0.01 kW² over 24 h
  zeroSlots: 88, // 22 h of zeros (rules: 48 h, or 24 h in B3.2)
  overloadReadings: 5, // rule: 6
  lowVarianceCv: 0.02, // rule: 0.01
  commFailureFraction: 0.15, // rule: 0.2
  erraticSigma: 4, // B4.2 (the first seed's 6σ is stricter)
  correlation: 0.4, // rule: 0.3
};

interface Span {
  first: number;
  last: number;
}

interface Injected {
  kinds: Map<string, Set<LabelKind>>;
  /** Slots of deliberately injected spike, drop and erratic-spike readings. */
  planted: Map<string, Map<number, LabelKind>>;
  gaps: Map<string, { kind: LabelKind; first: number; last: number }[]>;
}

function gapKind(hours: number): LabelKind {
  return hours < 4 ? 'gap_short_interp' : hours < 24 ? 'gap_missing_short' : 'gap_missing_extended';
}

class MeterScanner {
  private readonly T: number;
  private readonly status: Uint8Array;
  private readonly kw: Float64Array;
  private readonly count: Float64Array;
  private readonly sum: Float64Array;
  private readonly squares: Float64Array;
  private readonly missing: Float64Array;
  private readonly rate: Int8Array;
  /** Windows for the 7-day rules: growing from the start (from one day) then trailing 7 days, hourly. */
  private readonly weekWindows: Span[] = [];
  /** Day-aligned 7-day windows, or the whole span when shorter. */
  private readonly fixedWeeks: Span[] = [];
  private readonly isoCache: string[];
  readonly hourly: Float64Array;
  readonly labels: PendingLabel[] = [];
  // Results of `stats`, kept in fields so the hot loops allocate nothing.
  private n = 0;
  private mean = 0;
  private sd = 0;
  private meter!: SimMeter;
  private causes: LabelKind[] = [];

  constructor(
    private readonly data: Dataset,
    private readonly injected: Injected,
  ) {
    const T = data.options.slots;
    this.T = T;
    this.status = new Uint8Array(T);
    this.kw = new Float64Array(T);
    this.count = new Float64Array(T + 1);
    this.sum = new Float64Array(T + 1);
    this.squares = new Float64Array(T + 1);
    this.missing = new Float64Array(T + 1);
    this.rate = new Int8Array(T);
    this.isoCache = new Array<string>(T);
    for (let end = SLOTS_PER_DAY; end <= T; end += SLOTS_PER_HOUR) {
      this.weekWindows.push({ first: Math.max(0, end - WEEK_SLOTS), last: end - 1 });
    }
    if (T <= WEEK_SLOTS) this.fixedWeeks.push({ first: 0, last: T - 1 });
    else
      for (let f = 0; f + WEEK_SLOTS <= T; f += SLOTS_PER_DAY)
        this.fixedWeeks.push({ first: f, last: f + WEEK_SLOTS - 1 });
    this.hourly = new Float64Array(data.registry.meters.length * data.options.hours).fill(Number.NaN);
  }

  iso(slot: number): string {
    let text = this.isoCache[slot];
    if (text === undefined) {
      text = isoSeconds(this.data.options.startMs + slot * SLOT_MS);
      this.isoCache[slot] = text;
    }
    return text;
  }

  private add(
    kind: LabelKind,
    first: number,
    last: number,
    count: number,
    extra: Partial<PendingLabel> = {},
  ): void {
    const details = this.meter.info.vacant ? { ...extra.details, vacant: true } : extra.details;
    this.labels.push({
      meterId: this.meter.info.meterId,
      kind,
      role: 'side_effect',
      start: this.iso(first),
      end: this.iso(last),
      count,
      causes: this.causes,
      ...extra,
      ...(details ? { details } : {}),
    });
  }

  private addReadings(kind: LabelKind, slots: number[]): void {
    this.add(kind, slots[0], slots[slots.length - 1], slots.length, {
      readings: slots.map((s) => this.iso(s)),
    });
  }

  /** Mean and population standard deviation of admitted kW over [first, last], into n / mean / sd. */
  private stats(first: number, last: number): void {
    const n = this.count[last + 1] - this.count[first];
    this.n = n;
    if (n === 0) {
      this.mean = 0;
      this.sd = 0;
      return;
    }
    const mean = (this.sum[last + 1] - this.sum[first]) / n;
    this.mean = mean;
    this.sd = Math.sqrt(Math.max(0, (this.squares[last + 1] - this.squares[first]) / n - mean * mean));
  }

  scan(meter: SimMeter): void {
    this.meter = meter;
    const id = meter.info.meterId;
    const kinds = this.injected.kinds.get(id);
    this.causes = kinds ? [...kinds].sort() : [];
    this.classify(meter);
    if (!kinds && !meter.info.vacant) {
      this.hourlyMeans(meter.index);
      return;
    }
    this.rateOfChange(id);
    this.gaps(id);
    if (!kinds?.has('comm_failure')) this.commFailure();
    if (!kinds?.has('low_variance')) this.lowVariance();
    if (!kinds?.has('stuck')) this.stuck(meter);
    if (!kinds?.has('zero') && !meter.info.vacant) this.zero(meter);
    if (!kinds?.has('overload')) this.overload();
    this.erratic(id);
    this.hourlyMeans(meter.index);
  }

  private classify(meter: SimMeter): void {
    const { values, flags } = this.data;
    const { status, kw, count, sum, squares, missing, T } = this;
    const at = meter.index * T;
    const limit = Math.round(meter.limitKw * KW_QUANTUM);
    for (let s = 0; s < T; s++) {
      const v = values[at + s];
      let state: number;
      if (v === MISSING) state = ABSENT;
      else if (flags[at + s] & FLAG_OVERRIDE) state = REJECTED;
      else if (v === NULL_VALUE) state = NULL_LINE;
      else if (v < 0) state = REJECTED;
      else if (v > limit) state = OVER_LIMIT;
      else state = ADMITTED;
      status[s] = state;
      const admitted = state >= OVER_LIMIT;
      const value = admitted ? v / KW_QUANTUM : 0;
      kw[s] = value;
      count[s + 1] = count[s] + (admitted ? 1 : 0);
      sum[s + 1] = sum[s] + value;
      squares[s + 1] = squares[s] + value * value;
      missing[s + 1] = missing[s] + (admitted ? 0 : 1);
    }
  }

  /** Against the previous admitted reading, with and without over-limit readings in the sequence. */
  private rateOfChange(id: string): void {
    const { values } = this.data;
    const { status, rate, T } = this;
    const at = this.meter.index * T;
    rate.fill(0);
    for (let pass = 0; pass < 2; pass++) {
      const includeOver = pass === 0;
      let previous = -1;
      for (let s = 0; s < T; s++) {
        const state = status[s];
        if (state !== ADMITTED && !(includeOver && state === OVER_LIMIT)) continue;
        const v = values[at + s];
        if (previous >= 0) {
          if (previous === 0 ? v > 0 : v > 6 * previous) rate[s] = 1;
          else if (previous > 0 && 10 * v < previous) rate[s] = -1;
        }
        previous = v;
      }
    }
    const planted = this.injected.planted.get(id);
    const spikes: number[] = [];
    const drops: number[] = [];
    for (let s = 0; s < T; s++) {
      if (rate[s] === 1 && planted?.get(s) !== 'spike') spikes.push(s);
      else if (rate[s] === -1 && planted?.get(s) !== 'drop') drops.push(s);
    }
    if (spikes.length > 0) this.addReadings('spike', spikes);
    if (drops.length > 0) this.addReadings('drop', drops);
  }

  /** Runs of intervals without an admitted reading, under three readings of "missing". */
  private gaps(id: string): void {
    const { status, T } = this;
    const known = this.injected.gaps.get(id);
    let found: Map<LabelKind, Span[]> | null = null;
    for (let reading = 0; reading < 3; reading++) {
      let runStart = -1;
      for (let s = 0; s <= T; s++) {
        const state = s < T ? status[s] : ADMITTED;
        const hole =
          reading === 0
            ? state === ABSENT
            : reading === 1
              ? state < NULL_LINE || state === OVER_LIMIT
              : state !== ADMITTED;
        if (hole) {
          if (runStart < 0) runStart = s;
          continue;
        }
        if (runStart < 0) continue;
        const first = runStart;
        const last = s - 1;
        runStart = -1;
        // The gap measured as missing time, or as the time between the readings around it.
        for (const hours of [(last - first + 1) / 4, (last - first + 2) / 4]) {
          const kind = gapKind(hours);
          if (known?.some((g) => g.kind === kind && g.first === first && g.last === last)) continue;
          found ??= new Map();
          const runs = found.get(kind) ?? [];
          if (!runs.some((r) => r.first === first && r.last === last)) runs.push({ first, last });
          found.set(kind, runs);
        }
      }
    }
    if (!found) return;
    for (const [kind, runs] of found) {
      runs.sort((a, b) => a.first - b.first);
      const intervals = runs.reduce((n, r) => n + r.last - r.first + 1, 0);
      this.add(kind, runs[0].first, runs[runs.length - 1].last, intervals, {
        details: { runs: runs.length },
      });
    }
  }

  private commFailure(): void {
    let worst = 0;
    let worstWindow: Span | null = null;
    for (const w of this.weekWindows) {
      const fraction = (this.missing[w.last + 1] - this.missing[w.first]) / (w.last - w.first + 1);
      if (fraction > worst) {
        worst = fraction;
        worstWindow = w;
      }
    }
    if (worstWindow && worst > margins.commFailureFraction) {
      const length = worstWindow.last - worstWindow.first + 1;
      this.add('comm_failure', worstWindow.first, worstWindow.last, Math.round(worst * length), {
        details: { maxMissingFraction: Number(worst.toFixed(4)) },
      });
    }
  }

  private lowVariance(): void {
    let lowest = Number.POSITIVE_INFINITY;
    let lowestWindow: Span | null = null;
    for (const w of [...this.weekWindows, ...this.fixedWeeks]) {
      this.stats(w.first, w.last);
      if (this.n < 48) continue;
      const cv = this.mean > 0 ? this.sd / this.mean : 0;
      if (cv < lowest) {
        lowest = cv;
        lowestWindow = w;
      }
    }
    if (lowestWindow && lowest < margins.lowVarianceCv) {
      this.stats(lowestWindow.first, lowestWindow.last);
      this.add('low_variance', lowestWindow.first, lowestWindow.last, this.n, {
        details: { minCv: Number(lowest.toFixed(6)) },
      });
    }
  }

  /** Identical admitted values for about a day, or a 24 h variance under B4.1's 0.01 kW². */
  private stuck(meter: SimMeter): void {
    const { values } = this.data;
    const { status, T } = this;
    const at = meter.index * T;
    let runFirst = -1;
    let runLast = -1;
    let runValue = Number.NaN;
    for (let s = 0; s <= T; s++) {
      if (s < T && status[s] < OVER_LIMIT) continue;
      const v = s < T ? values[at + s] : Number.NaN;
      if (v !== runValue) {
        if (runFirst >= 0 && runLast - runFirst + 1 >= margins.stuckSlots) {
          this.add('stuck', runFirst, runLast, runLast - runFirst + 1);
          return;
        }
        runFirst = s;
        runValue = v;
      }
      runLast = s;
    }
    for (let first = 0; first + SLOTS_PER_DAY <= T; first += SLOTS_PER_HOUR) {
      this.stats(first, first + SLOTS_PER_DAY - 1);
      if (this.n >= 48 && this.sd * this.sd < margins.stuckVarianceKw2) {
        this.add('stuck', first, first + SLOTS_PER_DAY - 1, this.n, {
          details: { rule: 'variance < 0.01 kW² over 24 h (B4.1)' },
        });
        return;
      }
    }
  }

  private zero(meter: SimMeter): void {
    const { values } = this.data;
    const { status, T } = this;
    const at = meter.index * T;
    let runFirst = -1;
    let runLast = -1;
    for (let s = 0; s <= T; s++) {
      if (s < T && status[s] < OVER_LIMIT) continue;
      const isZero = s < T && values[at + s] === 0;
      if (isZero) {
        if (runFirst < 0) runFirst = s;
        runLast = s;
        continue;
      }
      if (runFirst >= 0 && runLast - runFirst + 1 >= margins.zeroSlots) {
        this.add('zero', runFirst, runLast, runLast - runFirst + 1);
        return;
      }
      runFirst = -1;
    }
  }

  private overload(): void {
    const { status, T } = this;
    let run = 0;
    for (let s = 0; s < T; s++) {
      if (status[s] === OVER_LIMIT) run += 1;
      else if (status[s] === ADMITTED) run = 0;
      if (run >= margins.overloadReadings) {
        this.add('overload', s - run + 1, s, run);
        return;
      }
    }
  }

  /** Above mean + 4σ of the trailing 7 days (after one day of history) or of a 7-day window. */
  private erratic(id: string): void {
    const { status, kw, T } = this;
    const flagged = this.rate; // reused as a scratch mark
    flagged.fill(0);
    for (let s = SLOTS_PER_DAY; s < T; s++) {
      if (status[s] < OVER_LIMIT) continue;
      this.stats(Math.max(0, s - WEEK_SLOTS), s - 1);
      if (this.n >= SLOTS_PER_DAY && this.sd > 0 && kw[s] > this.mean + margins.erraticSigma * this.sd)
        flagged[s] = 1;
    }
    for (const w of this.fixedWeeks) {
      this.stats(w.first, w.last);
      if (this.n < SLOTS_PER_DAY || this.sd === 0) continue;
      const ceiling = this.mean + margins.erraticSigma * this.sd;
      for (let s = w.first; s <= w.last; s++) if (status[s] >= OVER_LIMIT && kw[s] > ceiling) flagged[s] = 1;
    }
    const planted = this.injected.planted.get(id);
    const slots: number[] = [];
    for (let s = 0; s < T; s++) if (flagged[s] === 1 && planted?.get(s) !== 'erratic_spike') slots.push(s);
    if (slots.length > 0) this.addReadings('erratic_spike', slots);
  }

  private hourlyMeans(meterIndex: number): void {
    const hours = this.data.options.hours;
    const row = meterIndex * hours;
    for (let h = 0; h < hours; h++) {
      const first = h * SLOTS_PER_HOUR;
      const n = this.count[first + SLOTS_PER_HOUR] - this.count[first];
      if (n > 0) this.hourly[row + h] = (this.sum[first + SLOTS_PER_HOUR] - this.sum[first]) / n;
    }
  }
}

function collectInjected(data: Dataset): Injected {
  const { options } = data;
  const slotOf = (text: string) => Math.round((Date.parse(text) - options.startMs) / SLOT_MS);
  const injected: Injected = { kinds: new Map(), planted: new Map(), gaps: new Map() };
  for (const label of data.labels) {
    if (label.role !== 'injected' || label.kind === 'unit_w' || label.kind === 'missing_unit') continue;
    const kinds = injected.kinds.get(label.meterId) ?? new Set<LabelKind>();
    kinds.add(label.kind);
    injected.kinds.set(label.meterId, kinds);
    if (
      (label.kind === 'spike' || label.kind === 'drop' || label.kind === 'erratic_spike') &&
      label.lineSlots
    ) {
      const slots = injected.planted.get(label.meterId) ?? new Map<number, LabelKind>();
      for (const s of label.lineSlots) slots.set(s, label.kind);
      injected.planted.set(label.meterId, slots);
    }
    if (label.kind.startsWith('gap_')) {
      const list = injected.gaps.get(label.meterId) ?? [];
      list.push({ kind: label.kind, first: slotOf(label.start), last: slotOf(label.end) });
      injected.gaps.set(label.meterId, list);
    }
  }
  return injected;
}

export function addSideEffects(data: Dataset): void {
  const injected = collectInjected(data);
  const scanner = new MeterScanner(data, injected);
  for (const meter of data.registry.meters) scanner.scan(meter);
  const labels = scanner.labels;
  neighborhoodCorrelation(data, scanner.hourly, injected.kinds, labels);
  for (const label of labels) data.labels.push(label);
}

function pearson(
  a: Float64Array,
  aAt: number,
  b: Float64Array,
  bAt: number,
  length: number,
): { r: number; n: number } {
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < length; i++) {
    const x = a[aAt + i];
    const y = b[bAt + i];
    if (Number.isNaN(x) || Number.isNaN(y)) continue;
    n += 1;
    sa += x;
    sb += y;
  }
  if (n === 0) return { r: Number.NaN, n };
  const ma = sa / n;
  const mb = sb / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < length; i++) {
    const x = a[aAt + i];
    const y = b[bAt + i];
    if (Number.isNaN(x) || Number.isNaN(y)) continue;
    sab += (x - ma) * (y - mb);
    saa += (x - ma) * (x - ma);
    sbb += (y - mb) * (y - mb);
  }
  // A flat series has no correlation to speak of: NaN, which a rule may treat as "uncorrelated".
  return { r: saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : Number.NaN, n };
}

/** Mean of each clock hour over `length` hours from `at` (windows start on a clock hour multiple of 6). */
function profileOf(series: Float64Array, at: number, length: number, into: Float64Array): Float64Array {
  const sums = new Float64Array(24);
  const counts = new Float64Array(24);
  for (let i = 0; i < length; i++) {
    const v = series[at + i];
    if (Number.isNaN(v)) continue;
    sums[i % 24] += v;
    counts[i % 24] += 1;
  }
  for (let h = 0; h < 24; h++) into[h] = counts[h] > 0 ? sums[h] / counts[h] : Number.NaN;
  return into;
}

/** Hourly profile of every meter against its neighborhood's mean, over 24 h and 7-day windows. */
function neighborhoodCorrelation(
  data: Dataset,
  hourly: Float64Array,
  injectedKinds: ReadonlyMap<string, ReadonlySet<LabelKind>>,
  sideEffects: PendingLabel[],
): void {
  const { options, registry } = data;
  const hours = options.hours;
  const hourIso = (hour: number) => isoSeconds(options.startMs + hour * 3_600_000);
  const lastSlotIso = (hourAfter: number) =>
    isoSeconds(options.startMs + (hourAfter * SLOTS_PER_HOUR - 1) * SLOT_MS);
  const windows: { first: number; length: number; minPoints: number }[] = [];
  for (let f = 0; f + 24 <= hours; f += 6) windows.push({ first: f, length: 24, minPoints: 12 });
  if (hours >= 168)
    for (let f = 0; f + 168 <= hours; f += 24) windows.push({ first: f, length: 168, minPoints: 72 });
  else if (hours > 24) windows.push({ first: 0, length: hours, minPoints: Math.floor(hours / 2) });

  const outliers = new Map<string, PendingLabel>();
  for (const label of data.labels) {
    if (label.kind === 'neighborhood_outlier' && label.role === 'injected')
      outliers.set(label.meterId, label);
  }

  const mean = new Float64Array(hours);
  const meterProfile = new Float64Array(24);
  const hoodProfile = new Float64Array(24);
  // Each meter against the mean of its own type in its neighborhood (homes with homes, shops with shops),
  // as the pipeline judges them.
  const groups: { first: number; end: number; commercial: boolean }[] = [];
  for (const hood of registry.neighborhoods) {
    for (const commercial of [false, true]) {
      groups.push({ first: hood.firstMeter, end: hood.firstMeter + hood.meterCount, commercial });
    }
  }
  for (const group of groups) {
    const end = group.end;
    const members: number[] = [];
    for (let m = group.first; m < end; m++)
      if (registry.meters[m].commercial === group.commercial) members.push(m);
    if (members.length === 0) continue;
    for (let h = 0; h < hours; h++) {
      let total = 0;
      let n = 0;
      for (const m of members) {
        const v = hourly[m * hours + h];
        if (!Number.isNaN(v)) {
          total += v;
          n += 1;
        }
      }
      mean[h] = n > 0 ? total / n : Number.NaN;
    }
    for (const m of members) {
      const meter = registry.meters[m];
      const id = meter.info.meterId;
      const outlier = outliers.get(id);
      if (!outlier && !injectedKinds.has(id) && !meter.info.vacant) continue; // clean: not labelled
      const spanFirst = outlier ? Math.floor((Date.parse(outlier.start) - options.startMs) / 3_600_000) : 0;
      const spanLast = outlier ? Math.floor((Date.parse(outlier.end) - options.startMs) / 3_600_000) : -1;
      let lowest = Number.POSITIVE_INFINITY;
      let lowestWindow = windows[0];
      let highestInside = Number.NEGATIVE_INFINITY;
      for (const w of windows) {
        const series = pearson(hourly, m * hours + w.first, mean, w.first, w.length);
        if (series.n < w.minPoints) continue;
        let r = series.r;
        if (w.length > 24) {
          // "Hourly profile" may also mean the mean of each clock hour over the window: take the lower.
          profileOf(hourly, m * hours + w.first, w.length, meterProfile);
          profileOf(mean, w.first, w.length, hoodProfile);
          const profile = pearson(meterProfile, 0, hoodProfile, 0, 24).r;
          r = Number.isNaN(r) || Number.isNaN(profile) ? Number.NaN : Math.min(r, profile);
        }
        const value = Number.isNaN(r) ? Number.NEGATIVE_INFINITY : r;
        if (value < lowest) {
          lowest = value;
          lowestWindow = w;
        }
        if (outlier && w.first >= spanFirst && w.first + w.length - 1 <= spanLast) {
          highestInside = Math.max(highestInside, Number.isNaN(r) ? Number.POSITIVE_INFINITY : r);
        }
      }
      if (outlier) {
        outlier.details = { ...outlier.details, maxCorrelation: Number(highestInside.toFixed(4)) };
        continue;
      }
      if (windows.length > 0 && lowest < margins.correlation) {
        sideEffects.push({
          meterId: id,
          kind: 'neighborhood_outlier',
          role: 'side_effect',
          start: hourIso(lowestWindow.first),
          end: lastSlotIso(lowestWindow.first + lowestWindow.length),
          count: lowestWindow.length,
          causes: [...(injectedKinds.get(id) ?? [])].sort(),
          details: {
            minCorrelation: Number.isFinite(lowest) ? Number(lowest.toFixed(4)) : 'flat',
            ...(meter.info.vacant ? { vacant: true } : {}),
          },
        });
      }
    }
  }
}
