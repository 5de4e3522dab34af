/**
 * Per-meter rules ported to run over column batches (`reading-columns.ts`), for the columnar prototype of
 * issue 15: each keeps the state its row rule keeps (the same `DenseRows` and keyed open faults under the
 * same names in the `StateStore`), reads the same thresholds, sets the flags the row rule adds, and tags
 * the same faults and alerts. A bench's port, checked against the row rules by `columnar-rules.ts` and its
 * test: the rules themselves stay in `operators/`.
 */
import type { DenseKeyIndex, DenseRows, OutputTag, SideInput, StateStore } from '../../core/index.js';
import {
  CADENCE_IV,
  CADENCE_LT,
  clearFault,
  hours,
  KW_SCALE,
  type OpenFault,
  observeCadenceAt,
  raiseFault,
  type TagSink,
} from '../../operators/fault-internals.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { RuleProfile } from '../../operators/rule-profile.js';
import type { ReadingFlag } from '../../schemas/reading.js';
import { flagBit, MEASURED, type ReadingColumns } from './reading-columns.js';

/** A rule over readings `from … to - 1` of a batch, in order; tags what it raises into `out`. */
export interface ColumnRule {
  readonly name: string;
  /** The flags it may add, in the order it adds them: where a chain's exit appends them to the rows. */
  readonly adds: readonly ReadingFlag[];
  readonly run: (b: ReadingColumns, from: number, to: number, out: TagSink) => void;
}

/** Tagged records by tag name, in the order they were tagged. */
export class TagLists implements TagSink {
  readonly lists = new Map<string, unknown[]>();

  tag<T>(tag: OutputTag<T>, item: T): void {
    let list = this.lists.get(tag.name);
    if (list === undefined) {
      list = [];
      this.lists.set(tag.name, list);
    }
    list.push(item);
  }

  /** Appends another list's records after this one's, tag by tag. */
  append(other: TagLists): void {
    for (const [name, items] of other.lists) for (const item of items) this.tag({ name }, item);
    other.lists.clear();
  }
}

const SPIKE = flagBit('spike');
const DROP = flagBit('drop');
const OVER_LIMIT = flagBit('over_limit');
const FAULT_EXCLUDED = flagBit('fault_excluded');

/** `detectRateOfChangeSpec` (operators/detect-rate-of-change.ts) over columns. */
export function rateOfChangeColumns(
  store: StateStore,
  thresholds: RuleProfile['rateOfChange'],
  name = 'detectRateOfChange',
): ColumnRule {
  const spikeFactor = 100 + thresholds.spikeIncreasePct;
  const dropFactor = 100 - thresholds.dropDecreasePct;
  const minBase = Math.round(thresholds.minBaseKw * KW_SCALE);
  const bases = store.rows(`${name}/base`, METER_KEYS, 1);
  return {
    name,
    adds: ['spike', 'drop'],
    run: (b, from, to) => {
      const { meter, kw, kwNull, status, flags } = b;
      for (let i = from; i < to; i++) {
        if (kwNull[i] !== 0 || status[i] !== MEASURED || (flags[i]! & OVER_LIMIT) !== 0) continue;
        const cur = Math.round(kw[i]! * KW_SCALE);
        const m = meter[i]!;
        const o = bases.open(m);
        if (o < 0) {
          const fresh = bases.create(m);
          bases.data[fresh] = cur;
          continue;
        }
        const d = bases.data;
        const base = d[o]!;
        if (base >= minBase) {
          if (cur * 100 > base * spikeFactor) flags[i]! |= SPIKE;
          else if (cur * 100 < base * dropFactor) flags[i]! |= DROP;
        }
        d[o] = cur;
      }
    },
  };
}

/** A detector's open faults by meter number: the keyed state its row rule keeps under its name. */
class OpenFaults {
  private readonly states;

  constructor(
    store: StateStore,
    name: string,
    private readonly index: DenseKeyIndex,
  ) {
    this.states = store.denseKeyed<OpenFault>(name, METER_KEYS);
  }

  get(m: number): OpenFault | undefined {
    return this.states.getAt(m, this.index.keyOf(m)!);
  }

  set(m: number, f: OpenFault): void {
    this.states.setAt(m, this.index.keyOf(m)!, f);
  }

  delete(m: number): void {
    this.states.deleteAt(m, this.index.keyOf(m)!);
  }
}

/** The row of meter `m` in `rows`, created with its cadence started at `ts` when it has none. */
function cadenceRow(rows: DenseRows, m: number, ts: number): number {
  let o = rows.open(m);
  if (o < 0) {
    o = rows.create(m);
    rows.data[o + CADENCE_LT] = ts;
  }
  return o;
}

const IV = CADENCE_IV;

/** `detectZeroMeterSpec` (operators/detect-zero-meter.ts) over columns; its row layout. */
export function zeroMeterColumns(
  store: StateStore,
  registry: SideInput<MeterRegistry>,
  thresholds: Pick<RuleProfile['faults'], 'zeroMinDurationMs'>,
  name = 'detectZeroMeter',
): ColumnRule {
  const RS = 2;
  const RE = 3;
  const N = 4;
  const minDuration = thresholds.zeroMinDurationMs;
  const runs = store.rows(`${name}/meter`, METER_KEYS, 5);
  const index = store.denseKeys(METER_KEYS);
  const faults = new OpenFaults(store, name, index);
  return {
    name,
    adds: ['fault_excluded'],
    run: (b, from, to, out) => {
      const { meter, ts, kw, kwNull, status, flags } = b;
      for (let i = from; i < to; i++) {
        const m = meter[i]!;
        const t = ts[i]!;
        const o = cadenceRow(runs, m, t);
        const d = runs.data;
        observeCadenceAt(d, o, t);
        let f = faults.get(m);
        if (kwNull[i] === 0 && status[i] === MEASURED) {
          const v = kw[i]!;
          if (v === 0 && registry.value.get(index.keyOf(m)!)?.vacant !== true) {
            if (d[o + N] === 0) d[o + RS] = t;
            const n = d[o + N]! + 1;
            d[o + N] = n;
            if (t > d[o + RE]! || n === 1) d[o + RE] = t;
            if (f !== undefined) f.e = d[o + RE]!;
            else {
              const rs = d[o + RS]!;
              const duration = d[o + RE]! - rs + d[o + IV]!;
              if (duration >= minDuration) {
                f = raiseFault(
                  out,
                  index.keyOf(m)!,
                  'zero',
                  rs,
                  t,
                  { durationHours: hours(duration), zeroReadings: n, thresholdHours: hours(minDuration) },
                  `0 kW for ${hours(duration)} h`,
                );
                faults.set(m, f);
              }
            }
          } else {
            if (f !== undefined) {
              clearFault(out, index.keyOf(m)!, 'zero', f, t, {
                durationHours: hours(d[o + RE]! - d[o + RS]! + d[o + IV]!),
                zeroReadings: d[o + N]!,
                kw: v,
              });
              faults.delete(m);
              f = undefined;
            }
            d[o + N] = 0;
          }
        }
        if (f !== undefined) flags[i]! |= FAULT_EXCLUDED;
      }
    },
  };
}

/** `detectStuckMeterSpec` (operators/detect-stuck-meter.ts) over columns; its row layout. */
export function stuckMeterColumns(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'stuckMinDurationMs' | 'stuckToleranceKw'>,
  name = 'detectStuckMeter',
): ColumnRule {
  const RS = 2;
  const RE = 3;
  const U = 4;
  const N = 5;
  const minDuration = thresholds.stuckMinDurationMs;
  const tolerance = thresholds.stuckToleranceKw;
  const toleranceUnits = Math.round(tolerance * KW_SCALE);
  const runs = store.rows(`${name}/meter`, METER_KEYS, 6);
  const index = store.denseKeys(METER_KEYS);
  const faults = new OpenFaults(store, name, index);
  return {
    name,
    adds: ['fault_excluded'],
    run: (b, from, to, out) => {
      const { meter, ts, kw, kwNull, status, flags } = b;
      for (let i = from; i < to; i++) {
        const m = meter[i]!;
        const t = ts[i]!;
        const o = cadenceRow(runs, m, t);
        const d = runs.data;
        observeCadenceAt(d, o, t);
        let f = faults.get(m);
        if (kwNull[i] === 0 && status[i] === MEASURED && (flags[i]! & OVER_LIMIT) === 0) {
          const v = kw[i]!;
          const u = Math.round(v * KW_SCALE);
          if (u !== 0 && d[o + N]! > 0 && Math.abs(u - d[o + U]!) <= toleranceUnits) {
            const n = d[o + N]! + 1;
            d[o + N] = n;
            if (t > d[o + RE]!) d[o + RE] = t;
            if (f !== undefined) f.e = d[o + RE]!;
            else {
              const rs = d[o + RS]!;
              const duration = d[o + RE]! - rs + d[o + IV]!;
              if (duration >= minDuration) {
                const value = d[o + U]! / KW_SCALE;
                f = raiseFault(
                  out,
                  index.keyOf(m)!,
                  'stuck',
                  rs,
                  t,
                  {
                    valueKw: value,
                    toleranceKw: tolerance,
                    durationHours: hours(duration),
                    readings: n,
                    thresholdHours: hours(minDuration),
                  },
                  `${value} kW repeated for ${hours(duration)} h`,
                );
                faults.set(m, f);
              }
            }
          } else {
            if (f !== undefined) {
              clearFault(out, index.keyOf(m)!, 'stuck', f, t, {
                durationHours: hours(d[o + RE]! - d[o + RS]! + d[o + IV]!),
                readings: d[o + N]!,
                kw: v,
              });
              faults.delete(m);
              f = undefined;
            }
            if (u === 0) d[o + N] = 0;
            else {
              d[o + RS] = t;
              d[o + RE] = t;
              d[o + U] = u;
              d[o + N] = 1;
            }
          }
        }
        if (f !== undefined) flags[i]! |= FAULT_EXCLUDED;
      }
    },
  };
}

/**
 * Elements a rule takes before the next rule takes them, as the keyed chain's piece: the rules' states for
 * a piece's meters stay in the cache from one rule to the next.
 */
export const PIECE = 2048;

/**
 * Runs a batch through `rules` a piece at a time, each piece through every rule before the next; the
 * tagged records come out as the keyed chain gives them: per batch, rule after rule.
 */
export function runColumnChain(
  rules: readonly ColumnRule[],
  sinks: readonly TagLists[],
  b: ReadingColumns,
  out: TagLists,
): void {
  for (let from = 0; from < b.length; from += PIECE) {
    const to = Math.min(b.length, from + PIECE);
    for (let k = 0; k < rules.length; k++) rules[k]!.run(b, from, to, sinks[k]!);
  }
  for (const s of sinks) out.append(s);
}
