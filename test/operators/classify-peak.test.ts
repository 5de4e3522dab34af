import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { FlowEvent } from '../../core/index.js';
import { classifyPeak } from '../../operators/classify-peak.js';
import { defaultRuleProfile, type RuleProfile } from '../../operators/rule-profile.js';
import type { PeakClass, Reading, Season } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { reading } from './fixtures.js';

const peaks = defaultRuleProfile.peaks;

function classify(
  ts: number,
  thresholds: RuleProfile['peaks'] = peaks,
): { peakClass: PeakClass; season: Season } {
  const out: Reading[] = [];
  from([data(reading({ ts }))] as FlowEvent<Reading>[])
    .pipe(classifyPeak(thresholds))
    .subscribe((e) => {
      if (e.kind === 'data') out.push(...e.items);
    });
  return { peakClass: out[0]!.peakClass, season: out[0]!.season };
}

const utc = (iso: string) => Date.parse(`${iso}Z`);

describe('classifyPeak tariff periods (UTC)', () => {
  // 2024-03-04 is a Monday, 2024-03-08 a Friday, 2024-03-09 a Saturday, 2024-03-10 a Sunday.
  it.each<[string, PeakClass]>([
    ['2024-03-04T16:59:59.999', 'standard'],
    ['2024-03-04T17:00:00', 'peak'],
    ['2024-03-04T20:45:00', 'peak'],
    ['2024-03-04T20:59:00', 'peak'],
    ['2024-03-04T21:00:00', 'standard'],
    ['2024-03-04T22:59:00', 'standard'],
    ['2024-03-04T23:00:00', 'off_peak'],
    ['2024-03-05T00:00:00', 'off_peak'],
    ['2024-03-05T05:59:00', 'off_peak'],
    ['2024-03-05T06:00:00', 'standard'],
    ['2024-03-05T12:00:00', 'standard'],
    ['2024-03-08T20:59:00', 'peak'],
    ['2024-03-09T17:00:00', 'standard'],
    ['2024-03-09T20:59:00', 'standard'],
    ['2024-03-09T23:00:00', 'off_peak'],
    ['2024-03-10T18:00:00', 'standard'],
    ['2024-03-10T05:59:00', 'off_peak'],
  ])('%s is %s', (iso, expected) => {
    expect(classify(utc(iso)).peakClass).toBe(expected);
  });
});

describe('classifyPeak in local time', () => {
  it('shifts the hour by the profile offset', () => {
    const cet = { ...peaks, timeZoneOffsetMinutes: 60 };
    expect(classify(utc('2024-03-04T15:59:00'), cet).peakClass).toBe('standard');
    expect(classify(utc('2024-03-04T16:00:00'), cet).peakClass).toBe('peak');
    expect(classify(utc('2024-03-04T19:59:00'), cet).peakClass).toBe('peak');
    expect(classify(utc('2024-03-04T20:00:00'), cet).peakClass).toBe('standard');
    expect(classify(utc('2024-03-04T22:00:00'), cet).peakClass).toBe('off_peak');
  });

  it('judges the weekday in local time: Monday 01:00 UTC is Sunday 17:00 at UTC−8', () => {
    const pst = { ...peaks, timeZoneOffsetMinutes: -480 };
    expect(classify(utc('2024-03-04T01:00:00')).peakClass).toBe('off_peak');
    expect(classify(utc('2024-03-04T01:00:00'), pst).peakClass).toBe('standard');
    expect(classify(utc('2024-03-05T01:00:00'), pst).peakClass).toBe('peak');
  });

  it('takes the season from the local date', () => {
    const east = { ...peaks, timeZoneOffsetMinutes: 120 };
    expect(classify(utc('2024-02-29T21:59:00'), east).season).toBe('winter');
    expect(classify(utc('2024-02-29T22:00:00'), east).season).toBe('spring');
  });
});

describe('classifyPeak seasons', () => {
  it.each<[string, Season]>([
    ['2024-01-01T00:00:00', 'winter'],
    ['2024-02-29T23:59:59.999', 'winter'],
    ['2024-03-01T00:00:00', 'spring'],
    ['2024-05-31T23:59:00', 'spring'],
    ['2024-06-01T00:00:00', 'summer'],
    ['2024-08-31T23:59:00', 'summer'],
    ['2024-09-01T00:00:00', 'fall'],
    ['2024-11-30T23:59:00', 'fall'],
    ['2024-12-01T00:00:00', 'winter'],
    ['2023-12-31T23:59:00', 'winter'],
  ])('%s is %s', (iso, expected) => {
    expect(classify(utc(iso)).season).toBe(expected);
  });
});

describe('classifyPeak stream behaviour', () => {
  it('classifies every reading of a batch and passes watermarks through', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const monday17 = utc('2024-03-04T17:00:00');
      const input = cold<FlowEvent<Reading>>('a-b|', { a: data(reading({ ts: monday17 })), b: wm(monday17) });
      expectObservable(input.pipe(classifyPeak(peaks))).toBe('a-b|', {
        a: data(reading({ ts: monday17, peakClass: 'peak', season: 'spring' })),
        b: wm(monday17),
      });
    });
  });
});

describe('classifyPeak properties', () => {
  const seasonOfMonth: Season[] = [
    'winter',
    'winter',
    'spring',
    'spring',
    'spring',
    'summer',
    'summer',
    'summer',
    'fall',
    'fall',
    'fall',
    'winter',
  ];
  it('agrees with a Date-based reading of the rules for any instant and offset', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2100, 0, 1) }),
        fc.integer({ min: -720, max: 840 }),
        (ts, offset) => {
          const local = new Date(ts + offset * 60_000);
          const hour = local.getUTCHours();
          const weekday = local.getUTCDay() >= 1 && local.getUTCDay() <= 5;
          const expected: PeakClass =
            weekday && hour >= 17 && hour < 21 ? 'peak' : hour >= 23 || hour < 6 ? 'off_peak' : 'standard';
          expect(classify(ts, { ...peaks, timeZoneOffsetMinutes: offset })).toEqual({
            peakClass: expected,
            season: seasonOfMonth[local.getUTCMonth()],
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});
