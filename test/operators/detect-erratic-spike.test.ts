import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore, taggedEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { detectErraticSpike } from '../../operators/detect-erratic-spike.js';
import { ALERTS, FAULTS } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { DAY, excluded, faults, HOUR, INTERVAL, readingsOut, run, series, T0, tagged } from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

const spikes = (st = new StateStore(), t: Parameters<typeof detectErraticSpike>[1] = thresholds) =>
  detectErraticSpike(st, t);

/** 96 readings alternating 1 and 3 kW: mean 2, σ 1 exactly, so mean + 4σ = 6 kW. */
const baseline = (n = 96) => Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 3));

describe('detectErraticSpike at mean + 4σ', () => {
  it('a reading exactly at mean + 4σ is not a spike; 0.0001 kW above is', () => {
    expect(faults(run(spikes(), [data(...series([...baseline(), 6]))]))).toEqual([]);
    const out = run(spikes(), [data(...series([...baseline(), 6.0001]))]);
    const at = T0 + 96 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'erratic_spike',
        windowStart: at,
        windowEnd: at,
        detectedAt: at,
        evidence: JSON.stringify({
          status: 'active',
          kw: 6.0001,
          meanKw: 2,
          stddevKw: 1,
          sigmas: 4,
          readings: 96,
          thresholdSigmas: 4,
        }),
      },
    ]);
    expect(tagged(out, ALERTS.name)).toEqual([
      expect.objectContaining({ severity: 'warning', kind: 'meter_fault', ts: at }),
    ]);
    expect(excluded(readingsOut(out))).toEqual([at]);
  });

  it('needs minWindowReadings preceding values: after 95 nothing is judged', () => {
    expect(faults(run(spikes(), [data(...series([...baseline(95), 50]))]))).toEqual([]);
  });

  it('is a point fault: the readings after it are not excluded, and nothing clears', () => {
    const out = run(spikes(), [data(...series([...baseline(), 12, 1, 3, 1]))]);
    expect(faults(out)).toHaveLength(1);
    expect(excluded(readingsOut(out))).toEqual([T0 + 96 * INTERVAL]);
  });

  it('counts a spike in the window like any reading; the next spikes of an erratic meter still stand out', () => {
    const out = run(spikes(), [data(...series([...baseline(), 12, 1, 12, 3, 12]))]);
    expect(faults(out).map((f) => (f.detectedAt - T0) / INTERVAL)).toEqual([96, 98, 100]);
  });
});

describe('detectErraticSpike and the other rules', () => {
  it('does not judge against an exactly constant window (a stuck meter before its detection)', () => {
    expect(faults(run(spikes(), [data(...series([...new Array<number>(100).fill(2), 2.5]))]))).toEqual([]);
  });

  it('leaves over-limit readings to the overload rule', () => {
    const rs = series([...baseline(), 25, 25, 9]);
    addFlag(rs[96]!, 'over_limit');
    addFlag(rs[97]!, 'over_limit');
    // The window is untouched: 9 kW is judged against the baseline (limit 6 kW).
    expect(faults(run(spikes(), [data(...rs)])).map((f) => (f.detectedAt - T0) / INTERVAL)).toEqual([98]);
  });

  it('skips readings another detector excluded and starts a fresh window after that fault', () => {
    // The baseline (limit 6 kW), then a stuck value for a day, caught by the stuck rule at its 96th reading.
    const kws = [...baseline(), ...new Array<number>(100).fill(2), 5, ...baseline(95), 9];
    const rs = series(kws);
    for (let i = 96 + 95; i < 96 + 100; i++) addFlag(rs[i]!, 'fault_excluded');
    // Against the old window (baseline + 95 stuck readings: mean 2, σ 0.71) 5 kW would be a spike; the
    // window was discarded, so it starts the new one, and 9 kW is judged once 96 readings are in.
    const stale = [...baseline(), ...new Array<number>(95).fill(2)];
    const mean = stale.reduce((a, b) => a + b, 0) / stale.length;
    const sd = Math.sqrt(stale.reduce((a, b) => a + (b - mean) ** 2, 0) / stale.length);
    expect(5).toBeGreaterThan(mean + 4 * sd);
    expect(faults(run(spikes(), [data(...rs)])).map((f) => (f.detectedAt - T0) / INTERVAL)).toEqual([292]);
  });

  it('leaves exact zeros to the zero rule: a dead spell does not make the next normal peak a spike', () => {
    const normal = Array.from(
      { length: 96 },
      (_, i) => Math.round((1 + 0.8 * Math.sin((2 * Math.PI * i) / 96)) * 1e4) / 1e4,
    );
    const kws = [...normal, ...new Array<number>(500).fill(0), 2];
    // Counting the zeros, 2 kW would be above mean + 4σ (0.16 + 4 × 0.43 kW) …
    const window = kws.slice(0, -1);
    const mean = window.reduce((a, b) => a + b, 0) / window.length;
    const sd = Math.sqrt(window.reduce((a, b) => a + (b - mean) ** 2, 0) / window.length);
    expect(2).toBeGreaterThan(mean + 4 * sd);
    // … but against the meter's real readings (mean 1, σ 0.57) it is an ordinary peak.
    expect(faults(run(spikes(), [data(...series(kws))]))).toEqual([]);
  });

  it('ignores interpolated, missing and NULL rows', () => {
    const rs = series([...baseline(), 9, null, 9]);
    rs[96]!.status = 'interpolated';
    Object.assign(rs[98]!, { status: 'missing' });
    rs[98]!.kw = null;
    expect(faults(run(spikes(), [data(...rs)]))).toEqual([]);
  });

  it('forgets values older than the window', () => {
    // A calm first week (σ ≈ 0.1), then a week of wide swings: 3.5 kW is a spike only against the calm one.
    const calm = Array.from({ length: 7 * 96 }, (_, i) => (i % 2 === 0 ? 1.9 : 2.1));
    const wide = Array.from({ length: 7 * 96 }, (_, i) => (i % 2 === 0 ? 1 : 3));
    const early = faults(run(spikes(), [data(...series([...calm, 3.5]))]));
    expect(early).toHaveLength(1);
    const late = faults(run(spikes(), [data(...series([...calm, ...wide, 3.5]))]));
    // The swings were spikes against the calm week at first; the final 3.5 kW is judged against the wide one.
    expect(late.length).toBeGreaterThan(0);
    expect(late.filter((f) => f.detectedAt === T0 + 14 * DAY)).toEqual([]);
  });
});

describe('detectErraticSpike in event time (marbles)', () => {
  it('judges a reading against the readings before it, across batches', () => {
    const t = { rollingWindowMs: 2 * HOUR, spikeSigmas: 4, minWindowReadings: 4 };
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: data(...series([1, 3, 1, 3])),
        b: wm(T0 + 3 * INTERVAL),
        c: data(...series([6, 11], { start: T0 + 4 * INTERVAL })),
      });
      const c = series([6, 11], { start: T0 + 4 * INTERVAL });
      addFlag(c[1]!, 'fault_excluded');
      expectObservable(input.pipe(spikes(new StateStore(), t))).toBe('a-b-(fgc)-|', {
        a: data(...series([1, 3, 1, 3])),
        b: wm(T0 + 3 * INTERVAL),
        // 6 is exactly mean + 4σ of 1, 3, 1, 3: not a spike, it joins the window (mean 2.8, σ 1.83, limit 10.13)
        // and 11 is one.
        f: taggedEvent(FAULTS, [expect.objectContaining({ detectedAt: T0 + 5 * INTERVAL })]),
        g: taggedEvent(ALERTS, [expect.objectContaining({ ts: T0 + 5 * INTERVAL })]),
        c: data(...c),
      });
    });
  });
});

describe('detectErraticSpike properties', () => {
  it('within one window, flags exactly the readings a direct reading of the rule flags', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(fc.integer({ min: 5_000, max: 15_000 }), fc.integer({ min: 15_000, max: 80_000 })),
          {
            minLength: 1,
            maxLength: 200,
          },
        ),
        fc.integer({ min: 2, max: 40 }),
        (units, minReadings) => {
          const kws = units.map((u) => u / 1e4);
          const got = faults(
            run(spikes(new StateStore(), { ...thresholds, minWindowReadings: minReadings }), [
              data(...series(kws)),
            ]),
          ).map((f) => (f.detectedAt - T0) / INTERVAL);
          const window: number[] = [];
          const want: number[] = [];
          for (let i = 0; i < kws.length; i++) {
            const v = kws[i]!;
            if (window.length >= minReadings) {
              const mean = window.reduce((a, b) => a + b, 0) / window.length;
              const sd = Math.sqrt(window.reduce((a, b) => a + (b - mean) ** 2, 0) / window.length);
              const limit = mean + 4 * sd;
              if (sd > 0 && Math.abs(v - limit) < 1e-9) return; // a float tie: the operator is exact
              if (sd > 0 && v > limit) want.push(i);
            }
            window.push(v);
          }
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps its state bounded: the same size after 8 days as after 30, a fraction of it after 1', () => {
    const store = new StateStore();
    const sizes: number[] = [];
    const input = Array.from({ length: 30 }, (_, d) =>
      data(
        ...series(
          Array.from(
            { length: 96 },
            (_, i) => Math.round((1 + 0.9 * Math.sin((2 * Math.PI * i) / 96)) * 1e4) / 1e4,
          ),
          { start: T0 + d * DAY },
        ),
      ),
    );
    from(input)
      .pipe(spikes(store))
      .subscribe(() =>
        sizes.push(JSON.stringify(store.keyed('detectErraticSpike').get('MTR-000001')).length),
      );
    expect(sizes[29]).toBeLessThan(2_500);
    // The ring grows bucket by bucket with the data: a day is 12 of the week's 84 buckets.
    expect(sizes[0]).toBeLessThan(sizes[29]! / 3);
    expect(Math.abs(sizes[29]! - sizes[8]!)).toBeLessThan(100);
  });
});
