/**
 * The input of the ported per-meter chain (`column-stages.ts`, `column-rules.ts`): a simulated fleet taken
 * through the stages before the per-meter chain (`stagesBeforeRules`, as `per-meter-chain.ts` takes it),
 * optionally roughened, then through the chain's first member and its second, for the members that take
 * their outputs. Built once, untimed.
 */
import { BehaviorSubject, from } from 'rxjs';
import {
  chainMember,
  dataEvent,
  type FlowEvent,
  type KeyedProcessSpec,
  keyedChain,
  SideInput,
  StateStore,
  watermarkEvent,
} from '../../core/index.js';
import { fillGapsSpec } from '../../operators/fill-gaps.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import { orderByEventTimeSpec } from '../../operators/order-by-event-time.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { type RuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';
import type { RawReading, Reading } from '../../schemas/reading.js';
import type { SimulationOptions } from '../../simulator/options.js';
import type { SimSpec } from '../tasks/common.js';
import { simulatedHours, stagesBeforeRules } from '../tasks/feed.js';

const HOUR = 3_600_000;

export interface RuleInput {
  readonly profile: RuleProfile;
  readonly registry: SideInput<MeterRegistry>;
  /** Batches and watermarks as the per-meter chain receives them (event-time ordering's input). */
  readonly chainEvents: readonly FlowEvent<Reading>[];
  /** As gap filling receives them, after event-time ordering. */
  readonly orderedEvents: readonly FlowEvent<Reading>[];
  /** As the per-meter rules after gap filling receive them. */
  readonly events: readonly FlowEvent<Reading>[];
  /** The dense index of meters the readings' numbers refer to, as its keys in number order. */
  readonly meterKeys: readonly string[];
}

/** Simulated meters reading kinds of rough data (gaps, NULL runs, duplicates …): the simulator's most. */
const ROUGH_ANOMALY_RATE = 0.03;

/**
 * `meters` simulated meters over `days` days from 2024-03-11 (seed 1), each stream ending with a final
 * watermark a default interval after the last reading. `shortFaults`: zero and stuck runs of 2 h are
 * faults (instead of the profile's 48 h and 24 h), so that a day raises and clears some. `rough`: the
 * simulator's highest anomaly rate, and the chain's input roughened (`roughen`) with readings out of
 * order, late, duplicated and dropped, so that event-time ordering quarantines and sorts and gap filling
 * fills.
 */
export function ruleInput(options: {
  meters: number;
  days: number;
  shortFaults: boolean;
  rough?: boolean;
}): RuleInput {
  const base = resolveRuleProfile();
  const profile: RuleProfile = options.shortFaults
    ? { ...base, faults: { ...base.faults, zeroMinDurationMs: 2 * HOUR, stuckMinDurationMs: 2 * HOUR } }
    : base;
  // The simulation takes every simulator option; the bench feed's spec names only the four it needs.
  const sim: SimSpec & Pick<SimulationOptions, 'anomalyRate'> = {
    meters: options.meters,
    days: options.days,
    start: '2024-03-11',
    seed: 1,
    ...(options.rough === true ? { anomalyRate: ROUGH_ANOMALY_RATE } : {}),
  };
  const { registry, hours } = simulatedHours(sim);
  const side = new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry));
  const store = new StateStore();
  let chainEvents: FlowEvent<Reading>[] = [];
  function* batches(): Generator<FlowEvent<RawReading>> {
    for (const h of hours()) yield dataEvent(h.records);
  }
  from(batches())
    .pipe(stagesBeforeRules(store, side, profile))
    .subscribe((e) => {
      if (e.kind !== 'tagged') chainEvents.push(e);
    });
  if (options.rough === true) chainEvents = roughen(chainEvents);
  let maxTs = 0;
  for (const e of chainEvents) if (e.kind === 'data') for (const r of e.items) maxTs = Math.max(maxTs, r.ts);
  chainEvents.push(watermarkEvent(maxTs + profile.gaps.defaultIntervalMs));
  const through = (
    events: readonly FlowEvent<Reading>[],
    spec: KeyedProcessSpec<Reading, Reading, never>,
  ): FlowEvent<Reading>[] => {
    const out: FlowEvent<Reading>[] = [];
    from(events)
      .pipe(keyedChain(store, [chainMember(spec)]))
      .subscribe((e) => {
        if (e.kind !== 'tagged') out.push(e);
      });
    return out;
  };
  const orderedEvents = through(chainEvents, orderByEventTimeSpec(store));
  const events = through(orderedEvents, fillGapsSpec(store, profile.gaps));
  return {
    profile,
    registry: side,
    chainEvents,
    orderedEvents,
    events,
    meterKeys: store.denseKeys(METER_KEYS).snapshot(),
  };
}

/** Share of readings taken out of their batch and delivered one to four batches later. */
const LATE_SHARE = 0.01;
/** Share of readings delivered twice, the copy in the same batch or the next. */
const DUPLICATE_SHARE = 0.005;
/** Share of readings lost. */
const DROP_SHARE = 0.005;
/** Share of meters silent for one to six batches (hours) once. */
const OUTAGE_SHARE = 0.02;
/** Share of positions in a batch swapped with another. */
const SWAP_SHARE = 0.05;

/**
 * The chain's input made rougher than the simulation, deterministically (seed 1): readings delivered
 * late, duplicated, dropped, meters silent for hours, and each batch partly shuffled. Watermarks stay
 * where they were, so a late reading is sometimes behind its meter's released ones (quarantined) and
 * sometimes only behind the watermark (passed on in order).
 */
export function roughen(events: readonly FlowEvent<Reading>[]): FlowEvent<Reading>[] {
  const random = mulberry32(1);
  const batches = events.filter((e) => e.kind === 'data').length;
  /** Per meter id, the batch its outage starts in and how many it lasts. */
  const outages = new Map<string, { from: number; to: number }>();
  const carried = new Map<number, Reading[]>();
  const carry = (at: number, r: Reading): void => {
    const list = carried.get(at) ?? [];
    list.push(r);
    carried.set(at, list);
  };
  const out: FlowEvent<Reading>[] = [];
  let b = 0;
  for (const e of events) {
    if (e.kind !== 'data') {
      out.push(e);
      continue;
    }
    const items: Reading[] = [];
    for (const r of e.items) {
      let outage = outages.get(r.meterId);
      if (outage === undefined) {
        const from = random() < OUTAGE_SHARE ? Math.floor(random() * batches) : -1;
        outage = { from, to: from + 1 + Math.floor(random() * 6) };
        outages.set(r.meterId, outage);
      }
      if (b >= outage.from && b < outage.to) continue;
      const x = random();
      if (x < DROP_SHARE) continue;
      if (x < DROP_SHARE + LATE_SHARE) {
        carry(b + 1 + Math.floor(random() * 4), r);
        continue;
      }
      items.push(r);
      if (x < DROP_SHARE + LATE_SHARE + DUPLICATE_SHARE) {
        const copy = { ...r };
        if (random() < 0.5) items.push(copy);
        else carry(b + 1, copy);
      }
    }
    for (const r of carried.get(b) ?? []) items.push(r);
    carried.delete(b);
    const swaps = Math.floor(items.length * SWAP_SHARE);
    for (let k = 0; k < swaps; k++) {
      const i = Math.floor(random() * items.length);
      const j = Math.floor(random() * items.length);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    out.push({ kind: 'data', items });
    b++;
  }
  return out;
}

/** A small seeded generator of numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
