/**
 * The golden check of the columnar prototype: the ported rules (`column-rules.ts`) and their row rules run
 * over the same input, each in a fresh store; every reading must leave with the same flags in the same
 * order, the same faults and alerts must be tagged in the same order, and the rules' state (typed rows and
 * keyed open faults) must end the same.
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
import { METER_KEYS } from '../../operators/meter-key.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { RuleProfile } from '../../operators/rule-profile.js';
import type { Reading, ReadingFlag } from '../../schemas/reading.js';
import {
  type ColumnRule,
  rateOfChangeColumns,
  runColumnChain,
  stuckMeterColumns,
  TagLists,
  zeroMeterColumns,
} from './column-rules.js';
import { copyColumns, type ReadingColumns, toColumns, writeBackFlags } from './reading-columns.js';

/** A per-meter rule twice: as the graph runs it (a keyed spec), and ported to columns. */
export interface RulePair {
  readonly name: string;
  readonly spec: (store: StateStore) => KeyedProcessSpec<Reading, Reading, unknown>;
  readonly columns: (store: StateStore) => ColumnRule;
}

export const PORTED = ['rateOfChange', 'zeroMeter', 'stuckMeter'] as const;
export type PortedRule = (typeof PORTED)[number];

/** The ported rules with the profile's thresholds, in the per-meter chain's order. */
export function rulePairs(
  profile: Pick<RuleProfile, 'rateOfChange' | 'faults'>,
  registry: SideInput<MeterRegistry>,
): Record<PortedRule, RulePair> {
  const spec = <S>(s: KeyedProcessSpec<Reading, Reading, S>) => chainMember(s).spec;
  return {
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

/** The order a chain of `rules` adds flags in: each rule's, in rule order, each flag once. */
export function flagOrder(rules: readonly ColumnRule[]): ReadingFlag[] {
  return [...new Set(rules.flatMap((r) => r.adds))];
}

/** A row as the rules may flag it in place, its flags list its own. */
export function copyRow(r: Reading): Reading {
  return { ...r, flags: [...r.flags] };
}

/** Readings with other flags shown in a result (all are counted). */
const SHOWN = 10;

export interface CheckResult {
  readonly readings: number;
  /** Readings the rules flagged. */
  readonly flagged: number;
  /** Tagged records by tag. */
  readonly tagged: Record<string, number>;
  /** What differs; empty when the port matches its row rules. */
  readonly mismatches: string[];
}

/** Runs `pairs` as a keyed chain of row rules and as a chain of column rules over `input`, and compares. */
export function checkColumnar(
  input: readonly FlowEvent<Reading>[],
  meterKeys: readonly string[],
  pairs: readonly RulePair[],
): CheckResult {
  const mismatches: string[] = [];
  const note = (m: string): void => {
    mismatches.push(m);
  };
  /** Readings whose flags differ: counted, the first few shown. */
  let differ = 0;
  const noteReading = (m: string): void => {
    if (differ++ < SHOWN) note(m);
  };

  const cs = storeFor(meterKeys);
  const rules = pairs.map((p) => p.columns(cs));
  const sinks = rules.map(() => new TagLists());
  const columnTags = new TagLists();
  const columns: { entry: Uint32Array; after: ReadingColumns }[] = [];
  for (const e of input) {
    if (e.kind !== 'data') continue;
    const c = toColumns(e.items, cs.denseKeys(METER_KEYS));
    const entry = c.flags.slice();
    runColumnChain(rules, sinks, c, columnTags);
    columns.push({ entry, after: c });
  }

  const os = storeFor(meterKeys);
  const chain = keyedChain(
    os,
    pairs.map((p) => chainMember(p.spec(os))),
  );
  const rowTags = new TagLists();
  const order = flagOrder(rules);
  const data = input.filter((e) => e.kind === 'data');
  let batch = 0;
  let readings = 0;
  let flagged = 0;
  from(input.map((e) => (e.kind === 'data' ? { kind: 'data' as const, items: e.items.map(copyRow) } : e)))
    .pipe(chain)
    .subscribe((e) => {
      if (e.kind === 'tagged') {
        for (const item of e.items) rowTags.tag({ name: e.tag }, item);
        return;
      }
      if (e.kind !== 'data') return;
      const c = columns[batch];
      const rows = data[batch]?.items;
      batch++;
      if (c === undefined || rows === undefined || rows.length !== e.items.length) {
        note(`batch ${batch - 1}: ${e.items.length} readings out of the row rules, ${rows?.length} in`);
        return;
      }
      const written = rows.map(copyRow);
      writeBackFlags(written, copyColumns(c.after), c.entry, order);
      for (let i = 0; i < written.length; i++) {
        readings++;
        const want = e.items[i]!;
        const got = written[i]!;
        if (want.flags.length !== rows[i]!.flags.length) flagged++;
        if (want.ts !== got.ts || want.meterId !== got.meterId || !isDeepStrictEqual(want.flags, got.flags))
          noteReading(
            `batch ${batch - 1} reading ${i} (${want.meterId} @ ${want.ts}): rows ${JSON.stringify(want.flags)}, columns ${JSON.stringify(got.flags)}`,
          );
      }
    });
  if (differ > 0) note(`${differ} readings differ`);
  if (batch !== columns.length) note(`${batch} batches out of the row rules, ${columns.length} in`);

  const tagged: Record<string, number> = {};
  for (const name of new Set([...rowTags.lists.keys(), ...columnTags.lists.keys()])) {
    const want = rowTags.lists.get(name) ?? [];
    const got = columnTags.lists.get(name) ?? [];
    tagged[name] = want.length;
    if (!isDeepStrictEqual(want, got))
      note(`tag ${name}: ${want.length} from the rows, ${got.length} from the columns`);
  }

  const o = os.snapshot();
  const c = cs.snapshot();
  for (const ns of Object.keys(c.rows ?? {}))
    if (!isDeepStrictEqual(o.rows?.[ns], c.rows?.[ns])) note(`rows ${ns} differ`);
  for (const ns of Object.keys(o.rows ?? {})) if (c.rows?.[ns] === undefined) note(`rows ${ns} not kept`);
  for (const ns of new Set([...Object.keys(o.keyed), ...Object.keys(c.keyed)]))
    if (!isDeepStrictEqual(o.keyed[ns] ?? [], c.keyed[ns] ?? [])) note(`keyed state ${ns} differs`);
  return { readings, flagged, tagged, mismatches };
}
