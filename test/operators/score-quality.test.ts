import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, type Transform, taggedEvent } from '../../core/index.js';
import { QUARANTINE } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import { scoreQuality } from '../../operators/score-quality.js';
import type { Reading, ReadingFlag } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { quarantined, reading } from './fixtures.js';

const quality = defaultRuleProfile.quality;

function scored(
  op: Transform<Reading, Reading>,
  r: Reading,
): Pick<Reading, 'qualityScore' | 'qualityTier' | 'grade'> {
  const out: Reading[] = [];
  from([data(r)] as FlowEvent<Reading>[])
    .pipe(op)
    .subscribe((e) => {
      if (e.kind === 'data') out.push(...e.items);
    });
  expect(out).toHaveLength(1);
  const { qualityScore, qualityTier, grade } = out[0]!;
  return { qualityScore, qualityTier, grade };
}

const score = (partial: Partial<Reading>) => scored(scoreQuality(quality), reading(partial));

describe('scoreQuality deductions (seed defaults)', () => {
  it('a clean measured reading scores 100, premium, A', () => {
    expect(score({})).toEqual({ qualityScore: 100, qualityTier: 'premium', grade: 'A' });
  });

  it.each<[string, Partial<Reading>, number]>([
    ['unit converted −5', { flags: ['unit_converted'] }, 95],
    ['unit inferred −5', { flags: ['unit_inferred'] }, 95],
    ['converted and inferred count once', { flags: ['unit_inferred', 'unit_converted'] }, 95],
    ['an interpolated reading −10', { status: 'interpolated', flags: ['interpolated'] }, 90],
    ['one validation warning −15', { warnings: 1, flags: ['backdated'] }, 85],
    ['two validation warnings −30', { warnings: 2 }, 70],
    ['spike −20', { flags: ['spike'] }, 80],
    ['drop −20', { flags: ['drop'] }, 80],
    ['fault −30', { flags: ['fault_excluded'] }, 70],
    [
      'all together',
      { status: 'interpolated', warnings: 1, flags: ['unit_converted', 'spike', 'fault_excluded'] },
      20,
    ],
  ])('%s', (_, partial, expected) => {
    expect(score(partial).qualityScore).toBe(expected);
  });

  it('an interpolated reading with a converted unit falls out of premium', () => {
    expect(score({ status: 'interpolated', flags: ['interpolated', 'unit_converted'] })).toEqual({
      qualityScore: 85,
      qualityTier: 'standard',
      grade: 'B',
    });
  });

  it('clamps at 0', () => {
    expect(score({ warnings: 9, flags: ['fault_excluded'] })).toEqual({
      qualityScore: 0,
      qualityTier: 'quarantine',
      grade: 'F',
    });
  });

  it('a reading without a value (NULL reading, missing interval) scores 0, quarantine, F', () => {
    const worst = { qualityScore: 0, qualityTier: 'quarantine', grade: 'F' };
    expect(score({ kw: null, flags: ['MISSING_READING'] })).toEqual(worst);
    expect(score({ kw: null, status: 'missing', flags: ['missing_short'] })).toEqual(worst);
    expect(score({ kw: null, status: 'missing', flags: ['missing_extended'] })).toEqual(worst);
  });
});

describe('scoreQuality tier and grade edges', () => {
  // One point per warning makes every score reachable: 100 − warnings.
  const perPoint = scoreQuality({ ...quality, perValidationWarning: 1 });
  const at = (s: number) => scored(perPoint, reading({ warnings: 100 - s }));

  it.each<[number, Reading['qualityTier'], Reading['grade']]>([
    [100, 'premium', 'A'],
    [90, 'premium', 'A'],
    [89, 'standard', 'B'],
    [75, 'standard', 'B'],
    [74, 'standard', 'C'],
    [70, 'standard', 'C'],
    [69, 'quarantine', 'C'],
    [60, 'quarantine', 'C'],
    [59, 'quarantine', 'F'],
    [0, 'quarantine', 'F'],
  ])('score %i is %s, grade %s', (s, tier, grade) => {
    expect(at(s)).toEqual({ qualityScore: s, qualityTier: tier, grade });
  });
});

describe('scoreQuality stream behaviour', () => {
  it('scores in place and passes watermarks and tagged records through untouched', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const q = quarantined({ reasons: ['late'] });
      const input = cold<FlowEvent<Reading>>('a-b-c|', {
        a: data(reading({ warnings: 1 })),
        b: taggedEvent(QUARANTINE, [q]) as FlowEvent<Reading>,
        c: wm(5),
      });
      expectObservable(input.pipe(scoreQuality(quality))).toBe('a-b-c|', {
        a: data(reading({ warnings: 1, qualityScore: 85, qualityTier: 'standard', grade: 'B' })),
        b: taggedEvent(QUARANTINE, [q]),
        c: wm(5),
      });
    });
  });
});

describe('scoreQuality properties', () => {
  const flag = fc.constantFrom<ReadingFlag>(
    'unit_converted',
    'unit_inferred',
    'MISSING_READING',
    'interpolated',
    'spike',
    'drop',
    'backdated',
    'fault_excluded',
  );
  it('any reading scores an integer in 0–100 whose tier and grade follow the thresholds', () => {
    fc.assert(
      fc.property(
        fc.record({
          kw: fc.option(fc.double({ min: 0, max: 50, noNaN: true })),
          status: fc.constantFrom<Reading['status']>('measured', 'interpolated', 'missing'),
          warnings: fc.nat(20),
          flags: fc.uniqueArray(flag, { maxLength: 8 }),
        }),
        (partial) => {
          const { qualityScore: s, qualityTier, grade } = score(partial);
          expect(Number.isInteger(s)).toBe(true);
          expect(s).toBeGreaterThanOrEqual(0);
          expect(s).toBeLessThanOrEqual(100);
          expect(qualityTier).toBe(s >= 90 ? 'premium' : s >= 70 ? 'standard' : 'quarantine');
          expect(grade).toBe(s >= 90 ? 'A' : s >= 75 ? 'B' : s >= 60 ? 'C' : 'F');
          if (partial.kw === null || partial.status === 'missing') expect(s).toBe(0);
        },
      ),
    );
  });
});
