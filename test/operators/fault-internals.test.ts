/**
 * The logic the fault detectors share, and the detectors together in their pipeline order: what one rule
 * reports the others must not report again, a clean meter trips none of them, and a run resumed from a
 * checkpoint reports exactly what an uninterrupted run does.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  deserializeSnapshot,
  type FlowEvent,
  StateStore,
  serializeSnapshot,
  type Transform,
} from '../../core/index.js';
import { addFlag, NO_FLAGS } from '../../operators/add-flag.js';
import { detectCommFailure } from '../../operators/detect-comm-failure.js';
import { detectErraticSpike } from '../../operators/detect-erratic-spike.js';
import { detectLowVariance } from '../../operators/detect-low-variance.js';
import { detectOverload } from '../../operators/detect-overload.js';
import { detectStuckMeter } from '../../operators/detect-stuck-meter.js';
import { detectZeroMeter } from '../../operators/detect-zero-meter.js';
import {
  BUCKET_MS,
  bucketCount,
  bucketOf,
  excludeFromAnalytics,
  observeCadence,
  RING_TOTALS,
  ringArray,
  ringSlot,
  ringWindowStart,
} from '../../operators/fault-internals.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { data, wm } from '../core/helpers.js';
import { DAY, faults, HOUR, INTERVAL, reading, registry, runFlow, series, T0 } from './fixtures.js';

const faultsProfile = defaultRuleProfile.faults;

/** The six per-meter detectors in the order the pipeline runs them. */
function detectors(store: StateStore): Transform<Reading, Reading> {
  const reg = registry({ meterId: 'MTR-000001' }, { meterId: 'MTR-000002' }, { meterId: 'MTR-000003' });
  const zero = detectZeroMeter(store, reg, faultsProfile);
  const stuck = detectStuckMeter(store, faultsProfile);
  const overload = detectOverload(store, reg, faultsProfile);
  const lowVariance = detectLowVariance(store, faultsProfile);
  const erratic = detectErraticSpike(store, faultsProfile);
  const comm = detectCommFailure(store, faultsProfile);
  return (source) => source.pipe(zero, stuck, overload, lowVariance, erratic, comm);
}

function run(store: StateStore, events: FlowEvent<Reading>[]): FlowEvent<Reading>[] {
  return runFlow(detectors(store), events).events;
}
const kinds = (out: FlowEvent<unknown>[]) => [...new Set(faults(out).map((f) => f.faultType))];

/**
 * A clean load: a daily sinusoid with a second harmonic, a weekend lift and bounded multiplicative noise.
 * Its peaks stay near mean + 2.5σ. (A very peaky household — night base 0.3 kW, evening bump 7× that —
 * can approach mean + 4σ on its own: the simulator labels such natural readings as side effects.)
 */
function cleanLoad(days: number, noise: number[], phaseHours = 0): number[] {
  const kws: number[] = [];
  for (let i = 0; i < days * 96; i++) {
    const hour = (i % 96) / 4 + phaseHours;
    const day = Math.floor(i / 96);
    const daily =
      1.2 + 0.7 * Math.sin((2 * Math.PI * (hour - 13)) / 24) + 0.2 * Math.sin((2 * Math.PI * hour) / 12);
    const weekend = day % 7 >= 5 ? 1.15 : 1;
    const v = daily * weekend * (1 + noise[i % noise.length]!);
    kws.push(Math.round(v * 1e4) / 1e4);
  }
  return kws;
}

describe('fault internals', () => {
  it('learns the cadence as the smallest step, ignoring gaps and re-sent earlier readings', () => {
    const c = { lt: T0, iv: 0 };
    for (const t of [T0 + 4 * INTERVAL, T0 + 5 * INTERVAL, T0 + 2 * INTERVAL, T0 + 9 * INTERVAL])
      observeCadence(c, t);
    expect(c).toEqual({ lt: T0 + 9 * INTERVAL, iv: INTERVAL });
  });

  it('rolls a bucket ring: expired buckets leave the totals, too-old readings get no slot', () => {
    const k = bucketCount(6 * HOUR); // 3 buckets
    expect(k).toBe(3);
    const ring = { hb: bucketOf(T0), r: ringArray(1), fs: T0 };
    const add = (ts: number) => {
      const off = ringSlot(ring, k, 1, ts);
      if (off >= 0) {
        ring.r[off]! += 1;
        ring.r[RING_TOTALS]! += 1;
      }
      return off;
    };
    add(T0);
    add(T0 + BUCKET_MS);
    add(T0 + 2 * BUCKET_MS);
    expect(ring.r[RING_TOTALS]).toBe(3);
    add(T0 + 3 * BUCKET_MS); // the first bucket leaves
    expect(ring.r[RING_TOTALS]).toBe(3);
    expect(add(T0)).toBe(-1);
    add(T0 + 10 * BUCKET_MS); // everything leaves
    expect(ring.r[RING_TOTALS]).toBe(1);
    // Totals, then the buckets counted from the first reading's: T0 + 10 buckets is position 10 mod 3 = 1.
    expect(ring.r).toEqual([1, 0, 1, 0]);
  });

  it('grows a ring bucket by bucket from its first reading, and wraps once the window is full', () => {
    const k = 4;
    const start = T0 + 5 * BUCKET_MS; // not a multiple of k buckets: the origin is the first reading's bucket
    const ring = { hb: bucketOf(start), r: ringArray(2), fs: start + 60_000 };
    expect(ring.r).toEqual([0, 0]);
    expect(ringSlot(ring, k, 2, start + 60_000)).toBe(2);
    expect(ring.r).toHaveLength(4);
    expect(ringSlot(ring, k, 2, start + 2 * BUCKET_MS)).toBe(6);
    expect(ring.r).toHaveLength(8); // the skipped bucket is an empty slot
    expect(ringSlot(ring, k, 2, start + 4 * BUCKET_MS)).toBe(2); // wraps onto the first bucket's slot
    expect(ring.r).toHaveLength(8);
    // A bucket before the first reading's, still inside the window, gets the slot its time maps to.
    expect(ringSlot(ring, k, 2, start + 2 * BUCKET_MS - 1)).toBe(4);
    expect(ringWindowStart(ring, k)).toBe(start + BUCKET_MS);
  });

  it('a grown ring keeps exact totals past 2^53 by summing its buckets afresh', () => {
    const k = 3;
    const ring = { hb: bucketOf(T0), r: ringArray(1), fs: T0 };
    const add = (ts: number, v: number) => {
      const off = ringSlot(ring, k, 1, ts);
      ring.r[off]! += v;
      ring.r[RING_TOTALS]! += v;
    };
    add(T0, 2 ** 53);
    add(T0 + BUCKET_MS, 3);
    add(T0 + 2 * BUCKET_MS, 5);
    add(T0 + 3 * BUCKET_MS, 7); // the 2^53 bucket leaves; totals past 2^53 were rounded, so they are re-summed
    expect(ring.r[RING_TOTALS]).toBe(15);
  });

  it('flags a reading fault_excluded once, however many faults are active', () => {
    const r = reading();
    excludeFromAnalytics(r);
    excludeFromAnalytics(r);
    expect(r.flags).toEqual(['fault_excluded']);
  });

  it('flags a reading that shares the frozen empty flags of parsing without writing into them', () => {
    // Set after: the fixture copies the flags it is given.
    const r = reading();
    r.flags = NO_FLAGS;
    excludeFromAnalytics(r);
    expect(r.flags).toEqual(['fault_excluded']);
    expect(NO_FLAGS).toEqual([]);
  });
});

describe('the per-meter detectors together', () => {
  it('a clean meter with noise trips none of them over two weeks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -0.15, max: 0.15, noNaN: true }), { minLength: 97, maxLength: 200 }),
        fc.double({ min: -1, max: 1, noNaN: true }),
        (noise, shift) => {
          const out = run(new StateStore(), [data(...series(cleanLoad(14, noise, shift)))]);
          expect(faults(out)).toEqual([]);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a dead meter (0 kW for 3 days) is reported as zero only, not also stuck, low variance or spiking', () => {
    const kws = [
      ...cleanLoad(2, [0.05, -0.05, 0.02]),
      ...new Array<number>(3 * 96).fill(0),
      ...cleanLoad(2, [0.01]),
    ];
    const out = run(new StateStore(), [data(...series(kws))]);
    expect(kinds(out)).toEqual(['zero']);
  });

  it('a stuck meter (one value for 3 days) is reported as stuck only', () => {
    const kws = [
      ...cleanLoad(8, [0.05, -0.05, 0.02]),
      ...new Array<number>(3 * 96).fill(0.8123),
      ...cleanLoad(1, [0.01]),
    ];
    const out = run(new StateStore(), [data(...series(kws))]);
    expect(kinds(out)).toEqual(['stuck']);
  });

  it('an overload is reported as overload only, not as erratic spikes', () => {
    const rs = series([
      ...cleanLoad(8, [0.05, -0.05, 0.02]).slice(0, 8 * 96 - 8),
      26,
      27,
      26,
      28,
      26,
      27,
      1,
      1,
    ]);
    for (const r of rs) if (r.kw! > 20) addFlag(r, 'over_limit');
    const out = run(new StateStore(), [data(...rs)]);
    expect(kinds(out)).toEqual(['overload']);
  });

  it('flags a reading once while two faults are active on its meter', () => {
    // Zeros with every other interval missing: the zero fault and the communication failure overlap.
    const rs = series(Array.from({ length: 4 * 96 }, (_, i) => (i % 2 === 0 ? 0 : null)));
    for (const r of rs) if (r.kw === null) r.status = 'missing';
    const out = run(new StateStore(), [data(...rs)]);
    expect(kinds(out).sort()).toEqual(['comm_failure', 'zero']);
    const last = out.flatMap((e) => (e.kind === 'data' ? e.items : [])).at(-1)!;
    expect(last.flags.filter((f) => f === 'fault_excluded')).toHaveLength(1);
  });

  it('a run resumed from a serialized checkpoint reports exactly what an uninterrupted run does', () => {
    const kws = [
      ...cleanLoad(3, [0.05, -0.05, 0.02]),
      ...new Array<number>(2 * 96 + 10).fill(0),
      ...new Array<number>(96 + 5).fill(1.111),
      50,
      ...cleanLoad(3, [0.03, -0.01]),
    ];
    const events: FlowEvent<Reading>[] = [];
    const make = () => {
      const list: FlowEvent<Reading>[] = [];
      const all = [
        ...series(kws, { meterId: 'MTR-000001' }),
        ...series(
          kws.map((k, i) => (i % 3 === 0 ? null : k)),
          { meterId: 'MTR-000002' },
        ),
      ].sort((a, b) => a.ts - b.ts);
      for (let i = 0; i < all.length; i += 97) {
        list.push(data(...all.slice(i, i + 97)));
        list.push(wm(all[Math.min(i + 96, all.length - 1)]!.ts));
      }
      return list;
    };
    events.push(...make());
    const uninterrupted = run(new StateStore(), make());
    expect(faults(uninterrupted).length).toBeGreaterThan(3);
    for (const cut of [5, 40, 77, events.length - 2]) {
      const first = new StateStore();
      const fresh = make();
      const before = run(first, fresh.slice(0, cut));
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      const after = run(resumed, fresh.slice(cut));
      expect([...before, ...after]).toEqual(uninterrupted);
    }
  });

  it('keeps per-meter state small: bytes per meter after a month (JSON, or 8 a number in typed lists and rows)', () => {
    const store = new StateStore();
    run(store, [data(...series(cleanLoad(30, [0.05, -0.03, 0.01, -0.02])))]);
    const n = store.denseKeys('meters').numberOf('MTR-000001')!;
    const typed = (ns: string): number =>
      8 * store.vectors(`${ns}/ring`, 'meters').length(n) +
      (ns === 'detectCommFailure' ? 8 * store.rows(`${ns}/meter`, 'meters', 3).width : 0);
    const bytes = Object.fromEntries(
      ['detectErraticSpike'].map((ns) => [ns, JSON.stringify(store.keyed(ns).get('MTR-000001')).length]),
    );
    // A row of 5, 6 and 6 numbers, no keyed entry without an open fault.
    bytes.detectZeroMeter = 8 * store.rows('detectZeroMeter/meter', 'meters', 5).width;
    bytes.detectStuckMeter = 8 * store.rows('detectStuckMeter/meter', 'meters', 6).width;
    bytes.detectOverload = 8 * store.rows('detectOverload/meter', 'meters', 6).width;
    for (const ns of ['detectZeroMeter', 'detectStuckMeter', 'detectOverload'])
      expect(store.keyed(ns).size).toBe(0);
    bytes.detectLowVariance = typed('detectLowVariance');
    // 172 numbers of a week's ring and 3 of its row: in the checkpoint as float64 (the ring's first time is
    // an epoch ms), printed as JSON they were ~600 bytes.
    bytes.detectCommFailure = typed('detectCommFailure');
    expect(store.keyed('detectLowVariance').size + store.keyed('detectCommFailure').size).toBe(0);
    expect(bytes.detectZeroMeter).toBeLessThan(100);
    expect(bytes.detectStuckMeter).toBeLessThan(100);
    expect(bytes.detectOverload).toBeLessThan(100);
    expect(bytes.detectLowVariance).toBeLessThan(2_500);
    expect(bytes.detectErraticSpike).toBeLessThan(2_500);
    expect(bytes.detectCommFailure).toBeLessThan(1_500);
    expect(DAY).toBe(96 * INTERVAL);
  });
});
