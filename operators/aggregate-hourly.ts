/**
 * The hourly consumption of each meter (avg, min, max, stddev, count), and the hold that lets a zero or
 * stuck fault take its readings out of the hours before they fire.
 */
import { concat, defer, EMPTY, filter, map, of } from 'rxjs';
import {
  type Aggregator,
  type DenseKey,
  type DenseKeyIndex,
  type FlowEvent,
  fixedWindows,
  keyedProcess,
  LATE,
  type OutputBuffer,
  parDo,
  popTime,
  pushTime,
  type SideInput,
  type StateStore,
  type Transform,
  watermarkEvent,
  windowAggregate,
} from '../core/index.js';
import { type FaultEvent, type HourlyConsumption, METER_IX, type Reading } from '../schemas/reading.js';
import { METER_KEYS } from './meter-key.js';
import { FAULTS, type MeterRegistry } from './outputs.js';

const HOUR = 3_600_000;

/**
 * Running moments of one meter-hour, plain JSON for checkpoints: `[n, shift, sum, sumSq, min, max]`, an
 * array because every open hour of every meter is checkpointed and field names were a third of it. Sums
 * are taken relative to `shift` (the hour's first value), so the variance of near-equal readings does not
 * vanish into rounding error.
 */
type HourMoments = [n: number, shift: number, sum: number, sumSq: number, min: number, max: number];

const N = 0;
const SHIFT = 1;
const SUM = 2;
const SUM_SQ = 3;
const MIN = 4;
const MAX = 5;

/** What an hour is built from: one measured value of a meter. */
type Sample = Pick<Reading, 'meterId' | 'ts' | 'kw' | typeof METER_IX>;

/**
 * One meter's recognised faults under a fault hold: the exclusion windows `[from, to, …]` still needed for
 * readings that have not yet arrived. Rare, so a keyed entry; the bulk of the stage's state (every held
 * reading of every meter, 48 h of them) is in typed lists by meter number (see `heldHours`).
 */
interface HeldHoursState {
  excl: number[];
}

const HOUR_FIELDS = 7;

/**
 * The meter's dense key, read by a function of this stage's own rather than the shared `byMeter`: samples
 * and faults are objects of other shapes than readings, and one reader seeing them all makes its property
 * load megamorphic in every per-meter stage (~30 ns a call, measured).
 */
const sampleMeter: DenseKey<Sample> = { index: METER_KEYS, of: (s) => s[METER_IX] };
const heldMeter: DenseKey<Reading | FaultEvent> = {
  index: METER_KEYS,
  of: (s) => (s as { [METER_IX]?: number | undefined })[METER_IX],
};

/** Faults whose readings before recognition carry no flag: the ones the hold exists for. */
const EXCLUDING_FAULTS: ReadonlySet<string> = new Set(['zero', 'stuck']);

const moments: Aggregator<Sample, HourMoments> = {
  init: () => {
    // A double in the literal makes the array hold unboxed doubles from the start (kW are rarely integers).
    const acc: HourMoments = [0.5, 0, 0, 0, 0, 0];
    acc[N] = 0;
    return acc;
  },
  add: (acc, r) => {
    const kw = r.kw!;
    if (acc[N] === 0) {
      acc[SHIFT] = kw;
      acc[MIN] = kw;
      acc[MAX] = kw;
    } else if (kw < acc[MIN]) acc[MIN] = kw;
    else if (kw > acc[MAX]) acc[MAX] = kw;
    const d = kw - acc[SHIFT];
    acc[N]++;
    acc[SUM] += d;
    acc[SUM_SQ] += d * d;
    return acc;
  },
  merge: (a, b) => {
    if (a[N] === 0) return [...b];
    if (b[N] === 0) return [...a];
    // Re-base b's sums on a's shift: Σ(x−Ka) = Σ(x−Kb) + n·δ, Σ(x−Ka)² = Σ(x−Kb)² + 2δ·Σ(x−Kb) + n·δ².
    const delta = b[SHIFT] - a[SHIFT];
    return [
      a[N] + b[N],
      a[SHIFT],
      a[SUM] + b[SUM] + b[N] * delta,
      a[SUM_SQ] + b[SUM_SQ] + 2 * delta * b[SUM] + b[N] * delta * delta,
      Math.min(a[MIN], b[MIN]),
      Math.max(a[MAX], b[MAX]),
    ];
  },
};

/**
 * The hourly consumption of each meter (the first seed's "AVG, MIN, MAX, STDDEV" per hour): fixed 1 h
 * event-time windows keyed by meter, fired when the watermark passes the hour's end. Only measured readings
 * with a value count. Interpolated rows stay out: they are estimates, and they are only known once the
 * reading after a gap arrives, often after the gap's hours have closed, so counting them would make an
 * hour's figures depend on how the input happened to be batched. NULL readings (`MISSING_READING`), missing rows and
 * readings of a meter under an active fault (`fault_excluded`) stay out, as the rules exclude them from
 * analytics, and so do readings over the physical limit (`over_limit`) should any reach this branch, and
 * readings scored below `minQualityScore` (the quarantine tier, < 70: "excluded from production analytics",
 * architecture doc), so the daily peaks built on these hours leave them out too. The standard deviation is the population one. The neighborhood comes from the registry when
 * the hour fires (empty for a meter the registry no longer knows).
 *
 * Readings behind an hour that was already fired re-fire it as a late pane (the whole hour again, to
 * replace the earlier row) while within `allowedLatenessMs`, and go to the core's `late` output after.
 */
export function aggregateHourly(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  opts: { allowedLatenessMs: number; minQualityScore?: number; faultHoldMs?: number },
  name = 'aggregateHourly',
): Transform<Reading | FaultEvent, HourlyConsumption> {
  const minScore = opts.minQualityScore ?? Number.NEGATIVE_INFINITY;
  const holdMs = opts.faultHoldMs ?? 0;
  const analyticsFilter = (r: Reading, out: { emit: (s: Sample) => void }): void => {
    if (countable(r, minScore)) out.emit(r);
  };
  const hours = windowAggregate<Sample, HourMoments, HourlyConsumption>({
    name,
    store,
    key: (r) => r.meterId,
    dense: sampleMeter,
    eventTime: (r) => r.ts,
    windows: fixedWindows(HOUR),
    allowedLatenessMs: opts.allowedLatenessMs,
    aggregator: moments,
    result: ({ key, start, acc }) => {
      const mean = acc[SUM] / acc[N];
      const variance = acc[SUM_SQ] / acc[N] - mean * mean;
      return {
        meterId: key,
        neighborhood: registry.value.get(key)?.neighborhood ?? '',
        hour: start,
        avgKw: acc[SHIFT] + mean,
        minKw: acc[MIN],
        maxKw: acc[MAX],
        stddevKw: variance > 0 ? Math.sqrt(variance) : 0,
        count: acc[N],
      };
    },
  });
  if (holdMs === 0)
    return (source) =>
      hours(
        parDo<Reading | FaultEvent, Sample>((item, out) => {
          if (!('faultType' in item)) analyticsFilter(item, out);
        })(source),
      );
  if (opts.allowedLatenessMs !== 0)
    throw new RangeError(
      `aggregateHourly: a fault hold (faultHoldMs ${holdMs}) fires each hour once: allowedLatenessMs must be 0, got ${opts.allowedLatenessMs}`,
    );
  return heldHours(store, registry, { holdMs, minScore }, name);
}

/**
 * Feeds a branch its trunk's FAULTS side output as data, beside the readings, and drops the other tagged
 * events (the trunk's own route collects them, so they reach the sinks once). A fault travels in event-time
 * order with the readings: it leaves its detector in the batch of the reading that recognised it.
 */
export function faultsBesideReadings<T>(): Transform<T, T | FaultEvent> {
  return (source) =>
    source.pipe(
      filter((e) => e.kind !== 'tagged' || e.tag === FAULTS.name),
      map(
        (e): FlowEvent<T | FaultEvent> =>
          e.kind === 'tagged' ? { kind: 'data', items: e.items as readonly FaultEvent[] } : e,
      ),
    );
}

/** Whether a reading counts in its hour (see `aggregateHourly`). */
function countable(r: Reading, minScore: number): boolean {
  if (r.kw === null || r.status !== 'measured' || r.qualityScore < minScore) return false;
  const flags = r.flags;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f === 'fault_excluded' || f === 'MISSING_READING' || f === 'over_limit') return false;
  }
  return true;
}

/**
 * The hours under a fault hold, in one keyed stage: each meter's countable readings are held for `holdMs`
 * of event time, so that a zero or stuck fault recognised up to `holdMs` after its start removes the
 * meter's readings from its start to its recognition before any hour containing them is aggregated; a
 * released reading is counted into its open hour at once, and an hour fires once the watermark passes its
 * end plus the hold. Outputs carry the watermark minus the hold.
 *
 * The same rows, batches and order as a hold stage feeding `windowAggregate` with fixed 1 h windows and no
 * lateness (the form before): the hours due at a watermark fire in (end, meter id) order; a released
 * reading is never late (its hour ends after the previous watermark minus the hold); a reading that
 * arrives already behind the held watermark is counted at once, or goes to `late` when its hour has
 * fired. In one stage there is no object per released reading and no second lookup of the meter's state.
 *
 * No timers: each watermark makes one release pass (`releaseDue`) over the meters with something due (a
 * held reading at or behind the held watermark, an exclusion that has ended), then fires the hours that
 * ended (`fireEnded`). Which meters are due, and which hours are open, follows from the held lists, the
 * exclusions and the open hours alone (`DueMeters`, `OpenHours`), so a checkpoint keeps only those: a
 * restored run (or one of an older layout, whose `release` and `end:<start>` timers said the same and are
 * dropped) derives them again. This fires what the timers fired, and in an order that gives the same
 * rows: a meter's release timer was at its first held reading plus the hold (or an exclusion's end),
 * always before the end of any hour that reading is in, so every reading of an hour was counted before
 * the hour's timer fired, as every one is before `fireEnded` here; releases change only their own meter's
 * lists, so their order among meters is not seen.
 *
 * Which readings leave depends only on event time (readings reach this stage in event-time order per
 * meter, and a fault before the watermark passes its recognising reading), not on how the input was
 * batched. A fault is kept until the watermark passes its end, since the readings it names may arrive in
 * a later batch than the fault itself. At the end of a finite input no later reading can arrive, and so no
 * later fault: the last watermark, moved on by the hold, releases every held reading and the hours close
 * as they would without a hold.
 */
function heldHours(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  opts: { readonly holdMs: number; readonly minScore: number },
  name: string,
): Transform<Reading | FaultEvent, HourlyConsumption> {
  const { holdMs, minScore } = opts;
  // By meter number: the held readings as `[ts, kw, …]` in event-time order, and the open hours (released
  // readings already counted) as `[start, n, shift, sum, sumSq, min, max, …]`, `HOUR_FIELDS` numbers each,
  // in the order they opened. Unboxed doubles, ~16 bytes a held reading in memory and in a checkpoint.
  const heldLists = store.vectors(`${name}/held`, METER_KEYS);
  const hourLists = store.vectors(`${name}/hours`, METER_KEYS);
  const meters = store.denseKeys(METER_KEYS);
  const states = store.denseKeyed<HeldHoursState>(name, METER_KEYS);
  const due = new DueMeters();
  const open = new OpenHours();
  const byId = new KeyOrder(meters);
  /** The key index's generation `due` and `open` were derived for (see `derive`). */
  let derivedFor = -1;

  /**
   * Derives which meters are due when, and which hours are open, from the state after a restore (or at the
   * first event). A checkpoint of layout 10 or before also holds the `release` and `end:<start>` timers that
   * said the same (see `heldHours`): they are dropped, or they would stay in every checkpoint after.
   */
  const derive = (): void => {
    derivedFor = meters.generation;
    due.clear();
    open.clear();
    for (let n = 0; n < heldLists.used; n++) if (heldLists.length(n) > 0) schedule(n, undefined);
    for (const key of states.keys()) {
      const n = meters.intern(key);
      schedule(n, states.getAt(n, key));
    }
    for (let n = 0; n < hourLists.used; n++) {
      const h = hourLists.array(n);
      for (let j = 0; j < hourLists.length(n); j += HOUR_FIELDS) open.add(h[j]!);
    }
    const legacyTimers = store.timers(name);
    if (legacyTimers.size > 0) legacyTimers.restore([]);
  };

  /**
   * Emits every open hour that ended by `wm` (its end plus the hold), hour by hour and within an hour in
   * meter-id order (the order their timers fired in when each meter had its own: equal times fire in
   * (name, key) order), and closes them. One pass over the meters for all of them: a watermark far ahead
   * (the end of a finite input) ends a day's hours at once, and an hour at a time was a pass and a shift of
   * every meter's list per hour.
   */
  const fireEnded = (out: OutputBuffer<HourlyConsumption>, wm: number): void => {
    const starts = open.takeEnded(wm - HOUR - holdMs);
    if (starts.length === 0) return;
    const last = starts[starts.length - 1]!;
    const rows: HourlyConsumption[][] = starts.map(() => []);
    const order = byId.numbers();
    for (let i = 0; i < order.length; i++) {
      const m = order[i]!;
      const length = hourLists.length(m);
      if (length === 0) continue;
      let h = hourLists.array(m);
      let ended = false;
      for (let j = 0; j < length && !ended; j += HOUR_FIELDS) ended = h[j]! <= last;
      if (!ended) continue;
      h = hourLists.open(m);
      const key = meters.keyOf(m)!;
      let kept = 0;
      for (let j = 0; j < length; j += HOUR_FIELDS) {
        const start = h[j]!;
        if (start <= last) {
          rows[starts.length === 1 ? 0 : starts.indexOf(start)]!.push(hourRow(registry, key, h, j));
          continue;
        }
        if (kept !== j) h.copyWithin(kept, j, j + HOUR_FIELDS);
        kept += HOUR_FIELDS;
      }
      hourLists.truncate(m, kept);
    }
    for (const hour of rows) for (let i = 0; i < hour.length; i++) out.emit(hour[i]!);
  };

  /** Counts `kw` at `ts` into meter `n`'s open hour, opening it when it is the first. */
  const count = (n: number, ts: number, kw: number): void => {
    const start = Math.floor(ts / HOUR) * HOUR;
    let h = hourLists.array(n);
    let at = -1;
    for (let j = hourLists.length(n) - HOUR_FIELDS; j >= 0; j -= HOUR_FIELDS)
      if (h[j] === start) {
        at = j;
        break;
      }
    if (at < 0) {
      at = hourLists.extend(n, HOUR_FIELDS);
      h = hourLists.array(n);
      h[at] = start;
      h[at + 1] = 1;
      h[at + 2] = kw;
      h[at + 3] = 0;
      h[at + 4] = 0;
      h[at + 5] = kw;
      h[at + 6] = kw;
      open.add(start);
      return;
    }
    h = hourLists.open(n);
    // `moments.add`, on the flat fields.
    if (kw < h[at + 5]!) h[at + 5] = kw;
    else if (kw > h[at + 6]!) h[at + 6] = kw;
    const d = kw - h[at + 2]!;
    h[at + 1]!++;
    h[at + 3]! += d;
    h[at + 4]! += d * d;
  };

  /** When meter `n` has something to release next: its first held reading's or an exclusion's end. */
  const schedule = (n: number, s: HeldHoursState | undefined): void => {
    let at = Number.POSITIVE_INFINITY;
    if (heldLists.length(n) > 0) at = heldLists.array(n)[heldLists.start(n)]! + holdMs;
    if (s !== undefined) for (let j = 1; j < s.excl.length; j += 2) at = Math.min(at, s.excl[j]! + 1);
    due.set(n, at);
  };

  /**
   * Meter `n`'s part of the release pass at watermark `wm`: counts its held readings due, drops the
   * exclusions that ended before `wm` (a reading they name can no longer arrive unflagged), and schedules
   * what is left.
   */
  const releaseDue = (n: number, wm: number): void => {
    const from = heldLists.start(n);
    const end = from + heldLists.length(n);
    let i = from;
    // `count` never changes the held list, so it stays valid through the loop.
    const held = heldLists.array(n);
    for (; i < end && held[i]! + holdMs <= wm; i += 2) count(n, held[i]!, held[i + 1]!);
    // The released readings leave by the list's start moving on, not by the rest moving down.
    if (i > from) heldLists.advance(n, i - from);
    const key = meters.keyOf(n)!;
    let s = states.getAt(n, key);
    if (s !== undefined) {
      let k = 0;
      const excl = s.excl;
      for (let j = 0; j < excl.length; j += 2)
        if (excl[j + 1]! >= wm) {
          excl[k++] = excl[j]!;
          excl[k++] = excl[j + 1]!;
        }
      excl.length = k;
      if (k === 0) {
        states.deleteAt(n, key);
        s = undefined;
      }
    }
    schedule(n, s);
  };

  const process = keyedProcess<Reading | FaultEvent, HourlyConsumption, HeldHoursState>(store, {
    name,
    key: (item) => item.meterId,
    dense: heldMeter,
    onElement: (ctx, item) => {
      const n = ctx.keyNumber;
      if ('faultType' in item) {
        if (!EXCLUDING_FAULTS.has(item.faultType)) return;
        let s = ctx.state;
        if (s === undefined) {
          s = { excl: [] };
          ctx.state = s;
        }
        const from = item.windowStart;
        const to = item.detectedAt;
        s.excl.push(from, to);
        const length = heldLists.length(n);
        if (length > 0) {
          const held = heldLists.open(n);
          const first = heldLists.start(n);
          let k = first;
          for (let i = first; i < first + length; i += 2)
            if (held[i]! < from || held[i]! > to) {
              held[k++] = held[i]!;
              held[k++] = held[i + 1]!;
            }
          heldLists.truncate(n, k - first);
        }
        schedule(n, s);
        return;
      }
      if (!countable(item, minScore)) return;
      const s = ctx.state;
      const ts = item.ts;
      if (s !== undefined)
        for (let i = 0; i < s.excl.length; i += 2) if (ts >= s.excl[i]! && ts <= s.excl[i + 1]!) return;
      const wm = ctx.watermark;
      if (ts + holdMs <= wm) {
        // Behind the held watermark already: counted at once, or late when its hour has fired.
        const end = Math.floor(ts / HOUR) * HOUR + HOUR;
        if (end + holdMs <= wm) ctx.tag(LATE, item);
        else count(n, ts, item.kw!);
        return;
      }
      const first = heldLists.length(n) === 0;
      heldLists.push2(n, ts, item.kw!);
      if (first) schedule(n, s);
    },
    onWatermark: (wm, out) => {
      due.takeDue(wm, releaseDue);
      fireEnded(out, wm);
    },
  });

  // How far a drain at the end of input has moved the held watermark (in the checkpoint: a run resumed
  // mid-drain goes on from there).
  const drained = store.value<number>(`${name}/drained`, Number.NEGATIVE_INFINITY);
  return (source) => {
    let last = Number.NEGATIVE_INFINITY;
    const input = concat(
      source.pipe(
        map((e): FlowEvent<Reading | FaultEvent> => {
          if (derivedFor !== meters.generation) derive();
          if (e.kind === 'watermark') last = e.time;
          else if (e.kind === 'tick' && e.drain !== undefined && e.finalWatermark !== undefined) {
            // The input has ended: the hold's release moves on an hour per draining tick, so the held
            // hours of every meter fire an hour at a time, each written before the next (see `TickEvent`).
            last = Math.max(last, e.finalWatermark);
            const end = last + holdMs;
            const from = Math.max(drained.get(), last);
            if (!Number.isFinite(end) || from >= end) return e;
            const next = Math.min(end, (Math.floor(from / HOUR) + 1) * HOUR);
            drained.set(next);
            e.drain.more = true;
            return watermarkEvent(next);
          }
          return e;
        }),
      ),
      defer(() => {
        if (last === Number.NEGATIVE_INFINITY) return EMPTY;
        if (derivedFor !== meters.generation) derive();
        return of(watermarkEvent(last + holdMs));
      }),
    );
    return process(input).pipe(map((e) => (e.kind === 'watermark' ? watermarkEvent(e.time - holdMs) : e)));
  };
}

/**
 * The meters with something to release, by when (a held reading's time plus the hold, an exclusion's end
 * plus one): per instant the meters due then, and a min-heap of those instants, as the timer queue keeps
 * them but without a key string or an object per entry. A meter's instant changes by setting it again;
 * the entry at its old instant is then skipped.
 */
class DueMeters {
  /** By meter number, when it is due (+∞: nothing to release). */
  private at = new Float64Array(64).fill(Number.POSITIVE_INFINITY);
  private readonly byTime = new Map<number, number[]>();
  /** The instants in `byTime`, a min-heap. */
  private times: number[] = [];
  /** Emptied lists of meters, for the next instants: one is used per reading interval. */
  private spare: number[][] = [];

  /** Makes meter `n` due at `time` (+∞: not due). */
  set(n: number, time: number): void {
    if (n >= this.at.length) {
      let size = this.at.length;
      while (size <= n) size *= 2;
      const grown = new Float64Array(size).fill(Number.POSITIVE_INFINITY);
      grown.set(this.at);
      this.at = grown;
    }
    if (this.at[n] === time) return;
    this.at[n] = time;
    if (time === Number.POSITIVE_INFINITY) return;
    let meters = this.byTime.get(time);
    if (meters === undefined) {
      meters = this.spare.pop() ?? [];
      this.byTime.set(time, meters);
      pushTime(this.times, time);
    }
    meters.push(n);
  }

  /**
   * Calls `release(n, watermark)` for every meter due at or before `watermark`, once each, having made it
   * not due: `release` may set it again, later than `watermark`.
   */
  takeDue(watermark: number, release: (n: number, watermark: number) => void): void {
    const at = this.at;
    while (this.times.length > 0 && this.times[0]! <= watermark) {
      const time = popTime(this.times);
      const meters = this.byTime.get(time)!;
      this.byTime.delete(time);
      for (let i = 0; i < meters.length; i++) {
        const n = meters[i]!;
        if (this.at[n] !== time) continue;
        at[n] = Number.POSITIVE_INFINITY;
        release(n, watermark);
      }
      meters.length = 0;
      this.spare.push(meters);
    }
  }

  clear(): void {
    this.at.fill(Number.POSITIVE_INFINITY);
    this.byTime.clear();
    this.times = [];
  }
}

const NONE: number[] = [];

/** The starts of the hours some meter has open, ascending: a few at a time (those the hold has reached). */
class OpenHours {
  private starts: number[] = [];

  add(start: number): void {
    const s = this.starts;
    let i = s.length;
    while (i > 0 && s[i - 1]! > start) i--;
    if (i > 0 && s[i - 1] === start) return;
    s.splice(i, 0, start);
  }

  /** Takes the starts at or before `start`, ascending. */
  takeEnded(start: number): number[] {
    const s = this.starts;
    let k = 0;
    while (k < s.length && s[k]! <= start) k++;
    return k === 0 ? NONE : s.splice(0, k);
  }

  clear(): void {
    this.starts = [];
  }
}

/** The timer queue's order of equal keys: UTF-16 code units, as `<` compares strings. */
function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The numbers of a dense key index in key order, kept across hours: meters are numbered in first-seen
 * order (gateway by gateway), and sorting the meters of every hour afresh would cost n·log n string
 * comparisons an hour. Keys only ever join an index, so a grown index sorts its new keys and merges them
 * in; an index restored since (its `generation`) is sorted again.
 */
class KeyOrder {
  private sorted: number[] = [];
  private generation = -1;

  constructor(private readonly index: DenseKeyIndex) {}

  numbers(): readonly number[] {
    const index = this.index;
    const size = index.size;
    const valid = this.generation === index.generation;
    if (valid && this.sorted.length === size) return this.sorted;
    const from = valid ? this.sorted.length : 0;
    const added: number[] = [];
    for (let n = from; n < size; n++) added.push(n);
    const of = (n: number): string => index.keyOf(n)!;
    added.sort((a, b) => byKey(of(a), of(b)));
    const old = valid ? this.sorted : [];
    const merged: number[] = new Array(old.length + added.length);
    let i = 0;
    let j = 0;
    let k = 0;
    // Stable: of equal keys (none in an index) the older number first.
    while (i < old.length && j < added.length)
      merged[k++] = byKey(of(old[i]!), of(added[j]!)) <= 0 ? old[i++]! : added[j++]!;
    while (i < old.length) merged[k++] = old[i++]!;
    while (j < added.length) merged[k++] = added[j++]!;
    this.sorted = merged;
    this.generation = index.generation;
    return merged;
  }
}

/** The row of the hour at `at` in a flat hours list (`windowAggregate`'s result for `moments`). */
function hourRow(
  registry: SideInput<MeterRegistry>,
  meterId: string,
  h: Float64Array,
  at: number,
): HourlyConsumption {
  const n = h[at + 1]!;
  const mean = h[at + 3]! / n;
  const variance = h[at + 4]! / n - mean * mean;
  return {
    meterId,
    neighborhood: registry.value.get(meterId)?.neighborhood ?? '',
    hour: h[at]!,
    avgKw: h[at + 2]! + mean,
    minKw: h[at + 5]!,
    maxKw: h[at + 6]!,
    stddevKw: variance > 0 ? Math.sqrt(variance) : 0,
    count: n,
  };
}
