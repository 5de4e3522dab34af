import fc from 'fast-check';
import { BehaviorSubject, from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  deserializeSnapshot,
  type FlowEvent,
  SideInput,
  StateStore,
  serializeSnapshot,
} from '../../core/index.js';
import { detectNeighborhoodOutlier } from '../../operators/detect-neighborhood-outlier.js';
import { ALERTS, type MeterRegistry } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { FaultEvent, HourlyConsumption, MeterType } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { alerts, DAY, HOUR, run, status, T0 } from './fixtures.js';

/**
 * The seed's rule alone: one judgement below 0.3 is a fault and no hour is trimmed. The defaults'
 * persistence (3 day ends in a row) and trimming of the meter's own heavy loads have tests of their own.
 */
const thresholds = { ...defaultRuleProfile.faults, neighborhoodConsecutive: 1, neighborhoodTrimIqr: 1e9 };

const faults = (out: FlowEvent<FaultEvent>[]) => out.flatMap((e) => (e.kind === 'data' ? e.items : []));
/** Meters missing from the registry are judged together, as one type. */
const registryOf = (types: Record<string, MeterType> = {}) => {
  const side = new SideInput<MeterRegistry>(
    'registry',
    new BehaviorSubject<MeterRegistry>(
      new Map(
        Object.entries(types).map(([meterId, meterType]) => [
          meterId,
          { meterId, region: 'north', neighborhood: 'north-01', meterType, vacant: false, maxKw: null },
        ]),
      ),
    ),
  );
  side.connect((err) => {
    throw err;
  });
  return side;
};
const outliers = (st = new StateStore(), t = thresholds, registry = registryOf()) =>
  detectNeighborhoodOutlier(st, registry, t);

function hourly(meterId: string, hour: number, avgKw: number, neighborhood = 'north-01'): HourlyConsumption {
  return {
    meterId,
    neighborhood,
    hour,
    avgKw,
    minKw: avgKw - 0.05,
    maxKw: avgKw + 0.05,
    stddevKw: 0.04,
    count: 4,
  };
}

const shape = (h: number) => Math.sin((2 * Math.PI * h) / 24);
const orthogonal = (h: number) => Math.cos((2 * Math.PI * h) / 24);

/**
 * `peers` meters following the shared daily shape at different levels, and MTR-T whose hourly series has
 * correlation exactly `r` with that shape (sin and cos are orthogonal over whole days): the mean of the
 * peers IS the shape, so MTR-T's correlation with its neighbours' mean is `r`.
 */
function neighborhood(
  r: number,
  opts: { peers?: number; hours?: number; from?: number } = {},
): HourlyConsumption[] {
  const peers = opts.peers ?? 5;
  const start = opts.from ?? 0;
  const items: HourlyConsumption[] = [];
  for (let h = start; h < start + (opts.hours ?? 24); h++) {
    for (let p = 0; p < peers; p++)
      items.push(hourly(`MTR-P${p}`, T0 + h * HOUR, 1 + 0.2 * p + shape(h) * (0.5 + 0.1 * p)));
    items.push(hourly('MTR-T', T0 + h * HOUR, 2 + r * shape(h) + Math.sqrt(1 - r * r) * orthogonal(h)));
  }
  return items;
}

describe('detectNeighborhoodOutlier at the 0.3 boundary', () => {
  it('correlation 0.29 is an outlier, reported when the watermark passes the day end', () => {
    const out = run(outliers(), [data(...neighborhood(0.29)), wm(T0 + DAY)]);
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-T',
        faultType: 'neighborhood_outlier',
        windowStart: T0,
        windowEnd: T0 + 23 * HOUR,
        detectedAt: T0 + DAY,
        evidence: JSON.stringify({
          status: 'active',
          correlation: 0.29,
          hours: 24,
          meters: 6,
          meterType: 'unregistered',
          judgements: 1,
          thresholdCorrelation: 0.3,
        }),
      },
    ]);
    expect(alerts(out)).toEqual([
      {
        severity: 'warning',
        kind: 'meter_fault',
        meterId: 'MTR-T',
        ts: T0 + DAY,
        message:
          'neighborhood_outlier fault on MTR-T: hourly profile correlates 0.29 with the mean of 5 unregistered neighbours over 24 h',
      },
    ]);
  });

  it('correlation 0.31 is not', () => {
    expect(faults(run(outliers(), [data(...neighborhood(0.31)), wm(T0 + DAY)]))).toEqual([]);
  });

  it('needs neighborhoodMinMeters judged meters (4 of 5 → not judged)', () => {
    expect(faults(run(outliers(), [data(...neighborhood(-0.9, { peers: 3 })), wm(T0 + DAY)]))).toEqual([]);
    expect(faults(run(outliers(), [data(...neighborhood(-0.9, { peers: 4 })), wm(T0 + DAY)]))).toHaveLength(
      1,
    );
  });

  it('needs 24 hourly values of a meter in the window (23 → not judged)', () => {
    const items = neighborhood(-0.9).filter((h) => !(h.meterId === 'MTR-T' && h.hour === T0 + 5 * HOUR));
    expect(faults(run(outliers(), [data(...items), wm(T0 + DAY)]))).toEqual([]);
  });
});

describe('detectNeighborhoodOutlier in a neighborhood mixing types', () => {
  /** 18 homes following the evening-peak shape and 2 shops on a daytime plateau (orthogonal to it). */
  function street(opts: { shops?: number; homeOutlier?: boolean } = {}): {
    items: HourlyConsumption[];
    types: Record<string, MeterType>;
  } {
    const items: HourlyConsumption[] = [];
    const types: Record<string, MeterType> = {};
    for (let h = 0; h < 24; h++) {
      for (let p = 0; p < 18; p++) {
        const inverted = opts.homeOutlier === true && p === 0;
        types[`MTR-H${p}`] = 'residential';
        items.push(hourly(`MTR-H${p}`, T0 + h * HOUR, 1 + 0.05 * p + (inverted ? -1 : 1) * 0.6 * shape(h)));
      }
      for (let p = 0; p < (opts.shops ?? 2); p++) {
        types[`MTR-S${p}`] = 'commercial';
        items.push(hourly(`MTR-S${p}`, T0 + h * HOUR, 30 + 5 * p + 20 * orthogonal(h)));
      }
    }
    return { items, types };
  }

  it('judges homes only against homes and leaves 2 shops unjudged (too few peers of their type)', () => {
    const { items, types } = street();
    expect(
      faults(run(outliers(new StateStore(), thresholds, registryOf(types)), [data(...items), wm(T0 + DAY)])),
    ).toEqual([]);
  });

  it('without the types, the shops dominate the mean and clean meters are reported', () => {
    const { items } = street();
    expect(faults(run(outliers(), [data(...items), wm(T0 + DAY)])).length).toBeGreaterThan(0);
  });

  it('still finds an inverted home among its 17 home peers, and judges 5 shops among themselves', () => {
    const { items, types } = street({ homeOutlier: true, shops: 5 });
    const found = faults(
      run(outliers(new StateStore(), thresholds, registryOf(types)), [data(...items), wm(T0 + DAY)]),
    );
    expect(found.map((f) => f.meterId)).toEqual(['MTR-H0']);
    expect(JSON.parse(found[0]!.evidence)).toMatchObject({ meterType: 'residential', meters: 18 });
  });
});

describe('detectNeighborhoodOutlier with the default persistence and trimming', () => {
  const defaults = defaultRuleProfile.faults;

  it('reports only on the third day end in a row below the threshold', () => {
    const dayOf = (d: number) => neighborhood(-0.5, { from: 24 * d });
    const events = [data(...dayOf(0)), wm(T0 + DAY), data(...dayOf(1)), wm(T0 + 2 * DAY)];
    expect(faults(run(outliers(new StateStore(), defaults), events))).toEqual([]);
    const third = faults(
      run(outliers(new StateStore(), defaults), [...events, data(...dayOf(2)), wm(T0 + 3 * DAY)]),
    );
    expect(third.map((f) => [f.meterId, f.detectedAt])).toEqual([['MTR-T', T0 + 3 * DAY]]);
  });

  it('leaves out the meter’s own heavy hours: a nightly 7 kW charge does not make a home an outlier', () => {
    const items: HourlyConsumption[] = [];
    for (let h = 0; h < 72; h++) {
      for (let p = 0; p < 6; p++)
        items.push(hourly(`MTR-P${p}`, T0 + h * HOUR, 1 + 0.2 * p + shape(h) * 0.6));
      const charging = h % 24 >= 16 && h % 24 < 21 ? 7 : 0; // when the neighbours draw least
      items.push(hourly('MTR-EV', T0 + h * HOUR, 1.2 + shape(h) * 0.6 + charging));
    }
    const events = [data(...items), wm(T0 + DAY), wm(T0 + 2 * DAY), wm(T0 + 3 * DAY)];
    expect(faults(run(outliers(new StateStore(), defaults), events))).toEqual([]);
    // Untrimmed, the charge sets the EV home apart, and among six homes it sets the mean for the others too.
    const untrimmed = { ...defaults, neighborhoodTrimIqr: 1e9 };
    expect(faults(run(outliers(new StateStore(), untrimmed), events)).map((f) => f.meterId)).toContain(
      'MTR-EV',
    );
  });
});

describe('detectNeighborhoodOutlier in event time (marbles)', () => {
  it('judges at the day end only once the watermark passes it, and emits before that watermark', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<HourlyConsumption>>('a-b-c-----|', {
        a: data(...neighborhood(-1)),
        b: wm(T0 + DAY - 1),
        c: wm(T0 + DAY),
      });
      expectObservable(input.pipe(outliers())).toBe('--b-(gfc)-|', {
        b: wm(T0 + DAY - 1),
        g: {
          kind: 'tagged',
          tag: ALERTS.name,
          items: [expect.objectContaining({ meterId: 'MTR-T', ts: T0 + DAY })],
        },
        f: data(expect.objectContaining({ meterId: 'MTR-T', detectedAt: T0 + DAY })),
        c: wm(T0 + DAY),
      });
    });
  });
});

describe('detectNeighborhoodOutlier over days', () => {
  it('reports an inverted profile once and clears it when the meter follows its neighbours again', () => {
    const out = run(outliers(), [
      data(...neighborhood(-1, { hours: 24 })),
      wm(T0 + DAY),
      data(...neighborhood(-1, { hours: 24, from: 24 })),
      wm(T0 + 2 * DAY),
      // Back to normal: after two more days the 72 h window holds 48 h of normal profile.
      data(...neighborhood(1, { hours: 48, from: 48 })),
      wm(T0 + 3 * DAY),
      wm(T0 + 4 * DAY),
    ]);
    const fs = faults(out);
    expect(fs.map((f) => [f.meterId, status(f), f.detectedAt])).toEqual([
      ['MTR-T', 'active', T0 + DAY],
      ['MTR-T', 'cleared', T0 + DAY],
    ]);
    expect(fs[1]!.windowStart).toBe(T0);
    // The final window end: the last window in which it was still an outlier (judged at day 3) ended at 71 h.
    expect(fs[1]!.windowEnd).toBe(T0 + 71 * HOUR);
    expect(JSON.parse(fs[1]!.evidence)).toMatchObject({ status: 'cleared', clearedAt: T0 + 4 * DAY });
    expect(alerts(out)).toHaveLength(1);
  });

  it('judges each day of a watermark that jumps several days at once', () => {
    const items = [...neighborhood(-1, { hours: 24 }), ...neighborhood(1, { hours: 96, from: 24 })];
    const fs = faults(run(outliers(), [data(...items), wm(T0 + 10 * DAY)]));
    expect(fs.map((f) => [status(f), f.detectedAt])).toEqual([
      ['active', T0 + DAY],
      ['cleared', T0 + DAY],
    ]);
    expect(JSON.parse(fs[1]!.evidence).clearedAt).toBeGreaterThan(T0 + DAY);
  });

  it('does not judge exactly or nearly constant meters (stuck, zero, vacant, low variance)', () => {
    const items = neighborhood(1);
    for (let h = 0; h < 24; h++) {
      items.push(hourly('MTR-FLAT', T0 + h * HOUR, 1.5));
      items.push(hourly('MTR-ZERO', T0 + h * HOUR, 0));
      items.push(hourly('MTR-LOWVAR', T0 + h * HOUR, 1.5 + (h % 2 === 0 ? 0.005 : -0.005)));
    }
    expect(faults(run(outliers(), [data(...items), wm(T0 + DAY)]))).toEqual([]);
  });

  it('does not count flat hours (a zero or stuck run before its rule detects it) as evidence', () => {
    // Day 1 normal, then 0 kW in every reading: the 48 flat hours are not correlated.
    const items = [...neighborhood(1, { hours: 72 })].map((h) =>
      h.meterId === 'MTR-T' && h.hour >= T0 + DAY ? { ...h, avgKw: 0, minKw: 0, maxKw: 0 } : h,
    );
    expect(faults(run(outliers(), [data(...items), wm(T0 + 3 * DAY)]))).toEqual([]);
    // The same hours with varying readings inside them are evidence: a meter that really went flat-ish.
    const varied = items.map((h) => (h.meterId === 'MTR-T' && h.hour >= T0 + DAY ? { ...h, maxKw: 0.1 } : h));
    expect(faults(run(outliers(), [data(...varied), wm(T0 + 3 * DAY)])).map((f) => f.meterId)).toEqual([
      'MTR-T',
    ]);
  });

  it('keys by neighborhood: meters are compared with their own neighbours only', () => {
    const north = neighborhood(1);
    // The south neighborhood runs an inverted day for all its meters: normal there, not outliers.
    const south = neighborhood(1).map((h) => ({
      ...h,
      neighborhood: 'south-01',
      meterId: `S-${h.meterId}`,
      avgKw: 5 - h.avgKw,
    }));
    expect(faults(run(outliers(), [data(...north, ...south), wm(T0 + DAY)]))).toEqual([]);
  });

  it('ignores aggregates older than the window and keeps the state bounded', () => {
    const store = new StateStore();
    const events: FlowEvent<HourlyConsumption>[] = [];
    for (let d = 0; d < 20; d++) {
      events.push(data(...neighborhood(1, { hours: 24, from: d * 24 })), wm(T0 + (d + 1) * DAY));
    }
    // A pane for hour 0, far behind the window now: dropped without effect.
    events.push(data(hourly('MTR-T', T0, 100)), wm(T0 + 21 * DAY));
    const sizes: number[] = [];
    from(events)
      .pipe(outliers(store))
      .subscribe(() =>
        sizes.push(JSON.stringify(store.keyed('detectNeighborhoodOutlier').get('north-01')).length),
      );
    const state = store.keyed<{ m: Record<string, unknown[]> }>('detectNeighborhoodOutlier').get('north-01')!;
    expect(Object.values(state.m).every((series) => series.length === 72)).toBe(true);
    expect(Object.values(state.m).every((series) => series.every(Number.isInteger))).toBe(true);
    expect(sizes.at(-1)).toBeLessThan(6 * 72 * 22);
    expect(sizes.at(-1)! - sizes[10]!).toBeLessThan(100);
  });
});

describe('detectNeighborhoodOutlier state', () => {
  type State = { end: number; h0: number; m: Record<string, (number | null)[]> };
  const stateOf = (store: StateStore) => store.keyed<State>('detectNeighborhoodOutlier').get('north-01')!;

  it('holds hourly means as integers of 0.0001 kW, each series growing from the first hour', () => {
    const store = new StateStore();
    const flat = { ...hourly('MTR-B', T0 + 9 * HOUR, 2), minKw: 2, maxKw: 2 };
    run(outliers(store), [
      data(
        hourly('MTR-A', T0 + 5 * HOUR, 1.23456),
        hourly('MTR-A', T0 + 7 * HOUR, 0.5),
        hourly('MTR-B', T0 + 8 * HOUR, 2),
        flat,
      ),
    ]);
    const st = stateOf(store);
    expect(st.h0).toBe(T0 / HOUR + 5);
    expect(st.m).toEqual({ 'MTR-A': [12346, null, 5000], 'MTR-B': [null, null, null, 20000, null] });
  });

  it('an hour before the first one, still in the window, takes the slot its time wraps to', () => {
    const store = new StateStore();
    run(outliers(store), [data(hourly('MTR-A', T0 + 5 * HOUR, 1), hourly('MTR-A', T0 + 3 * HOUR, 2))]);
    const series = stateOf(store).m['MTR-A']!;
    expect(series).toHaveLength(71);
    expect(series[0]).toBe(10000);
    expect(series[70]).toBe(20000);
    expect(series.slice(1, 70).every((v) => v === null)).toBe(true);
  });

  it('a run resumed from a serialized snapshot at any cut emits what an uninterrupted run does', () => {
    const events: FlowEvent<HourlyConsumption>[] = [];
    for (let d = 0; d < 6; d++) {
      const day = neighborhood(d < 3 ? 0.1 : 0.95, { from: d * 24 });
      events.push(data(...day.slice(0, 70)), data(...day.slice(70)), wm(T0 + (d + 1) * DAY));
    }
    const uninterrupted = run(outliers(), events);
    expect(faults(uninterrupted).map((f) => JSON.parse(f.evidence).status)).toEqual(['active', 'cleared']);
    for (const cut of [1, 2, 4, 8, 12, events.length - 1]) {
      const first = new StateStore();
      const before = run(outliers(first), events.slice(0, cut));
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      expect([...before, ...run(outliers(resumed), events.slice(cut))]).toEqual(uninterrupted);
    }
  });
});

describe('detectNeighborhoodOutlier properties', () => {
  it('never flags clean meters: a shared daily shape at any level, amplitude, noise and ±1 h phase', () => {
    const meter = fc.record({
      level: fc.double({ min: 0.2, max: 40, noNaN: true }),
      amplitude: fc.double({ min: 0.3, max: 1, noNaN: true }),
      phase: fc.integer({ min: -1, max: 1 }),
      noise: fc.array(fc.double({ min: -0.25, max: 0.25, noNaN: true }), { minLength: 72, maxLength: 72 }),
    });
    fc.assert(
      fc.property(fc.array(meter, { minLength: 5, maxLength: 30 }), (meters) => {
        const items: HourlyConsumption[] = [];
        for (let h = 0; h < 72; h++) {
          meters.forEach((m, i) => {
            const v = m.level * (1 + m.amplitude * shape(h + m.phase) * 0.9 + m.noise[h]! * m.amplitude);
            items.push(hourly(`MTR-${i}`, T0 + h * HOUR, Math.max(0.01, v)));
          });
        }
        const out = run(outliers(), [data(...items), wm(T0 + 3 * DAY)]);
        expect(faults(out)).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });
});
