/**
 * A checkpoint of state layout meter-quality/9, when orderByEventTime, fillGaps and the rate-of-change,
 * zero, stuck and overload rules kept an object per meter in keyed state, restored by this build (their
 * state in typed rows): the per-meter chain goes on exactly as an uninterrupted run, and as that build
 * itself went on. `per-meter-chain-v9.snapshot.json` was written by the layout-9 build (see
 * `per-meter-chain-v9.fixture.ts`) over `chainEvents()`: a full checkpoint mid-stream, a delta on it.
 */
import { readFileSync } from 'node:fs';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  chainMember,
  deserializeSnapshot,
  type FlowEvent,
  keyedChain,
  StateStore,
  type Transform,
} from '../../core/index.js';
import { detectCommFailureSpec } from '../../operators/detect-comm-failure.js';
import { detectErraticExcursionSpec } from '../../operators/detect-erratic-excursion.js';
import { detectLowVarianceSpec } from '../../operators/detect-low-variance.js';
import { detectOverloadSpec } from '../../operators/detect-overload.js';
import { detectRateOfChangeSpec } from '../../operators/detect-rate-of-change.js';
import { detectStuckMeterSpec } from '../../operators/detect-stuck-meter.js';
import { detectZeroMeterSpec } from '../../operators/detect-zero-meter.js';
import { fillGapsSpec } from '../../operators/fill-gaps.js';
import { orderByEventTimeSpec } from '../../operators/order-by-event-time.js';
import { defaultRuleProfile as profile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { faults, registry } from './fixtures.js';
import { CHAIN_METERS, chainEvents, outputDigest } from './per-meter-chain-input.js';

const fixture = JSON.parse(
  readFileSync(new URL('./per-meter-chain-v9.snapshot.json', import.meta.url), 'utf8'),
) as {
  format: string;
  full: string;
  deltas: string[];
  continuation: { full: string; delta: string };
};
const bytes = (base64: string): Uint8Array => new Uint8Array(Buffer.from(base64, 'base64'));

/** The per-meter rules as `pipelines/meter-quality.ts` chains them. */
function perMeterRules(store: StateStore): Transform<Reading, Reading> {
  const reg = registry(...CHAIN_METERS);
  return keyedChain(store, [
    chainMember(orderByEventTimeSpec(store)),
    chainMember(fillGapsSpec(store, profile.gaps)),
    chainMember(detectRateOfChangeSpec(store, profile.rateOfChange)),
    chainMember(detectZeroMeterSpec(store, reg, profile.faults)),
    chainMember(detectStuckMeterSpec(store, profile.faults)),
    chainMember(detectOverloadSpec(store, reg, profile.faults)),
    chainMember(detectLowVarianceSpec(store, profile.faults)),
    chainMember(detectErraticExcursionSpec(store, profile.faults)),
    chainMember(detectCommFailureSpec(store, profile.faults)),
  ]);
}

/** A transform fed event by event, its outputs collected. */
function driven(transform: Transform<Reading, Reading>): {
  feed: (events: readonly FlowEvent<Reading>[]) => void;
  out: FlowEvent<Reading>[];
} {
  const input = new Subject<FlowEvent<Reading>>();
  const out: FlowEvent<Reading>[] = [];
  input.pipe(transform).subscribe({
    next: (e) => out.push(e),
    error: (err: unknown) => {
      throw err;
    },
  });
  const feed = (events: readonly FlowEvent<Reading>[]): void => {
    for (const e of events) input.next(e);
  };
  return { feed, out };
}

/** What an uninterrupted run emits after the input's first `cut` events. */
function uninterrupted(cut: number): FlowEvent<Reading>[] {
  const { events } = chainEvents();
  const run = driven(perMeterRules(new StateStore()));
  run.feed(events.slice(0, cut));
  const before = run.out.length;
  run.feed(events.slice(cut));
  return run.out.slice(before);
}

describe('the per-meter chain restored from a checkpoint of layout meter-quality/9', () => {
  const { fullCut, deltaCut } = chainEvents();

  it.each([
    ['the full checkpoint', 'built before the restore', false, true],
    ['the full checkpoint', 'built after the restore', false, false],
    ['the full checkpoint and its delta', 'built before the restore', true, true],
    ['the full checkpoint and its delta', 'built after the restore', true, false],
  ])('from %s goes on as an uninterrupted run (chain %s)', (_, __, withDelta, buildFirst) => {
    expect(fixture.format).toBe('meter-quality/9');
    const cut = withDelta ? deltaCut : fullCut;
    const store = new StateStore();
    const early = buildFirst ? perMeterRules(store) : undefined;
    store.restore(deserializeSnapshot(bytes(fixture.full)));
    store.applyDeltas(withDelta ? fixture.deltas.map(bytes) : []);
    const resumed = driven(early ?? perMeterRules(store));
    // What the layout-9 build held as objects is in the rows now: only open faults stay keyed entries.
    for (const ns of ['orderByEventTime', 'fillGaps', 'detectRateOfChange'])
      expect(store.keyed(ns).size, ns).toBe(0);
    // The zero run reaches 48 h between the cuts.
    expect([...store.keyed('detectZeroMeter').keys()]).toEqual(withDelta ? ['MTR-000002'] : []);
    expect([...store.keyed('detectStuckMeter').keys()]).toEqual(['MTR-000003']);
    expect(store.rows('fillGaps/meter', 'meters', 10).size).toBe(CHAIN_METERS.length);

    resumed.feed(chainEvents().events.slice(cut));
    const expected = uninterrupted(cut);
    expect(resumed.out).toEqual(expected);
    // … and as the layout-9 build went on from the same point.
    expect(outputDigest(resumed.out)).toBe(
      withDelta ? fixture.continuation.delta : fixture.continuation.full,
    );
    // Faults raised and cleared after the cut: the open ones were carried over.
    expect(faults(resumed.out).length).toBeGreaterThan(2);
  });
});
