/**
 * The columnar prototype's ports (`bench/columnar/column-stages.ts`, `column-rules.ts`) against the row
 * members they port, on a simulated fleet made rough (late, duplicated, dropped and shuffled readings,
 * meters silent for hours) whose zero and stuck runs of 2 h are faults: the same readings out in the same
 * order with the same fields and flags (gap filling's created ones included), the same quarantine
 * records, faults and alerts, the same state. And the check itself: a port that differs is caught.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CHAIN, checkColumnar, PORTED, type RulePair, rulePairs } from '../../bench/columnar/check.js';
import { rateOfChangeColumns, zeroMeterColumns } from '../../bench/columnar/column-rules.js';
import { type ColumnStage, fillGapsColumns } from '../../bench/columnar/column-stages.js';
import { flagBit, flagSet } from '../../bench/columnar/reading-columns.js';
import { type RuleInput, ruleInput } from '../../bench/columnar/rule-input.js';
import { READING_FLAGS } from '../../schemas/reading.js';

let input: RuleInput;
let pairs: ReturnType<typeof rulePairs>;
/** A day as simulated, not roughened: event-time ordering's buckets then come due in order. */
let smooth: RuleInput;

beforeAll(() => {
  input = ruleInput({ meters: 300, days: 3, shortFaults: true, rough: true });
  pairs = rulePairs(input.profile, input.registry);
  smooth = ruleInput({ meters: 300, days: 1, shortFaults: true });
});

/** `pair` with its column port changed by `change`. */
function wrongStage(pair: RulePair, change: (port: ColumnStage) => ColumnStage): RulePair {
  return { ...pair, columns: (store) => change(pair.columns(store) as ColumnStage) };
}

describe('columnar ports of the per-meter chain', () => {
  it.each(PORTED)('%s over columns flags, tags and keeps state as the row rule does', (name) => {
    const result = checkColumnar(input.events, input.meterKeys, [pairs[name]]);
    expect(result.mismatches).toEqual([]);
    expect(result.readings).toBeGreaterThan(50_000);
    expect(result.flagged).toBeGreaterThan(0);
    if (name !== 'rateOfChange') expect(result.tagged.faults).toBeGreaterThan(0);
  });

  it('event-time ordering over columns releases, sorts and quarantines as the row operator does', () => {
    const result = checkColumnar(input.chainEvents, input.meterKeys, [pairs.orderByEventTime]);
    expect(result.mismatches).toEqual([]);
    expect(result.readings).toBeGreaterThan(50_000);
    // The rough input reaches every path: late, and duplicates on arrival and at release.
    expect(result.quarantineReasons.late).toBeGreaterThan(0);
    expect(result.quarantineReasons['late,duplicate_timestamp']).toBeGreaterThan(0);
  });

  it('the five members as a chain match the keyed chain of the five on a smooth day', () => {
    const smoothPairs = rulePairs(smooth.profile, smooth.registry);
    const result = checkColumnar(
      smooth.chainEvents,
      smooth.meterKeys,
      CHAIN.map((name) => smoothPairs[name]),
    );
    expect(result.mismatches).toEqual([]);
    expect(result.readings).toBeGreaterThan(20_000);
  });

  it('gap filling over columns creates readings and alerts as the row operator does', () => {
    const result = checkColumnar(input.orderedEvents, input.meterKeys, [pairs.fillGaps]);
    expect(result.mismatches).toEqual([]);
    expect(result.created).toBeGreaterThan(100);
    expect(result.tagged.alerts).toBeGreaterThan(10);
  });

  it('the three rules as a chain match the keyed chain of the three', () => {
    const result = checkColumnar(
      input.events,
      input.meterKeys,
      PORTED.map((name) => pairs[name]),
    );
    expect(result.mismatches).toEqual([]);
    expect(result.tagged.faults).toBeGreaterThan(0);
    expect(result.tagged.alerts).toBeGreaterThan(0);
  });

  it('the five members as a chain match the keyed chain of the five', () => {
    const result = checkColumnar(
      input.chainEvents,
      input.meterKeys,
      CHAIN.map((name) => pairs[name]),
    );
    expect(result.mismatches).toEqual([]);
    expect(result.created).toBeGreaterThan(100);
    expect(result.tagged.quarantine).toBeGreaterThan(100);
    expect(result.tagged.faults).toBeGreaterThan(0);
  });

  it('a rule port with another threshold is caught', () => {
    const wrong: RulePair = {
      ...pairs.rateOfChange,
      columns: (store) =>
        rateOfChangeColumns(store, { ...input.profile.rateOfChange, spikeIncreasePct: 300 }),
    };
    const result = checkColumnar(input.events, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.includes('"spike"'))).toBe(true);
  });

  it('a rule port that never raises a fault is caught', () => {
    const wrong: RulePair = {
      ...pairs.zeroMeter,
      columns: (store) =>
        zeroMeterColumns(store, input.registry, { zeroMinDurationMs: Number.POSITIVE_INFINITY }),
    };
    const result = checkColumnar(input.events, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.startsWith('tag faults'))).toBe(true);
    expect(result.mismatches.some((m) => m.includes('fault_excluded'))).toBe(true);
  });

  it('an ordering port that releases a reading only once the watermark is past it is caught', () => {
    const wrong = wrongStage(pairs.orderByEventTime, (port) => ({
      ...port,
      onWatermark: (watermark, out) => port.onWatermark(watermark - 1, out),
    }));
    const result = checkColumnar(input.chainEvents, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => /readings from the rows, \d+ from the columns/.test(m))).toBe(true);
  });

  it('an ordering port that does not quarantine duplicates it releases is caught', () => {
    const wrong = wrongStage(pairs.orderByEventTime, (port) => ({
      ...port,
      onWatermark: (watermark, out) =>
        port.onWatermark(watermark, {
          tag: (tag, item) => {
            if (tag.name !== 'quarantine') out.tag(tag, item);
          },
        }),
    }));
    const result = checkColumnar(input.chainEvents, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.startsWith('tag quarantine'))).toBe(true);
  });

  it('a gap-filling port with another interpolation threshold is caught', () => {
    const wrong: RulePair = {
      ...pairs.fillGaps,
      columns: (store) =>
        fillGapsColumns(store, {
          ...input.profile.gaps,
          interpolateBelowMs: input.profile.gaps.interpolateBelowMs / 2,
        }),
    };
    const result = checkColumnar(input.orderedEvents, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.includes('"interpolated"'))).toBe(true);
    expect(result.mismatches.some((m) => m.startsWith('tag alerts'))).toBe(true);
  });

  it('a gap-filling port whose silence timers never fire is caught', () => {
    const wrong = wrongStage(pairs.fillGaps, (port) => ({ ...port, onWatermark: () => undefined }));
    const result = checkColumnar(input.orderedEvents, input.meterKeys, [wrong]);
    expect(result.mismatches.some((m) => m.startsWith('tag alerts'))).toBe(true);
    expect(result.mismatches).toContain('timers fillGaps differ');
  });

  it("column flag bits follow the schema's one flag order, every flag in a Uint32", () => {
    expect(READING_FLAGS.length).toBeLessThanOrEqual(32);
    expect(new Set(READING_FLAGS).size).toBe(READING_FLAGS.length);
    READING_FLAGS.forEach((f, i) => {
      expect(flagBit(f)).toBe(1 << i);
    });
    expect(flagSet(['spike', 'unit_converted'])).toBe(flagBit('unit_converted') | flagBit('spike'));
  });
});
