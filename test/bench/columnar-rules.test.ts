/**
 * The columnar prototype's ports (`bench/columnar/column-rules.ts`) against the row rules they port, on a
 * simulated fleet whose zero and stuck runs of 2 h are faults: same flags per reading in the same order,
 * same faults and alerts, same state. And the check itself: a port that differs is caught.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { checkColumnar, PORTED, type RulePair, rulePairs } from '../../bench/columnar/check.js';
import { rateOfChangeColumns, zeroMeterColumns } from '../../bench/columnar/column-rules.js';
import { type RuleInput, ruleInput } from '../../bench/columnar/rule-input.js';

let input: RuleInput;
let pairs: ReturnType<typeof rulePairs>;

beforeAll(() => {
  input = ruleInput({ meters: 300, days: 3, shortFaults: true });
  pairs = rulePairs(input.profile, input.registry);
});

describe('columnar ports of the per-meter rules', () => {
  it.each(PORTED)('%s over columns flags, tags and keeps state as the row rule does', (name) => {
    const result = checkColumnar(input.events, input.meterKeys, [pairs[name]]);
    expect(result.mismatches).toEqual([]);
    expect(result.readings).toBeGreaterThan(50_000);
    expect(result.flagged).toBeGreaterThan(0);
    if (name !== 'rateOfChange') expect(result.tagged.faults).toBeGreaterThan(0);
  });

  it('the three as a chain match the keyed chain of the three', () => {
    const result = checkColumnar(
      input.events,
      input.meterKeys,
      PORTED.map((name) => pairs[name]),
    );
    expect(result.mismatches).toEqual([]);
    expect(result.tagged.faults).toBeGreaterThan(0);
    expect(result.tagged.alerts).toBeGreaterThan(0);
  });

  it('a port with another threshold is caught', () => {
    const wrong: RulePair = {
      ...pairs.rateOfChange,
      columns: (store) =>
        rateOfChangeColumns(store, { ...input.profile.rateOfChange, spikeIncreasePct: 300 }),
    };
    const result = checkColumnar(input.events, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.includes('"spike"'))).toBe(true);
  });

  it('a port that never raises a fault is caught', () => {
    const wrong: RulePair = {
      ...pairs.zeroMeter,
      columns: (store) =>
        zeroMeterColumns(store, input.registry, { zeroMinDurationMs: Number.POSITIVE_INFINITY }),
    };
    const result = checkColumnar(input.events, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.startsWith('tag faults'))).toBe(true);
    expect(result.mismatches.some((m) => m.includes('fault_excluded'))).toBe(true);
  });
});
