/**
 * The per-meter chain's members that reorder and create readings, ported to column batches for the
 * columnar prototype of issue 15: event-time ordering (`operators/order-by-event-time.ts`) and gap filling
 * (`operators/fill-gaps.ts`). Each keeps its row operator's state under the same names (`DenseRows`,
 * timers, the pending value), reads the same thresholds, and tags the same quarantine records and alerts.
 * Unlike the in-place rules of `column-rules.ts`, a stage takes a batch and returns a new one, and it may
 * emit on a watermark. Checked against the row operators by `check.ts`.
 */
import type { OutputTag, StateStore, TimerQueue } from '../../core/index.js';
import type { TagSink } from '../../operators/fault-internals.js';
import { GAP_ROW, hours, inferCadence, SILENCE_TIMER } from '../../operators/fill-gaps.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import { ALERTS, QUARANTINE } from '../../operators/outputs.js';
import { canonicalTimestamp, reconstructedRaw, recordId } from '../../operators/record-id.js';
import type { RuleProfile } from '../../operators/rule-profile.js';
import type { Alert, QuarantineRecord, Reading, ReadingFlag } from '../../schemas/reading.js';
import { ColumnBuilder } from './column-builder.js';
import { PIECE } from './column-rules.js';
import { flagBit, INTERPOLATED, MISSING, type ReadingColumns } from './reading-columns.js';

/** A member that takes a batch and returns another (readings held, reordered, created). */
export interface ColumnStage {
  readonly name: string;
  /** The flags it may add, in the order it adds them. */
  readonly adds: readonly ReadingFlag[];
  /**
   * Takes readings `from … to - 1` of `b` with the member's input watermark at `watermark`; returns what
   * it emits (valid until its next call: the chain copies it out before), or undefined when that is the
   * piece itself, unchanged.
   */
  readonly take: (
    b: ReadingColumns,
    from: number,
    to: number,
    watermark: number,
    out: TagSink,
  ) => ReadingColumns | undefined;
  /** Fires its timers due at `watermark`, then what its watermark releases; returns what it emits. */
  readonly onWatermark: (watermark: number, out: TagSink) => ReadingColumns | undefined;
}

/** Width of a pending bucket, as the row operator's. */
const BUCKET_MS = 60_000;

/** A minute of pending readings, in arrival order. */
interface ColumnBucket {
  s: number;
  readonly b: ColumnBuilder;
}

const NOTHING_PENDING: readonly never[] = [];

/**
 * `orderByEventTimeSpec` over columns. Its per-meter state is the row operator's (`<name>/last`, the
 * event time of the meter's last released reading); its pending readings are minute buckets of columns
 * (with the rows they stand for, which the quarantine records are made from), whose arrays are reused
 * from bucket to bucket. Not ported: a checkpoint of pending readings (a snapshot with readings pending
 * throws; the row operator packs them into flat arrays) and a restore of one.
 */
export function orderByEventTimeColumns(store: StateStore, name = 'orderByEventTime'): ColumnStage {
  const lastReleased = store.rows(`${name}/last`, METER_KEYS, 1);
  /** The live bucket lists this stage made: anything else in the value was restored. */
  const live = new WeakSet<ColumnBucket[]>();
  const pendingValue = store.value<ColumnBucket[]>(`${name}/pending`, [], (buckets) => {
    // A list restored and not yet taken over is in the checkpoint's form already.
    if (!live.has(buckets)) return buckets;
    if (buckets.some((x) => x.b.length > 0))
      throw new Error(`${name} (columns): pending readings are not checkpointed by the prototype`);
    return NOTHING_PENDING;
  });
  const pending = (): ColumnBucket[] => {
    let buckets = pendingValue.get();
    if (!live.has(buckets)) {
      if (buckets.length > 0)
        throw new Error(`${name} (columns): restoring pending readings is not ported to the prototype`);
      buckets = [];
      live.add(buckets);
      pendingValue.set(buckets);
    }
    return buckets;
  };
  /** Emptied buckets' builders, for the next minutes. */
  const spare: ColumnBuilder[] = [];
  /** What a piece passes straight on (at or behind the watermark), reused piece after piece. */
  const passed = new ColumnBuilder(256);

  const quarantine = (out: TagSink, r: Reading, reasons: string[]): void => {
    out.tag<QuarantineRecord>(QUARANTINE, {
      meterId: r.meterId,
      ts: r.ts,
      raw: reconstructedRaw(r),
      reasons,
      source: r.source,
      quarantinedAt: r.processedAt,
    });
  };

  const bucketFor = (buckets: ColumnBucket[], ts: number): ColumnBuilder => {
    const start = Math.floor(ts / BUCKET_MS) * BUCKET_MS;
    let i = buckets.length - 1;
    while (i >= 0 && buckets[i]!.s > start) i--;
    if (i >= 0 && buckets[i]!.s === start) return buckets[i]!.b;
    const b = spare.pop() ?? new ColumnBuilder(1024);
    buckets.splice(i + 1, 0, { s: start, b });
    return b;
  };

  /**
   * Reading `i` of `b`, next in time order: released into `emitted` when it is after its meter's last
   * released one, quarantined otherwise.
   */
  const releaseOne = (b: ColumnBuilder, i: number, emitted: ColumnBuilder, out: TagSink): void => {
    const m = b.meter[i]!;
    const t = b.ts[i]!;
    const o = lastReleased.open(m);
    if (o < 0) {
      const c = lastReleased.create(m);
      lastReleased.data[c] = t;
    } else if (t <= lastReleased.data[o]!) {
      quarantine(out, b.row[i]!, ['late', 'duplicate_timestamp']);
      return;
    } else lastReleased.data[o] = t;
    emitted.copy(b, i);
  };

  /**
   * Readings of the buckets before `watermark`, in time order (equal times in arrival order). Buckets
   * are minutes in time order, so when each one's due readings are in order (readings stamped on the
   * interval usually are) they are released straight from the buckets; otherwise gathered and sorted.
   */
  const release = (watermark: number, out: TagSink): ReadingColumns | undefined => {
    const buckets = pending();
    if (buckets.length === 0 || buckets[0]!.s >= watermark) return undefined;
    let whole = 0;
    let count = 0;
    let sorted = true;
    while (whole < buckets.length && buckets[whole]!.s + BUCKET_MS <= watermark) {
      const b = buckets[whole++]!.b;
      count += b.length;
      if (sorted) sorted = inOrder(b.ts, b.length, Number.POSITIVE_INFINITY);
    }
    const straddling =
      whole < buckets.length && buckets[whole]!.s < watermark ? buckets[whole]!.b : undefined;
    if (straddling !== undefined) {
      count += straddling.length;
      if (sorted) sorted = inOrder(straddling.ts, straddling.length, watermark);
    }
    let emitted: ColumnBuilder;
    if (sorted) {
      emitted = new ColumnBuilder(Math.max(16, count));
      for (let k = 0; k < whole; k++) {
        const b = buckets[k]!.b;
        for (let i = 0; i < b.length; i++) releaseOne(b, i, emitted, out);
      }
      if (straddling !== undefined) {
        const ts = straddling.ts;
        for (let i = 0; i < straddling.length; i++)
          if (ts[i]! < watermark) releaseOne(straddling, i, emitted, out);
      }
    } else {
      const due = new ColumnBuilder(Math.max(16, count));
      for (let k = 0; k < whole; k++) {
        const b = buckets[k]!.b;
        due.copyRange(b, 0, b.length);
      }
      if (straddling !== undefined) {
        const ts = straddling.ts;
        for (let i = 0; i < straddling.length; i++) if (ts[i]! < watermark) due.copy(straddling, i);
      }
      const order = stableOrder(due.ts, due.length);
      emitted = new ColumnBuilder(due.length);
      for (let k = 0; k < order.length; k++) releaseOne(due, order[k]!, emitted, out);
    }
    for (let k = 0; k < whole; k++) {
      const b = buckets[k]!.b;
      b.clear();
      spare.push(b);
    }
    if (whole > 0) buckets.splice(0, whole);
    if (straddling !== undefined) {
      const ts = straddling.ts;
      straddling.retain((i) => ts[i]! >= watermark);
    }
    return emitted.take();
  };

  return {
    name,
    adds: [],
    take: (b, from, to, watermark, out) => {
      const { meter, ts } = b;
      passed.clear();
      let buckets: ColumnBucket[] | undefined;
      for (let i = from; i < to; i++) {
        const m = meter[i]!;
        const t = ts[i]!;
        const known = lastReleased.has(m);
        if (known) {
          const last = lastReleased.data[m]!;
          if (t <= last) {
            quarantine(out, b.row[i]!, t === last ? ['late', 'duplicate_timestamp'] : ['late']);
            continue;
          }
        }
        if (t <= watermark) {
          const o = known ? lastReleased.open(m) : lastReleased.create(m);
          lastReleased.data[o] = t;
          passed.reserve(1);
          passed.copy(b, i);
          continue;
        }
        buckets ??= pending();
        const bucket = bucketFor(buckets, t);
        bucket.reserve(1);
        bucket.copy(b, i);
      }
      return passed.view();
    },
    // Released once the watermark reaches their time: `ts <= watermark` is `ts < watermark + 1` in whole ms.
    onWatermark: (watermark, out) => release(watermark + 1, out),
  };
}

/** Whether the times of `ts[0 … n - 1]` before `before` are in order. */
function inOrder(ts: Float64Array, n: number, before: number): boolean {
  let last = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const t = ts[i]!;
    if (t >= before) continue;
    if (t < last) return false;
    last = t;
  }
  return true;
}

/** Indices `0 … n - 1` ordered by `ts`, equal times in index order. */
function stableOrder(ts: Float64Array, n: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return order.sort((a, b) => ts[a]! - ts[b]! || a - b);
}

/** `fillGaps`' per-meter row: the operator's own layout, so both keep the same state. */
const { LT, LK, HK, IV, NU, SA, EA, WIDTH } = GAP_ROW;

const OVER_LIMIT = flagBit('over_limit');
const MISSING_SHORT = flagBit('missing_short');
const MISSING_EXTENDED = flagBit('missing_extended');
const INTERPOLATED_FLAG = flagBit('interpolated');

/**
 * `fillGapsSpec` over columns: the same per-meter row (`<name>/meter`), the same silence timers in the
 * same queue (`<name>`), the same alerts. Created readings are entries whose `row` is the reading that
 * revealed the gap (the fields a created row copies) with their own time, kW, status, flag and record id.
 */
export function fillGapsColumns(
  store: StateStore,
  thresholds: RuleProfile['gaps'],
  name = 'fillGaps',
): ColumnStage {
  const { defaultIntervalMs, interpolateBelowMs, extendedFromMs, maxConsecutiveNulls } = thresholds;
  const { minIntervalMs, maxRowsPerGap } = thresholds;
  const meters = store.rows(`${name}/meter`, METER_KEYS, WIDTH);
  const index = store.denseKeys(METER_KEYS);
  const timers: TimerQueue = store.timers(name);
  /** A piece's output once it has a gap, reused piece after piece. */
  const scratch = new ColumnBuilder(PIECE + 256);

  const deadlineOf = (lt: number, iv: number): number => lt + iv + extendedFromMs;
  const extendedAlert = (meterId: string, lt: number, iv: number): Alert => ({
    severity: 'critical',
    kind: 'missing_extended',
    meterId,
    ts: deadlineOf(lt, iv),
    message: `meter ${meterId} sent no reading for ${hours(extendedFromMs)} h after ${canonicalTimestamp(lt)}`,
  });
  const alerts = ALERTS as OutputTag<Alert>;

  const armSilence = (m: number, d: Float64Array, o: number): void => {
    const deadline = deadlineOf(d[o + LT]!, d[o + IV]!);
    const sa = d[o + SA]!;
    if (sa === 0 || deadline < sa) {
      timers.setAt(m, index.keyOf(m)!, SILENCE_TIMER, deadline);
      d[o + SA] = deadline;
    }
  };

  const emitMissing = (
    into: ColumnBuilder,
    m: number,
    cur: Reading,
    ts: number,
    kw: number | null,
    status: number,
    flag: number,
  ): void => {
    into.reserve(1);
    into.created(m, ts, kw, status, flag, cur, recordId(cur.meterId, canonicalTimestamp(ts), ''));
  };

  const fill = (
    into: ColumnBuilder,
    out: TagSink,
    m: number,
    d: Float64Array,
    o: number,
    cur: Reading,
    curTs: number,
    curKw: number | null,
    missing: number,
  ): void => {
    const interval = d[o + IV]!;
    const gapMs = missing * interval;
    const prevTs = d[o + LT]!;
    const prevKw = d[o + HK] === 1 ? d[o + LK]! : null;
    const alerted = d[o + EA] === 1;
    let status = MISSING;
    let flag = 0;
    if (gapMs >= extendedFromMs) {
      flag = MISSING_EXTENDED;
      if (!alerted) out.tag(alerts, extendedAlert(cur.meterId, prevTs, interval));
    } else if (gapMs >= interpolateBelowMs) {
      flag = MISSING_SHORT;
      out.tag(alerts, {
        severity: 'warning',
        kind: 'connectivity',
        meterId: cur.meterId,
        ts: prevTs + interval,
        message: `meter ${cur.meterId} sent no reading for ${hours(gapMs)} h from ${canonicalTimestamp(prevTs + interval)} (missing_short)`,
      });
    } else if (prevKw !== null && curKw !== null) {
      status = INTERPOLATED;
      flag = INTERPOLATED_FLAG;
    }
    const delta = curTs - prevTs;
    if (missing > maxRowsPerGap) {
      if (!alerted) out.tag(alerts, extendedAlert(cur.meterId, prevTs, interval));
      emitMissing(into, m, cur, prevTs + interval, null, MISSING, MISSING_EXTENDED);
      return;
    }
    for (let k = 1; k <= missing; k++) {
      const ts = prevTs + k * interval;
      let kw: number | null = null;
      if (status === INTERPOLATED) {
        kw = Math.round((prevKw! + ((curKw! - prevKw!) * (ts - prevTs)) / delta) * 10_000) / 10_000;
      }
      emitMissing(into, m, cur, ts, kw, status, flag);
    }
  };

  return {
    name,
    adds: ['missing_short', 'missing_extended', 'interpolated'],
    take: (b, from, to, _watermark, out) => {
      const { meter, ts, kw: kws, kwNull, flags, row } = b;
      // Filled from the first gap: until then the output is the input, as the row operator's echo of it.
      let into: ColumnBuilder | undefined;
      for (let i = from; i < to; i++) {
        const m = meter[i]!;
        const t = ts[i]!;
        const isNull = kwNull[i] === 1;
        // The value a gap may be interpolated from: none for a NULL reading or one over the limit.
        const kw = isNull || (flags[i]! & OVER_LIMIT) !== 0 ? null : kws[i]!;
        const o = meters.open(m);
        if (o < 0) {
          const c = meters.create(m);
          const fresh = meters.data;
          fresh[c + LT] = t;
          if (kw !== null) {
            fresh[c + LK] = kw;
            fresh[c + HK] = 1;
          }
          fresh[c + IV] = defaultIntervalMs;
          fresh[c + NU] = isNull ? 1 : 0;
          armSilence(m, fresh, c);
          if (into !== undefined) {
            into.reserve(1);
            into.copy(b, i);
          }
          continue;
        }
        const d = meters.data;
        const delta = t - d[o + LT]!;
        if (delta <= 0) {
          if (into !== undefined) {
            into.reserve(1);
            into.copy(b, i);
          }
          continue;
        }
        inferCadence(d, o, delta, minIntervalMs);
        const missing = Math.round(delta / d[o + IV]!) - 1;
        if (missing > 0) {
          if (into === undefined) {
            into = scratch;
            into.clear();
            into.copyRange(b, from, i);
          }
          fill(into, out, m, d, o, row[i]!, t, kw, missing);
        }
        if (isNull) {
          const nu = d[o + NU]! + 1;
          d[o + NU] = nu;
          if (nu === maxConsecutiveNulls + 1) {
            const meterId = row[i]!.meterId;
            out.tag(alerts, {
              severity: 'warning',
              kind: 'connectivity',
              meterId,
              ts: t,
              message: `meter ${meterId} sent ${nu} NULL readings in a row up to ${canonicalTimestamp(t)}`,
            });
          }
        } else d[o + NU] = 0;
        d[o + LT] = t;
        if (kw !== null) {
          d[o + LK] = kw;
          d[o + HK] = 1;
        } else {
          d[o + LK] = 0;
          d[o + HK] = 0;
        }
        d[o + EA] = 0;
        armSilence(m, d, o);
        if (into !== undefined) {
          into.reserve(1);
          into.copy(b, i);
        }
      }
      return into?.view();
    },
    onWatermark: (watermark, out) => {
      for (let t = timers.popDue(watermark); t !== undefined; t = timers.popDue(watermark)) {
        const m = index.intern(t.key);
        const o = meters.open(m);
        if (o < 0) continue;
        const d = meters.data;
        const deadline = deadlineOf(d[o + LT]!, d[o + IV]!);
        if (deadline > t.time) {
          timers.setAt(m, t.key, SILENCE_TIMER, deadline);
          d[o + SA] = deadline;
          continue;
        }
        d[o + SA] = 0;
        if (d[o + EA] === 0) {
          d[o + EA] = 1;
          out.tag(alerts, extendedAlert(t.key, d[o + LT]!, d[o + IV]!));
        }
      }
      return undefined;
    },
  };
}
