/**
 * The input of the per-meter rules in the benches: a simulated fleet taken through the stages before the
 * per-meter chain (`stagesBeforeRules`, also `per-meter-chain.ts`'s input) and, for the ported rules
 * (`column-rules.ts`), through the chain's first two
 * members (event-time ordering, gap filling), whose output the ported rules take. Built once, untimed.
 */
import { BehaviorSubject, from, pipe } from 'rxjs';
import {
  assignWatermarks,
  awaitSideInputs,
  chainMember,
  dataEvent,
  type FlowEvent,
  keyedChain,
  SideInput,
  StateStore,
  type Transform,
  watermarkEvent,
} from '../../core/index.js';
import { dedupeReadings } from '../../operators/dedupe-readings.js';
import { fillGapsSpec } from '../../operators/fill-gaps.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import { orderByEventTimeSpec } from '../../operators/order-by-event-time.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { parseReading } from '../../operators/parse-reading.js';
import { quarantineImplausibleTime } from '../../operators/quarantine-implausible-time.js';
import { type RuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';
import { standardizeUnits } from '../../operators/standardize-units.js';
import { validateMeasurements } from '../../operators/validate-measurements.js';
import { validateReading } from '../../operators/validate-reading.js';
import type { RawReading, Reading } from '../../schemas/reading.js';
import { simulatedHours } from '../tasks/feed.js';

const HOUR = 3_600_000;

export interface RuleInput {
  readonly profile: RuleProfile;
  readonly registry: SideInput<MeterRegistry>;
  /** Batches and watermarks as the per-meter rules after gap filling receive them, ending with a final watermark. */
  readonly events: readonly FlowEvent<Reading>[];
  /** The dense index of meters the readings' numbers refer to, as its keys in number order. */
  readonly meterKeys: readonly string[];
}

/** The graph's stages before the per-meter chain, as the graph runs them (their tagged outputs left in). */
export function stagesBeforeRules(
  store: StateStore,
  side: SideInput<MeterRegistry>,
  profile: RuleProfile,
): Transform<RawReading, Reading> {
  const lineage = { pipelineVersion: 'bench', processedAt: () => 0 };
  return pipe(
    awaitSideInputs<RawReading>(side),
    parseReading(lineage, store.denseKeys(METER_KEYS)),
    validateMeasurements(profile.measurements, lineage),
    standardizeUnits(profile.units, side),
    validateReading(side, profile.validation, { replay: false }),
    quarantineImplausibleTime(store, profile.validation, undefined, { replay: false }),
    assignWatermarks<Reading>({
      name: 'assignWatermarks',
      store,
      eventTime: (r) => r.ts,
      maxOutOfOrdernessMs: profile.maxOutOfOrdernessMs,
    }),
    dedupeReadings(store, { horizonMs: profile.maxOutOfOrdernessMs + 2 * HOUR }),
  );
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
