/**
 * The golden check of the columnar prototype: the ported members (`column-rules.ts`, `column-stages.ts`)
 * and their row operators run as chains over the same input, each in a fresh store; the same readings
 * must leave in the same order (the ones gap filling created included) with the same fields and flags,
 * the same quarantine records, faults and alerts must be tagged in the same order, and the members' state
 * (typed rows, keyed open faults, timers, values) must end the same.
 */
import { isDeepStrictEqual } from 'node:util';
import { from } from 'rxjs';
import {
  chainMember,
  type FlowEvent,
  type KeyedProcessSpec,
  keyedChain,
  type SideInput,
  StateStore,
} from '../../core/index.js';
import { detectRateOfChangeSpec } from '../../operators/detect-rate-of-change.js';
import { detectStuckMeterSpec } from '../../operators/detect-stuck-meter.js';
import { detectZeroMeterSpec } from '../../operators/detect-zero-meter.js';
import { fillGapsSpec } from '../../operators/fill-gaps.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import { orderByEventTimeSpec } from '../../operators/order-by-event-time.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { RuleProfile } from '../../operators/rule-profile.js';
import type { Reading, ReadingFlag } from '../../schemas/reading.js';
import { ColumnChain, type ColumnMember, type ColumnOutput } from './column-chain.js';
import { rateOfChangeColumns, stuckMeterColumns, TagLists, zeroMeterColumns } from './column-rules.js';
import { fillGapsColumns, orderByEventTimeColumns } from './column-stages.js';
import { flagSet, type ReadingColumns, rowsOut, toColumns } from './reading-columns.js';

/** A member of the per-meter chain twice: as the graph runs it (a keyed spec), and ported to columns. */
export interface RulePair {
  readonly name: string;
  readonly spec: (store: StateStore) => KeyedProcessSpec<Reading, Reading, unknown>;
  readonly columns: (store: StateStore) => ColumnMember;
}

/** The ported rules that flag readings in place. */
export const PORTED = ['rateOfChange', 'zeroMeter', 'stuckMeter'] as const;
export type PortedRule = (typeof PORTED)[number];
/** The ported members that hold, reorder and create readings. */
export const STAGES = ['orderByEventTime', 'fillGaps'] as const;
export type PortedStage = (typeof STAGES)[number];
/** The five, in the per-meter chain's order. */
export const CHAIN = [...STAGES, ...PORTED] as const;
export type PortedMember = (typeof CHAIN)[number];

/** The ported members with the profile's thresholds, in the per-meter chain's order. */
export function rulePairs(
  profile: Pick<RuleProfile, 'rateOfChange' | 'faults' | 'gaps'>,
  registry: SideInput<MeterRegistry>,
): Record<PortedMember, RulePair> {
  const spec = <S>(s: KeyedProcessSpec<Reading, Reading, S>) => chainMember(s).spec;
  return {
    orderByEventTime: {
      name: 'orderByEventTime',
      spec: (store) => spec(orderByEventTimeSpec(store)),
      columns: (store) => orderByEventTimeColumns(store),
    },
    fillGaps: {
      name: 'fillGaps',
      spec: (store) => spec(fillGapsSpec(store, profile.gaps)),
      columns: (store) => fillGapsColumns(store, profile.gaps),
    },
    rateOfChange: {
      name: 'rateOfChange',
      spec: (store) => spec(detectRateOfChangeSpec(store, profile.rateOfChange)),
      columns: (store) => rateOfChangeColumns(store, profile.rateOfChange),
    },
    zeroMeter: {
      name: 'zeroMeter',
      spec: (store) => spec(detectZeroMeterSpec(store, registry, profile.faults)),
      columns: (store) => zeroMeterColumns(store, registry, profile.faults),
    },
    stuckMeter: {
      name: 'stuckMeter',
      spec: (store) => spec(detectStuckMeterSpec(store, profile.faults)),
      columns: (store) => stuckMeterColumns(store, profile.faults),
    },
  };
}

/** A store whose index of meters numbers them as the input's readings carry. */
export function storeFor(meterKeys: readonly string[]): StateStore {
  const store = new StateStore();
  store.denseKeys(METER_KEYS).restore(meterKeys);
  return store;
}

/** The order a chain of `members` adds flags in: each member's, in member order, each flag once. */
export function flagOrder(members: readonly ColumnMember[]): ReadingFlag[] {
  return [...new Set(members.flatMap((r) => r.adds))];
}

/** A row as the rules may flag it in place, its flags list its own. */
export function copyRow(r: Reading): Reading {
  return { ...r, flags: [...r.flags] };
}

/** Readings that differ shown in a result (all are counted). */
const SHOWN = 10;

export interface CheckResult {
  /** Readings out of the chain. */
  readonly readings: number;
  /** Readings out that arrived and were flagged by the chain. */
  readonly flagged: number;
  /** Readings out that gap filling created. */
  readonly created: number;
  /** Tagged records by tag. */
  readonly tagged: Record<string, number>;
  /** Quarantine records by their reasons (joined by commas). */
  readonly quarantineReasons: Record<string, number>;
  /** What differs; empty when the port matches its row operators. */
  readonly mismatches: string[];
}

type OutEvent = { kind: 'data'; items: readonly Reading[] } | { kind: 'watermark'; time: number };

/** The fields of two rows that differ, each side's values. */
function diff(
  want: Reading,
  got: Reading,
): { rows: Record<string, unknown>; columns: Record<string, unknown> } {
  const rows: Record<string, unknown> = {};
  const columns: Record<string, unknown> = {};
  for (const k of new Set([...Object.keys(want), ...Object.keys(got)])) {
    const a = (want as unknown as Record<string, unknown>)[k];
    const b = (got as unknown as Record<string, unknown>)[k];
    if (!isDeepStrictEqual(a, b)) {
      rows[k] = a;
      columns[k] = b;
    }
  }
  return { rows, columns };
}

/** Runs `pairs` as a keyed chain of row members and as a chain of column members over `input`, and compares. */
export function checkColumnar(
  input: readonly FlowEvent<Reading>[],
  meterKeys: readonly string[],
  pairs: readonly RulePair[],
): CheckResult {
  const mismatches: string[] = [];
  const note = (m: string): void => {
    mismatches.push(m);
  };
  let differ = 0;
  const noteReading = (m: string): void => {
    if (differ++ < SHOWN) note(m);
  };

  // Columns first: the rows the column batches point to are the input's own, never changed.
  const cs = storeFor(meterKeys);
  const chain = new ColumnChain(
    cs,
    pairs.map((p) => p.columns(cs)),
  );
  const index = cs.denseKeys(METER_KEYS);
  const columnOut: ({ kind: 'data'; pieces: ReadingColumns[] } | { kind: 'watermark'; time: number })[] = [];
  const push = (o: ColumnOutput): void => {
    for (const pieces of o) columnOut.push({ kind: 'data', pieces });
  };
  for (const e of input) {
    // Copies: the exit (`rowsOut`) appends the chain's flags to the rows it points to.
    if (e.kind === 'data') push(chain.data(toColumns(e.items.map(copyRow), index)));
    else if (e.kind === 'watermark') {
      push(chain.watermark(e.time));
      columnOut.push({ kind: 'watermark', time: e.time });
    }
  }

  const os = storeFor(meterKeys);
  const rowChain = keyedChain(
    os,
    pairs.map((p) => chainMember(p.spec(os))),
  );
  const rowTags = new TagLists();
  const rowOut: OutEvent[] = [];
  from(input.map((e) => (e.kind === 'data' ? { kind: 'data' as const, items: e.items.map(copyRow) } : e)))
    .pipe(rowChain)
    .subscribe((e) => {
      if (e.kind === 'tagged') {
        for (const item of e.items) rowTags.tag({ name: e.tag }, item);
        return;
      }
      if (e.kind === 'data') rowOut.push({ kind: 'data', items: e.items });
      else if (e.kind === 'watermark') rowOut.push({ kind: 'watermark', time: e.time });
    });

  const order = chain.flagOrder();
  let readings = 0;
  let flagged = 0;
  let created = 0;
  if (rowOut.length !== columnOut.length)
    note(`${rowOut.length} events out of the row chain, ${columnOut.length} out of the columns`);
  for (let k = 0; k < Math.min(rowOut.length, columnOut.length); k++) {
    const want = rowOut[k]!;
    const got = columnOut[k]!;
    if (want.kind !== got.kind) {
      note(`event ${k}: ${want.kind} from the rows, ${got.kind} from the columns`);
      break;
    }
    if (want.kind === 'watermark' || got.kind === 'watermark') continue;
    const n = got.pieces.reduce((s, p) => s + p.length, 0);
    if (n !== want.items.length)
      note(`event ${k}: ${want.items.length} readings from the rows, ${n} from the columns`);
    for (const p of got.pieces) {
      for (let j = 0; j < p.length; j++) {
        if (p.gapRecordId?.[j] !== undefined) created++;
        else if ((p.flags[j]! & ~flagSet(p.row[j]!.flags)) !== 0) flagged++;
      }
    }
    const rows = rowsOut(got.pieces, order);
    for (let i = 0; i < Math.min(rows.length, want.items.length); i++) {
      const w = want.items[i]!;
      const g = rows[i]!;
      readings++;
      if (!isDeepStrictEqual(w, g)) {
        const d = diff(w, g);
        noteReading(
          `event ${k} reading ${i} (${w.meterId} @ ${w.ts}): rows ${JSON.stringify(d.rows)}, columns ${JSON.stringify(d.columns)}`,
        );
      }
    }
  }
  if (differ > 0) note(`${differ} readings differ`);

  const tagged: Record<string, number> = {};
  for (const name of new Set([...rowTags.lists.keys(), ...chain.tags.lists.keys()])) {
    const want = rowTags.lists.get(name) ?? [];
    const got = chain.tags.lists.get(name) ?? [];
    tagged[name] = want.length;
    if (!isDeepStrictEqual(want, got))
      note(`tag ${name}: ${want.length} from the rows, ${got.length} from the columns`);
  }

  const quarantineReasons: Record<string, number> = {};
  for (const q of (rowTags.lists.get('quarantine') ?? []) as { reasons: string[] }[]) {
    const key = q.reasons.join();
    quarantineReasons[key] = (quarantineReasons[key] ?? 0) + 1;
  }

  const o = os.snapshot();
  const c = cs.snapshot();
  for (const ns of Object.keys(c.rows ?? {}))
    if (!isDeepStrictEqual(o.rows?.[ns], c.rows?.[ns])) note(`rows ${ns} differ`);
  for (const ns of Object.keys(o.rows ?? {})) if (c.rows?.[ns] === undefined) note(`rows ${ns} not kept`);
  for (const ns of new Set([...Object.keys(o.keyed), ...Object.keys(c.keyed)]))
    if (!isDeepStrictEqual(o.keyed[ns] ?? [], c.keyed[ns] ?? [])) note(`keyed state ${ns} differs`);
  for (const ns of new Set([...Object.keys(o.timers), ...Object.keys(c.timers)]))
    if (!isDeepStrictEqual(o.timers[ns] ?? [], c.timers[ns] ?? [])) note(`timers ${ns} differ`);
  for (const name of new Set([...Object.keys(o.values), ...Object.keys(c.values)]))
    if (!isDeepStrictEqual(o.values[name], c.values[name])) note(`value ${name} differs`);
  return { readings, flagged, created, tagged, quarantineReasons, mismatches };
}
