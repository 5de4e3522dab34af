import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore } from '../../core/index.js';
import { addFlag, NO_FLAGS } from '../../operators/add-flag.js';
import { detectRateOfChange } from '../../operators/detect-rate-of-change.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { INTERVAL, reading, readingsOut, runFlow, runResumed, series, T0 } from './fixtures.js';

const thresholds = defaultRuleProfile.rateOfChange;

function run(events: FlowEvent<Reading>[], t = thresholds): Reading[] {
  const out: Reading[] = [];
  from(events)
    .pipe(detectRateOfChange(new StateStore(), t))
    .subscribe((e) => {
      if (e.kind === 'data') out.push(...e.items);
    });
  return out;
}

/** Flags of the second reading after a first one of `prev` kW. */
const flagsAfter = (prev: number, cur: number): readonly string[] =>
  run([data(...series([prev, cur]))])[1]!.flags;

describe('detectRateOfChange thresholds (strict: "> 500 %", "> 90 %")', () => {
  it.each<[string, number, number, string[]]>([
    ['500 % increase exactly is not a spike', 1, 6, []],
    ['just above 500 % is a spike', 1, 6.0001, ['spike']],
    ['just below 500 %', 1, 5.9999, []],
    ['500 % exactly where floating point would tip (0.3 → 1.8)', 0.3, 1.8, []],
    ['just above 500 % of 0.3', 0.3, 1.8001, ['spike']],
    ['90 % decrease exactly is not a drop', 1, 0.1, []],
    ['just above 90 % is a drop', 1, 0.0999, ['drop']],
    ['just below 90 %', 1, 0.1001, []],
    ['90 % exactly where floating point would tip (3 → 0.3)', 3, 0.3, []],
    ['a fall to zero is a drop', 2, 0, ['drop']],
    ['below the minimum base nothing is judged', 0.0499, 5, []],
    ['at the minimum base it is judged', 0.05, 0.3001, ['spike']],
  ])('%s', (_, prev, cur, flags) => {
    expect(flagsAfter(prev, cur)).toEqual(flags);
  });
});

describe('detectRateOfChange previous value', () => {
  it('flags readings that share the frozen empty flags of parsing without writing into them', () => {
    const rs = series([1, 7, 0.5]).map((r) => ({ ...r, flags: NO_FLAGS }));
    expect(run([data(...rs)]).map((r) => r.flags)).toEqual([[], ['spike'], ['drop']]);
    expect(NO_FLAGS).toEqual([]);
  });

  it('is the last measured reading with a value: interpolated, missing and NULL rows are skipped', () => {
    const [a, b, c, d, e] = series([1, 9, null, null, 8]);
    b!.status = 'interpolated';
    c!.status = 'missing';
    c!.flags = ['missing_short'];
    const out = run([data(a!, b!, c!, d!, e!)]);
    expect(out.map((r) => r.flags)).toEqual([[], [], ['missing_short'], ['MISSING_READING'], ['spike']]);
  });

  it('skips a reading over the physical limit: it is quarantined later and never stored', () => {
    const [a, b, c] = series([2, 25, 2]);
    addFlag(b!, 'over_limit');
    expect(run([data(a!, b!, c!)]).map((r) => r.flags)).toEqual([[], ['over_limit'], []]);
  });

  it('is kept per meter, across batches', () => {
    const m1 = series([1, 7], { meterId: 'M1' });
    const m2 = series([10, 0.5], { meterId: 'M2' });
    const out = run([data(m1[0]!, m2[0]!), wm(T0), data(m2[1]!, m1[1]!)]);
    expect(out.map((r) => [r.meterId, r.flags])).toEqual([
      ['M1', []],
      ['M2', []],
      ['M2', ['drop']],
      ['M1', ['spike']],
    ]);
  });

  it('a flagged reading becomes the base for the next one', () => {
    expect(run([data(...series([1, 7, 7.5, 0.5]))]).map((r) => r.flags)).toEqual([
      [],
      ['spike'],
      [],
      ['drop'],
    ]);
  });

  it('uses the profile thresholds', () => {
    const lax = { spikeIncreasePct: 1000, dropDecreasePct: 99, minBaseKw: 0 };
    expect(run([data(...series([1, 7, 0.07]))], lax).map((r) => r.flags)).toEqual([[], [], []]);
  });
});

describe('detectRateOfChange stream behaviour', () => {
  it('emits each batch as it comes, flags in place, and passes watermarks through', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const [a, b] = series([1, 10]);
      const input = cold<FlowEvent<Reading>>('a-b-c|', { a: data(a!), b: wm(T0 + INTERVAL), c: data(b!) });
      expectObservable(input.pipe(detectRateOfChange(new StateStore(), thresholds))).toBe('a-b-c|', {
        a: data(reading()),
        b: wm(T0 + INTERVAL),
        c: data(reading({ ts: T0 + INTERVAL, kw: 10, rawValue: '10', flags: ['spike'] })),
      });
    });
  });
});

describe('detectRateOfChange properties', () => {
  it('flags exactly the readings whose ratio to the previous measured value crosses a threshold', () => {
    const kw = fc.integer({ min: 0, max: 200_000 }).map((n) => n / 10_000);
    fc.assert(
      fc.property(fc.array(kw, { minLength: 2, maxLength: 40 }), (values) => {
        const out = run([data(...series(values))]);
        for (let i = 1; i < values.length; i++) {
          // Integer arithmetic on 0.0001 kW units as the oracle: cur > 6·prev, cur < 0.1·prev.
          const p = Math.round(values[i - 1]! * 10_000);
          const c = Math.round(values[i]! * 10_000);
          const expected = p < 500 ? [] : c > 6 * p ? ['spike'] : c * 10 < p ? ['drop'] : [];
          expect(out[i]!.flags).toEqual(expected);
        }
      }),
    );
  });
});

describe('detectRateOfChange state in typed rows', () => {
  it('resumes from a binary checkpoint as an uninterrupted run: the base survives, across NULLs and rows that are not measured', () => {
    const events = (): FlowEvent<Reading>[] => {
      const rs = series([1, 6.5, null, 0.5, 0.04, 3.1, 0.2, 0.01, 2]);
      rs[4]!.status = 'interpolated';
      addFlag(rs[6]!, 'over_limit');
      return rs.map((r) => data(r));
    };
    const op = (store: StateStore) => detectRateOfChange(store, thresholds);
    const whole = runFlow(op(new StateStore()), events()).events;
    expect(readingsOut(whole).map((r) => r.flags.filter((f) => f === 'spike' || f === 'drop'))).toEqual([
      [],
      ['spike'],
      [],
      ['drop'],
      [],
      ['spike'],
      [],
      ['drop'],
      [], // its base is 0.01 kW, below the minimum: not the over-limit 0.2 before it
    ]);
    for (let cut = 1; cut < 9; cut++) expect(runResumed(op, events, cut)).toEqual(whole);
    const store = new StateStore();
    runFlow(op(store), events());
    expect(store.keyed('detectRateOfChange').size).toBe(0);
    expect(store.rows('detectRateOfChange/base', 'meters', 1).size).toBe(1);
  });
});
