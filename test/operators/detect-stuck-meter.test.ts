import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore, taggedEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { detectStuckMeter } from '../../operators/detect-stuck-meter.js';
import { ALERTS, FAULTS } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Alert, FaultEvent, Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import {
  alerts,
  DAY,
  excluded,
  faults,
  HOUR,
  INTERVAL,
  reading,
  readingsOut,
  run,
  runResumed,
  series,
  T0,
} from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

const repeat = (kw: number, n: number) => new Array<number>(n).fill(kw);
const stuck = (st = new StateStore(), t: Parameters<typeof detectStuckMeter>[1] = thresholds) =>
  detectStuckMeter(st, t);

describe('detectStuckMeter at the 24 h boundary', () => {
  it('the same value for 24 h − 1 interval (95 readings) is not a fault', () => {
    const out = run(stuck(), [data(...series(repeat(1.2345, 95)))]);
    expect(faults(out)).toEqual([]);
  });

  it('the same value for exactly 24 h (96 readings) is detected at the 96th', () => {
    const out = run(stuck(), [data(...series(repeat(1.2345, 96)))]);
    const last = T0 + 95 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'stuck',
        windowStart: T0,
        windowEnd: last,
        detectedAt: last,
        evidence: JSON.stringify({
          status: 'active',
          valueKw: 1.2345,
          toleranceKw: 0,
          durationHours: 24,
          readings: 96,
          thresholdHours: 24,
        }),
      },
    ]);
    expect(alerts(out)).toEqual([
      expect.objectContaining({ severity: 'warning', kind: 'meter_fault', meterId: 'MTR-000001', ts: last }),
    ]);
    expect(excluded(readingsOut(out))).toEqual([last]);
  });

  it('one value off by 0.0001 kW in the middle restarts the run (tolerance 0)', () => {
    const kws = [...repeat(1.2345, 50), 1.2346, ...repeat(1.2345, 90)];
    expect(faults(run(stuck(), [data(...series(kws))]))).toEqual([]);
  });

  it('clears at the first different value, which starts a new run', () => {
    const kws = [...repeat(2, 100), 3, ...repeat(3, 95)];
    const out = run(stuck(), [data(...series(kws))]);
    const fs = faults(out);
    expect(fs.map((f) => [f.windowStart, f.windowEnd, JSON.parse(f.evidence).status])).toEqual([
      [T0, T0 + 95 * INTERVAL, 'active'],
      [T0, T0 + 99 * INTERVAL, 'cleared'],
      // The new run of 3 kW began at the clearing reading: 96 readings = 24 h.
      [T0 + 100 * INTERVAL, T0 + 195 * INTERVAL, 'active'],
    ]);
    expect(excluded(readingsOut(out))).toEqual([
      ...Array.from({ length: 5 }, (_, i) => T0 + (95 + i) * INTERVAL),
      T0 + 195 * INTERVAL,
    ]);
  });

  it('with a tolerance, judges against the run first value, so a slow drift is not stuck', () => {
    const t = { stuckMinDurationMs: DAY, stuckToleranceKw: 0.01 };
    const within = Array.from({ length: 96 }, (_, i) => (i % 2 === 0 ? 1.5 : 1.51));
    expect(faults(run(stuck(new StateStore(), t), [data(...series(within))]))).toHaveLength(1);
    // +0.001 kW per reading: neighbours always within 0.01, but the 12th is 0.011 from the first.
    const drift = Array.from({ length: 200 }, (_, i) => Math.round((1.5 + i * 0.001) * 1e4) / 1e4);
    expect(faults(run(stuck(new StateStore(), t), [data(...series(drift))]))).toEqual([]);
  });
});

describe('detectStuckMeter and the other rules', () => {
  it('never reports exact zeros (the zero rule does), and a zero ends a stuck run', () => {
    expect(faults(run(stuck(), [data(...series(repeat(0, 7 * 96)))]))).toEqual([]);
    const out = run(stuck(), [data(...series([...repeat(0.8, 100), 0, ...repeat(0.8, 95)]))]);
    expect(faults(out).map((f) => JSON.parse(f.evidence).status)).toEqual(['active', 'cleared']);
  });

  it('bridges missing rows, interpolated rows, NULL readings and over-limit readings', () => {
    const rs = series([...repeat(1.1, 40), null, ...repeat(1.1, 10), 25, ...repeat(1.1, 44)]);
    rs[41]!.status = 'missing';
    rs[42]!.status = 'interpolated';
    rs[42]!.kw = 1.3;
    addFlag(rs[51]!, 'over_limit');
    // 92 measured 1.1 kW among 4 bridged rows: 96 rows from the first to the last = 24 h.
    expect(rs).toHaveLength(96);
    const out = run(stuck(), [data(...rs)]);
    expect(faults(out)).toHaveLength(1);
    expect(JSON.parse(faults(out)[0]!.evidence)).toMatchObject({ durationHours: 24, readings: 92 });
  });
});

describe('detectStuckMeter in event time (marbles)', () => {
  it('detects in the batch that reaches the duration and passes watermarks through', () => {
    const small = { stuckMinDurationMs: HOUR, stuckToleranceKw: 0 };
    const at = (kws: number[], from: number) => series(kws, { start: T0 + from * INTERVAL });
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: data(...at([4, 4, 4], 0)),
        b: wm(T0 + 2 * INTERVAL),
        c: data(...at([4, 5], 3)),
      });
      const c = at([4, 5], 3);
      addFlag(c[0]!, 'fault_excluded');
      const detected: FaultEvent = {
        meterId: 'MTR-000001',
        faultType: 'stuck',
        windowStart: T0,
        windowEnd: T0 + 3 * INTERVAL,
        detectedAt: T0 + 3 * INTERVAL,
        evidence: JSON.stringify({
          status: 'active',
          valueKw: 4,
          toleranceKw: 0,
          durationHours: 1,
          readings: 4,
          thresholdHours: 1,
        }),
      };
      const cleared = {
        ...detected,
        evidence: JSON.stringify({
          ...JSON.parse(detected.evidence),
          status: 'cleared',
          clearedAt: T0 + 4 * INTERVAL,
          cleared: { durationHours: 1, readings: 4, kw: 5 },
        }),
      };
      expectObservable(input.pipe(stuck(new StateStore(), small))).toBe('a-b-(fgc)-|', {
        a: data(...at([4, 4, 4], 0)),
        b: wm(T0 + 2 * INTERVAL),
        f: taggedEvent(FAULTS, [detected, cleared]),
        g: taggedEvent(ALERTS, [
          {
            severity: 'warning',
            kind: 'meter_fault',
            meterId: 'MTR-000001',
            ts: T0 + 3 * INTERVAL,
            message: 'stuck fault on MTR-000001: 4 kW repeated for 1 h',
          } satisfies Alert,
        ]),
        c: data(...c),
      });
    });
  });
});

describe('detectStuckMeter properties', () => {
  it('reports exactly the runs a direct reading of the rule finds', () => {
    const value = fc.constantFrom<number | null>(1, 1, 1, 1, 2, 0, null);
    fc.assert(
      fc.property(
        fc.array(value, { maxLength: 300 }),
        fc.integer({ min: 2, max: 30 }),
        (kws, minReadings) => {
          const rs = kws.map((kw, i) => reading({ ts: T0 + i * INTERVAL, kw }));
          const got = faults(
            run(
              stuck(new StateStore(), { stuckMinDurationMs: minReadings * INTERVAL, stuckToleranceKw: 0 }),
              [data(...rs)],
            ),
          );
          // Reference: maximal runs of one non-zero value (nulls bridged); detected at the run's
          // `minReadings`-th row counted from its first reading (ts span + one interval).
          const want: [number, number, string][] = [];
          let start = -1;
          let v = Number.NaN;
          let last = -1;
          let detectedAt = -1;
          for (let i = 0; i <= kws.length; i++) {
            const kw = kws[i];
            if (kw === null) continue;
            if (kw !== undefined && kw !== 0 && kw === v) {
              last = i;
              if (detectedAt < 0 && i - start + 1 >= minReadings) {
                detectedAt = i;
                want.push([start, i, 'active']);
              }
              continue;
            }
            if (detectedAt >= 0 && kw !== undefined) want.push([start, last, 'cleared']);
            detectedAt = -1;
            if (kw === undefined || kw === 0) {
              start = -1;
              v = Number.NaN;
            } else {
              start = i;
              last = i;
              v = kw;
            }
          }
          expect(
            got.map((f) => [
              (f.windowStart - T0) / INTERVAL,
              (f.windowEnd - T0) / INTERVAL,
              JSON.parse(f.evidence).status,
            ]),
          ).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a constant-size state however long the meter runs', () => {
    const store = new StateStore();
    const days = Array.from({ length: 30 }, (_, d) =>
      data(
        ...series(
          Array.from({ length: 96 }, (_, i) => 1 + (i % 7) / 10),
          { start: T0 + d * DAY },
        ),
      ),
    );
    run(stuck(store), days);
    // A row of six numbers, and no keyed entry while no fault is open.
    expect(store.rows('detectStuckMeter/meter', 'meters', 6).size).toBe(1);
    expect(store.keyed('detectStuckMeter').size).toBe(0);
  });

  it('resumes from a binary checkpoint mid-run and with a fault open as an uninterrupted run', () => {
    // 30 h of 1.2345 bridging a NULL, a zero ending it, a new run, then a value off it.
    const kws = [0.5, ...repeat(1.2345, 60), null, ...repeat(1.2345, 60), 0, ...repeat(0.7, 100), 0.9];
    const events = (): FlowEvent<Reading>[] => series(kws).map((r) => data(r));
    const whole = run(stuck(), events());
    expect(faults(whole).map((f) => JSON.parse(f.evidence).status)).toEqual([
      'active',
      'cleared',
      'active',
      'cleared',
    ]);
    for (const cut of [1, 30, 61, 100, 123, 200, kws.length - 1])
      expect(runResumed((st) => stuck(st), events, cut)).toEqual(whole);
  });
});
