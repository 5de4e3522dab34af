import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore, taggedEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { detectLowVariance } from '../../operators/detect-low-variance.js';
import { ALERTS, FAULTS } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { FaultEvent, Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import {
  alerts,
  DAY,
  excluded,
  faults,
  HOUR,
  INTERVAL,
  readingsOut,
  run,
  series,
  status,
  T0,
} from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

const lowVariance = (st = new StateStore(), t: Parameters<typeof detectLowVariance>[1] = thresholds) =>
  detectLowVariance(st, t);

/** `n` readings alternating mean ± d: population σ = d exactly for even n, so CV = d / mean. */
function alternating(n: number, mean: number, d: number, start = T0): Reading[] {
  return series(
    Array.from({ length: n }, (_, i) => Math.round((i % 2 === 0 ? mean - d : mean + d) * 1e4) / 1e4),
    { start },
  );
}

describe('detectLowVariance at the CV boundary (0.01)', () => {
  it('CV 0.0099 over 96 readings is a fault, detected at the 96th', () => {
    const out = run(lowVariance(), [data(...alternating(96, 10, 0.099))]);
    const last = T0 + 95 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'low_variance',
        windowStart: T0,
        windowEnd: last,
        detectedAt: last,
        evidence: JSON.stringify({
          status: 'active',
          cv: 0.0099,
          meanKw: 10,
          stddevKw: 0.099,
          readings: 96,
          thresholdCv: 0.01,
        }),
      },
    ]);
    expect(alerts(out)).toEqual([
      expect.objectContaining({ severity: 'warning', kind: 'meter_fault', ts: last }),
    ]);
    expect(excluded(readingsOut(out))).toEqual([last]);
  });

  it('CV exactly 0.01 is not (strict), nor is CV 0.0101', () => {
    expect(faults(run(lowVariance(), [data(...alternating(96, 10, 0.1))]))).toEqual([]);
    expect(faults(run(lowVariance(), [data(...alternating(96, 10, 0.101))]))).toEqual([]);
  });

  it('is not judged before minWindowReadings values (95 of them)', () => {
    expect(faults(run(lowVariance(), [data(...alternating(95, 10, 0.05))]))).toEqual([]);
    expect(faults(run(lowVariance(), [data(...alternating(96, 10, 0.05))]))).toHaveLength(1);
  });
});

describe('detectLowVariance and the other rules', () => {
  it('an exactly constant window is the stuck rule’s, not low variance', () => {
    expect(faults(run(lowVariance(), [data(...series(new Array<number>(700).fill(1.2345)))]))).toEqual([]);
  });

  it('an all-zero window (μ = 0) is the zero rule’s', () => {
    expect(faults(run(lowVariance(), [data(...series(new Array<number>(700).fill(0)))]))).toEqual([]);
  });

  it('leaves out readings another detector excluded, over-limit readings, NULLs and filled rows', () => {
    const rs = alternating(106, 10, 0.05);
    for (let i = 0; i < 4; i++) addFlag(rs[i]!, 'fault_excluded');
    for (let i = 4; i < 6; i++) addFlag(rs[i]!, 'over_limit');
    Object.assign(rs[6]!, { kw: null, flags: ['MISSING_READING'] });
    Object.assign(rs[7]!, { status: 'interpolated' });
    Object.assign(rs[8]!, { status: 'missing', kw: null });
    Object.assign(rs[9]!, { status: 'missing', kw: null });
    // 106 − 10 = 96 values: judged only at the very last reading.
    const fs = faults(run(lowVariance(), [data(...rs)]));
    expect(fs.map((f) => [f.detectedAt, JSON.parse(f.evidence).readings])).toEqual([
      [T0 + 105 * INTERVAL, 96],
    ]);
  });
});

describe('detectLowVariance over the rolling window', () => {
  it('detects a flat meter once its normal days have left the 7-day window, and clears when it varies again', () => {
    const normal = series(
      Array.from(
        { length: 2 * 96 },
        (_, i) => Math.round((1 + 0.8 * Math.sin((2 * Math.PI * i) / 96)) * 1e4) / 1e4,
      ),
    );
    const flat = alternating(8 * 96, 2, 0.01, T0 + 2 * DAY);
    const recovered = series(
      Array.from({ length: 96 }, (_, i) => Math.round((2 + Math.sin((2 * Math.PI * i) / 96)) * 1e4) / 1e4),
      { start: T0 + 10 * DAY },
    );
    const out = run(lowVariance(), [data(...normal, ...flat, ...recovered)]);
    const fs = faults(out);
    expect(fs.map(status)).toEqual(['active', 'cleared']);
    const [detected, cleared] = fs as [FaultEvent, FaultEvent];
    // Detected when the last normal reading (2 days in) left the window: 7 days later, within one bucket.
    expect(detected.detectedAt).toBeGreaterThanOrEqual(T0 + 9 * DAY - 2 * HOUR);
    expect(detected.detectedAt).toBeLessThanOrEqual(T0 + 9 * DAY);
    // windowStart is the start of the window judged: 7 days before, to the bucket.
    expect(detected.windowStart).toBeGreaterThanOrEqual(detected.detectedAt - 7 * DAY);
    expect(detected.windowStart).toBeLessThanOrEqual(detected.detectedAt - 7 * DAY + 2 * HOUR);
    expect(cleared.windowStart).toBe(detected.windowStart);
    expect(cleared.windowEnd).toBeGreaterThanOrEqual(T0 + 10 * DAY - INTERVAL);
    expect(JSON.parse(cleared.evidence).clearedAt).toBe(cleared.windowEnd + INTERVAL);
    // Every reading from detection up to the clearing one is excluded, none after.
    const ex = excluded(readingsOut(out));
    expect(ex[0]).toBe(detected.detectedAt);
    expect(ex.at(-1)).toBe(cleared.windowEnd);
    expect(ex).toHaveLength((cleared.windowEnd - detected.detectedAt) / INTERVAL + 1);
  });
});

describe('detectLowVariance in event time (marbles)', () => {
  it('judges each reading against the window as of its event time', () => {
    // A 4 h window and 4 readings: small enough for marbles.
    const t = { rollingWindowMs: 4 * HOUR, lowVarianceCv: 0.01, minWindowReadings: 4 };
    testScheduler().run(({ cold, expectObservable }) => {
      const first = alternating(2, 10, 0.05);
      const second = alternating(2, 10, 0.05, T0 + 2 * INTERVAL);
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: data(...first),
        b: wm(T0 + INTERVAL),
        c: data(...second),
      });
      const flagged = alternating(2, 10, 0.05, T0 + 2 * INTERVAL);
      addFlag(flagged[1]!, 'fault_excluded');
      expectObservable(input.pipe(lowVariance(new StateStore(), t))).toBe('a-b-(fgc)-|', {
        a: data(...alternating(2, 10, 0.05)),
        b: wm(T0 + INTERVAL),
        f: taggedEvent(FAULTS, [
          expect.objectContaining({
            windowStart: T0,
            windowEnd: T0 + 3 * INTERVAL,
            detectedAt: T0 + 3 * INTERVAL,
          }),
        ]),
        g: taggedEvent(ALERTS, [expect.objectContaining({ ts: T0 + 3 * INTERVAL })]),
        c: data(...flagged),
      });
    });
  });
});

describe('detectLowVariance properties', () => {
  it('within one window, detects exactly where the CV of all values so far drops below the threshold', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 9_800, max: 10_200 }), { minLength: 1, maxLength: 150 }),
        fc.integer({ min: 2, max: 60 }),
        (units, minReadings) => {
          const kws = units.map((u) => u / 1e4);
          const got = faults(
            run(lowVariance(new StateStore(), { ...thresholds, minWindowReadings: minReadings }), [
              data(...series(kws)),
            ]),
          ).filter((f) => status(f) === 'active');
          let want: number | undefined;
          for (let i = minReadings - 1; i < kws.length && want === undefined; i++) {
            const xs = kws.slice(0, i + 1);
            const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
            const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
            // Clear of float ties: the operator computes exactly in integers.
            if (sd > 0 && sd / mean < 0.01 - 1e-12) want = i;
            if (sd > 0 && Math.abs(sd / mean - 0.01) <= 1e-12) return;
          }
          expect(got.map((f) => (f.detectedAt - T0) / INTERVAL).slice(0, 1)).toEqual(
            want === undefined ? [] : [want],
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps its state bounded: the same size after 8 days as after 30, a fraction of it after 1', () => {
    const sizes: number[] = [];
    const store = new StateStore();
    const op = lowVariance(store);
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
      .pipe(op)
      .subscribe(() => {
        const n = store.denseKeys('meters').numberOf('MTR-000001')!;
        sizes.push(store.vectors('detectLowVariance/ring', 'meters').length(n));
      });
    // The head (newest bucket, first reading), the totals and 84 buckets of [n, Σu, Σu²]: ~2 KB.
    expect(sizes[29]).toBe(2 + 3 + 84 * 3);
    // The ring grows bucket by bucket with the data: a day is 12 of the week's 84 buckets.
    expect(sizes[0]).toBeLessThan(sizes[29]! / 3);
    expect(sizes[8]).toBe(sizes[29]);
    // No keyed entry for a meter without an open fault.
    expect(store.keyed('detectLowVariance').size).toBe(0);
  });
});
