/**
 * The input of the ported per-meter rules (`column-rules.ts`): a simulated fleet taken through the stages
 * before the per-meter chain (`stagesBeforeRules`, as `per-meter-chain.ts` takes it), then through the
 * chain's first two members (event-time ordering, gap filling), whose output the ported rules take. Built
 * once, untimed.
 */
import { BehaviorSubject, from } from 'rxjs';
import {
  chainMember,
  dataEvent,
  type FlowEvent,
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
import { simulatedHours, stagesBeforeRules } from '../tasks/feed.js';

const HOUR = 3_600_000;

export interface RuleInput {
  readonly profile: RuleProfile;
  readonly registry: SideInput<MeterRegistry>;
  /** Batches and watermarks as the per-meter rules after gap filling receive them, ending with a final watermark. */
  readonly events: readonly FlowEvent<Reading>[];
  /** The dense index of meters the readings' numbers refer to, as its keys in number order. */
  readonly meterKeys: readonly string[];
}

/**
 * `meters` simulated meters over `days` days from 2024-03-11 (seed 1). `shortFaults`: zero and stuck
 * runs of 2 h are faults (instead of the profile's 48 h and 24 h), so that a day raises and clears some.
 */
export function ruleInput(options: { meters: number; days: number; shortFaults: boolean }): RuleInput {
  const base = resolveRuleProfile();
  const profile: RuleProfile = options.shortFaults
    ? { ...base, faults: { ...base.faults, zeroMinDurationMs: 2 * HOUR, stuckMinDurationMs: 2 * HOUR } }
    : base;
  const { registry, hours } = simulatedHours({
    meters: options.meters,
    days: options.days,
    start: '2024-03-11',
    seed: 1,
  });
  const side = new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry));
  const store = new StateStore();
  const events: FlowEvent<Reading>[] = [];
  let maxTs = 0;
  function* batches(): Generator<FlowEvent<RawReading>> {
    for (const h of hours()) yield dataEvent(h.records);
  }
  from(batches())
    .pipe(
      stagesBeforeRules(store, side, profile),
      keyedChain(store, [
        chainMember(orderByEventTimeSpec(store)),
        chainMember(fillGapsSpec(store, profile.gaps)),
      ]),
    )
    .subscribe((e) => {
      if (e.kind === 'tagged') return;
      events.push(e);
      if (e.kind === 'data') for (const r of e.items) maxTs = Math.max(maxTs, r.ts);
    });
  events.push(watermarkEvent(maxTs + profile.gaps.defaultIntervalMs));
  return { profile, registry: side, events, meterKeys: store.denseKeys(METER_KEYS).snapshot() };
}
