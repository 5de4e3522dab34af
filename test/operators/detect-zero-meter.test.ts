import fc from 'fast-check';
import { BehaviorSubject, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, SideInput, StateStore, taggedEvent } from '../../core/index.js';
import { detectZeroMeter } from '../../operators/detect-zero-meter.js';
import { ALERTS, FAULTS, type MeterRegistry } from '../../operators/outputs.js';
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
  reading,
  readingsOut,
  registry,
  registryOf,
  run,
  runResumed,
  series,
  T0,
} from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

const zeros = (n: number) => new Array<number>(n).fill(0);

describe('detectZeroMeter at the 48 h boundary', () => {
  it('48 h − 1 interval of zeros (191 readings) is not a fault', () => {
    const out = run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...series(zeros(191)))]);
    expect(faults(out)).toEqual([]);
    expect(excluded(readingsOut(out))).toEqual([]);
    expect(readingsOut(out)).toHaveLength(191);
  });

  it('exactly 48 h of zeros (192 readings) is detected at the 192nd reading, which is excluded', () => {
    const out = run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...series(zeros(192)))]);
    const last = T0 + 191 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'zero',
        windowStart: T0,
        windowEnd: last,
        detectedAt: last,
        evidence: expect.any(String),
      },
    ]);
    expect(JSON.parse(faults(out)[0]!.evidence)).toEqual({
      status: 'active',
      durationHours: 48,
      zeroReadings: 192,
      thresholdHours: 48,
    });
    expect(alerts(out)).toEqual([
      {
        severity: 'warning',
        kind: 'meter_fault',
        meterId: 'MTR-000001',
        ts: last,
        message: expect.stringContaining('0 kW for 48 h'),
      },
    ]);
    expect(excluded(readingsOut(out))).toEqual([last]);
  });

  it('clears at the first measured non-zero value, replacing the row with the final window end', () => {
    const rs = series([...zeros(200), 1.25, 1.5]);
    const out = run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...rs)]);
    const fs = faults(out);
    expect(fs).toHaveLength(2);
    expect(fs[1]).toMatchObject({
      faultType: 'zero',
      windowStart: T0,
      windowEnd: T0 + 199 * INTERVAL,
      detectedAt: T0 + 191 * INTERVAL,
    });
    expect(JSON.parse(fs[1]!.evidence)).toMatchObject({ status: 'cleared', clearedAt: T0 + 200 * INTERVAL });
    // Only one alert: clearing does not alert.
    expect(alerts(out)).toHaveLength(1);
    // Excluded from the detecting reading to the last zero; the clearing reading is clean again.
    expect(excluded(readingsOut(out))).toEqual(
      Array.from({ length: 9 }, (_, i) => T0 + (191 + i) * INTERVAL),
    );
  });

  it('honours the 24 h alternative of B3.2 when the profile asks for it', () => {
    const op = detectZeroMeter(new StateStore(), registry(), { zeroMinDurationMs: 24 * HOUR });
    expect(faults(run(op, [data(...series(zeros(95)))]))).toEqual([]);
    const op2 = detectZeroMeter(new StateStore(), registry(), { zeroMinDurationMs: 24 * HOUR });
    expect(faults(run(op2, [data(...series(zeros(96)))]))).toHaveLength(1);
  });

  it('never reports a vacant meter, and a meter becoming vacant clears its fault', () => {
    const vacant = run(detectZeroMeter(new StateStore(), registry({ vacant: true }), thresholds), [
      data(...series(zeros(7 * 96))),
    ]);
    expect(faults(vacant)).toEqual([]);
    expect(excluded(readingsOut(vacant))).toEqual([]);

    const registries = new BehaviorSubject<MeterRegistry>(registryOf({ vacant: false }));
    const side = new SideInput<MeterRegistry>('registry', registries);
    side.connect((err) => {
      throw err;
    });
    const input = new Subject<FlowEvent<Reading>>();
    const out: FlowEvent<Reading>[] = [];
    input.pipe(detectZeroMeter(new StateStore(), side, thresholds)).subscribe((e) => out.push(e));
    const rs = series(zeros(200));
    input.next(data(...rs.slice(0, 195)));
    registries.next(registryOf({ vacant: true }));
    input.next(data(...rs.slice(195)));
    expect(faults(out).map((f) => JSON.parse(f.evidence).status)).toEqual(['active', 'cleared']);
    expect(faults(out)[1]).toMatchObject({ windowEnd: T0 + 194 * INTERVAL });
  });

  it('is per meter: another meter reporting power does not break the run', () => {
    const a = series(zeros(192), { meterId: 'MTR-000001' });
    const b = series(new Array<number>(192).fill(2), { meterId: 'MTR-000002' });
    const interleaved = a.flatMap((r, i) => [r, b[i]!]);
    const out = run(
      detectZeroMeter(
        new StateStore(),
        registry({ meterId: 'MTR-000001' }, { meterId: 'MTR-000002' }),
        thresholds,
      ),
      [data(...interleaved)],
    );
    expect(faults(out).map((f) => f.meterId)).toEqual(['MTR-000001']);
  });
});

describe('detectZeroMeter over missing data', () => {
  it('bridges NULL readings, missing rows and interpolated rows: they neither break nor extend the run', () => {
    const rs = series([...zeros(100), null, null, ...zeros(90)]);
    // Rows 102–111 become fillGaps rows of a gap: missing, then interpolated.
    for (let i = 102; i < 107; i++) Object.assign(rs[i]!, { status: 'missing', kw: null });
    for (let i = 107; i < 112; i++) Object.assign(rs[i]!, { status: 'interpolated', kw: 0 });
    // 192 rows from the first to the last zero: the span is 48 h even though 12 rows carried no zero.
    const out = run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...rs)]);
    expect(faults(out)).toHaveLength(1);
    expect(JSON.parse(faults(out)[0]!.evidence)).toMatchObject({ durationHours: 48, zeroReadings: 180 });
  });

  it('a run ending in missing rows is not extended by them', () => {
    const rs = series([...zeros(150), ...new Array<null>(60).fill(null)]);
    const out = run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...rs)]);
    expect(faults(out)).toEqual([]);
  });

  it('a measured non-zero value breaks the run and the count restarts', () => {
    const rs = series([...zeros(100), 0.3, ...zeros(191)]);
    expect(faults(run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...rs)]))).toEqual([]);
    const rs2 = series([...zeros(100), 0.3, ...zeros(192)]);
    const out = faults(run(detectZeroMeter(new StateStore(), registry(), thresholds), [data(...rs2)]));
    expect(out.map((f) => f.windowStart)).toEqual([T0 + 101 * INTERVAL]);
  });
});

describe('detectZeroMeter in event time (marbles)', () => {
  it('carries the run across batches and watermarks, detects in the batch that reaches the duration', () => {
    const small = { zeroMinDurationMs: HOUR }; // 4 readings
    const rs = (kws: number[], from: number) => series(kws, { start: T0 + from * INTERVAL });
    const flagged = (r: Reading): Reading => ({ ...r, flags: [...r.flags, 'fault_excluded'] });
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----d---|', {
        a: data(...rs([0, 0], 0)),
        b: wm(T0 + INTERVAL),
        c: data(...rs([0, 0, 0], 2)),
        d: data(...rs([2], 5)),
      });
      const detected: FaultEvent = {
        meterId: 'MTR-000001',
        faultType: 'zero',
        windowStart: T0,
        windowEnd: T0 + 3 * INTERVAL,
        detectedAt: T0 + 3 * INTERVAL,
        evidence: JSON.stringify({ status: 'active', durationHours: 1, zeroReadings: 4, thresholdHours: 1 }),
      };
      const cleared: FaultEvent = {
        ...detected,
        windowEnd: T0 + 4 * INTERVAL,
        evidence: JSON.stringify({
          status: 'cleared',
          durationHours: 1,
          zeroReadings: 4,
          thresholdHours: 1,
          clearedAt: T0 + 5 * INTERVAL,
          cleared: { durationHours: 1.25, zeroReadings: 5, kw: 2 },
        }),
      };
      const c = rs([0, 0, 0], 2);
      expectObservable(input.pipe(detectZeroMeter(new StateStore(), registry(), small))).toBe(
        'a-b-(fgc)-(hd)|',
        {
          a: data(...rs([0, 0], 0)),
          b: wm(T0 + INTERVAL),
          f: taggedEvent(FAULTS, [detected]),
          g: {
            kind: 'tagged',
            tag: ALERTS.name,
            items: [
              {
                severity: 'warning',
                kind: 'meter_fault',
                meterId: 'MTR-000001',
                ts: T0 + 3 * INTERVAL,
                message: 'zero fault on MTR-000001: 0 kW for 1 h',
              },
            ],
          },
          c: data(c[0]!, flagged(c[1]!), flagged(c[2]!)),
          h: taggedEvent(FAULTS, [cleared]),
          d: data(...rs([2], 5)),
        },
      );
    });
  });
});

describe('detectZeroMeter properties', () => {
  type Cell = 'zero' | 'power' | 'null' | 'missing';
  const cell = fc.constantFrom<Cell>('zero', 'zero', 'zero', 'power', 'null', 'missing');

  it('reports exactly the runs a direct reading of the rule finds', () => {
    fc.assert(
      fc.property(
        fc.array(cell, { maxLength: 300 }),
        fc.integer({ min: 1, max: 40 }),
        (cells, minReadings) => {
          const minDuration = minReadings * INTERVAL;
          const rs = cells.map((c, i) =>
            reading({
              ts: T0 + i * INTERVAL,
              kw: c === 'zero' ? 0 : c === 'power' ? 1 : null,
              status: c === 'missing' ? 'missing' : 'measured',
            }),
          );
          const got = faults(
            run(detectZeroMeter(new StateStore(), registry(), { zeroMinDurationMs: minDuration }), [
              data(...rs),
            ]),
          );
          // Reference: split at measured power; in each segment, the first zero whose span from the segment's
          // first zero reaches the duration is the detection; the segment's last zero is the final end.
          const expected: { start: number; detected: number; final: number; closed: boolean }[] = [];
          let first = -1;
          let lastZero = -1;
          let detected = -1;
          for (let i = 0; i <= cells.length; i++) {
            const c = cells[i];
            if (c === 'zero') {
              if (first < 0) first = i;
              lastZero = i;
              // The interval is known from the second reading on (always 15 min here).
              const span = (i - first) * INTERVAL + (i >= 1 ? INTERVAL : 0);
              if (detected < 0 && span >= minDuration) detected = i;
            } else if (c === 'power' || c === undefined) {
              if (detected >= 0)
                expected.push({ start: first, detected, final: lastZero, closed: c === 'power' });
              first = -1;
              detected = -1;
            }
          }
          const want: Omit<FaultEvent, 'evidence'>[] = [];
          for (const e of expected) {
            const base = {
              meterId: 'MTR-000001',
              faultType: 'zero' as const,
              windowStart: T0 + e.start * INTERVAL,
            };
            want.push({
              ...base,
              windowEnd: T0 + e.detected * INTERVAL,
              detectedAt: T0 + e.detected * INTERVAL,
            });
            if (e.closed)
              want.push({
                ...base,
                windowEnd: T0 + e.final * INTERVAL,
                detectedAt: T0 + e.detected * INTERVAL,
              });
          }
          expect(got.map(({ evidence: _, ...f }) => f)).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a constant-size state however long the meter runs', () => {
    const store = new StateStore();
    const op = detectZeroMeter(store, registry(), thresholds);
    const days = Array.from({ length: 30 }, (_, d) =>
      data(...series([...zeros(60), ...new Array<number>(36).fill(1)], { start: T0 + d * DAY })),
    );
    run(op, days);
    // A row of five numbers, and no keyed entry while no fault is open.
    expect(store.rows('detectZeroMeter/meter', 'meters', 5).size).toBe(1);
    expect(store.keyed('detectZeroMeter').size).toBe(0);
  });

  it('resumes from a binary checkpoint mid-run and with a fault open as an uninterrupted run', () => {
    // 60 h of zeros bridging NULLs and a missing row, then values: the fault opens at 48 h.
    const kws = [1, ...zeros(100), null, ...zeros(139), 2, 2];
    const events = (): FlowEvent<Reading>[] => {
      const rs = series(kws);
      rs[150]!.status = 'missing';
      rs[150]!.kw = null;
      return rs.map((r) => data(r));
    };
    const op = (store: StateStore) => detectZeroMeter(store, registry(), thresholds);
    const whole = run(op(new StateStore()), events());
    expect(faults(whole).map((f) => JSON.parse(f.evidence).status)).toEqual(['active', 'cleared']);
    for (const cut of [1, 50, 150, 200, 241, 242]) expect(runResumed(op, events, cut)).toEqual(whole);
  });
});
