import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore, taggedEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { detectOverload } from '../../operators/detect-overload.js';
import { ALERTS, FAULTS } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import {
  alerts,
  excluded,
  faults,
  INTERVAL,
  reading,
  readingsOut,
  registry,
  run,
  runResumed,
  series,
  status,
  T0,
} from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

/** Readings as the pipeline delivers them: values over the physical limit carry `over_limit`. */
function loads(kws: (number | null)[], limitKw = 20, start = T0): Reading[] {
  const rs = series(kws, { start });
  for (const r of rs) if (r.kw !== null && r.kw > limitKw) addFlag(r, 'over_limit');
  return rs;
}
const over = (n: number, kw = 25) => new Array<number>(n).fill(kw);

describe('detectOverload at the 6-reading boundary', () => {
  it('5 consecutive readings above 20 kW are not a fault', () => {
    const out = run(detectOverload(new StateStore(), registry(), thresholds), [
      data(...loads([3, ...over(5), 3])),
    ]);
    expect(faults(out)).toEqual([]);
    expect(alerts(out)).toEqual([]);
  });

  it('6 consecutive readings are, with a critical alert, and the next normal reading clears it', () => {
    const out = run(detectOverload(new StateStore(), registry(), thresholds), [
      data(...loads([3, ...over(5), 27.5, 25, 3, 3])),
    ]);
    const at6 = T0 + 6 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'overload',
        windowStart: T0 + INTERVAL,
        windowEnd: at6,
        detectedAt: at6,
        evidence: JSON.stringify({
          status: 'active',
          limitKw: 20,
          limitSource: 'overloadKw',
          consecutive: 6,
          maxKw: 27.5,
          thresholdConsecutive: 6,
        }),
      },
      expect.objectContaining({ windowStart: T0 + INTERVAL, windowEnd: at6 + INTERVAL, detectedAt: at6 }),
    ]);
    expect(status(faults(out)[1]!)).toBe('cleared');
    expect(alerts(out)).toEqual([
      {
        severity: 'critical',
        kind: 'meter_fault',
        meterId: 'MTR-000001',
        ts: at6,
        message: 'overload fault on MTR-000001: above 20 kW for 6 consecutive readings (max 27.5 kW)',
      },
    ]);
    expect(excluded(readingsOut(out))).toEqual([at6, at6 + INTERVAL]);
  });

  it('a value exactly at the limit is not over it', () => {
    const out = run(detectOverload(new StateStore(), registry(), thresholds), [data(...loads(over(10, 20)))]);
    expect(faults(out)).toEqual([]);
  });
});

describe('detectOverload limits', () => {
  it("uses the registry's max_kw, also below the physical limit the validator applies", () => {
    const op = detectOverload(new StateStore(), registry({ maxKw: 10 }), thresholds);
    const out = run(op, [data(...loads(over(6, 12), 10))]);
    expect(faults(out)).toHaveLength(1);
    expect(JSON.parse(faults(out)[0]!.evidence)).toMatchObject({ limitKw: 10, limitSource: 'max_kw' });
  });

  it('does not apply the residential 20 kW to a commercial meter without max_kw; its over_limit readings count', () => {
    const shop = registry({ meterType: 'commercial' });
    const busy = run(detectOverload(new StateStore(), shop, thresholds), [data(...loads(over(20, 45), 50))]);
    expect(faults(busy)).toEqual([]);
    const overloaded = run(detectOverload(new StateStore(), shop, thresholds), [
      data(...loads(over(6, 55), 50)),
    ]);
    expect(JSON.parse(faults(overloaded)[0]!.evidence)).toMatchObject({
      limitKw: null,
      limitSource: 'over_limit',
    });
    expect(alerts(overloaded)[0]!.message).toContain('above its physical limit');
  });
});

describe('detectOverload consecutive intervals', () => {
  it('a missing interval in the middle breaks the chain (3 + gap + 3 is not 6 consecutive)', () => {
    const rs = loads([3, 25, 25, 25, null, 25, 25, 25, 3]);
    rs[4]!.status = 'missing';
    expect(faults(run(detectOverload(new StateStore(), registry(), thresholds), [data(...rs)]))).toEqual([]);
    // The same with no row at all for the interval: the step between over-limit readings tells.
    const gap = [...rs.slice(0, 4), ...rs.slice(5)];
    expect(faults(run(detectOverload(new StateStore(), registry(), thresholds), [data(...gap)]))).toEqual([]);
  });

  it('a chain broken by a gap clears an open fault; the new chain is a new fault', () => {
    const rs = loads([3, ...over(7), 3, ...over(6)]);
    rs.splice(8, 1); // the 3 kW reading never arrived: over-limit readings 7 and then 6, one interval apart
    const fs = faults(run(detectOverload(new StateStore(), registry(), thresholds), [data(...rs)]));
    expect(
      fs.map((f) => [(f.windowStart - T0) / INTERVAL, (f.windowEnd - T0) / INTERVAL, status(f)]),
    ).toEqual([
      [1, 6, 'active'],
      [1, 7, 'cleared'],
      [9, 14, 'active'],
    ]);
  });

  it('holds when over-limit readings arrive ahead of the rows around them', () => {
    // Six over-limit readings first, then the interval rows of the same span and the next normal reading.
    const overs = loads(over(6), 20, T0 + INTERVAL);
    const rows = series([3, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3]);
    for (let i = 1; i <= 6; i++) Object.assign(rows[i]!, { status: 'interpolated' });
    const fs = faults(
      run(detectOverload(new StateStore(), registry(), thresholds), [data(...overs, ...rows)]),
    );
    expect(
      fs.map((f) => [(f.windowStart - T0) / INTERVAL, (f.windowEnd - T0) / INTERVAL, status(f)]),
    ).toEqual([
      [1, 6, 'active'],
      [1, 6, 'cleared'],
    ]);
  });
});

describe('detectOverload in event time (marbles)', () => {
  it('counts across batches and emits before the watermark that follows', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----d|', {
        a: data(...loads(over(3), 20)),
        b: wm(T0 + 2 * INTERVAL),
        c: data(...loads(over(3), 20, T0 + 3 * INTERVAL)),
        d: wm(T0 + 5 * INTERVAL),
      });
      const c = loads(over(3), 20, T0 + 3 * INTERVAL);
      addFlag(c[2]!, 'fault_excluded');
      expectObservable(input.pipe(detectOverload(new StateStore(), registry(), thresholds))).toBe(
        'a-b-(fgc)-d|',
        {
          a: data(...loads(over(3), 20)),
          b: wm(T0 + 2 * INTERVAL),
          f: taggedEvent(FAULTS, [
            expect.objectContaining({ faultType: 'overload', windowStart: T0, windowEnd: T0 + 5 * INTERVAL }),
          ]),
          g: taggedEvent(ALERTS, [expect.objectContaining({ severity: 'critical', ts: T0 + 5 * INTERVAL })]),
          c: data(...c),
          d: wm(T0 + 5 * INTERVAL),
        },
      );
    });
  });
});

describe('detectOverload properties', () => {
  it('detects exactly the chains of ≥ N over-limit readings in consecutive intervals', () => {
    type Cell = 'over' | 'ok' | 'null' | 'absent';
    const cell = fc.constantFrom<Cell>('over', 'over', 'over', 'ok', 'null', 'absent');
    fc.assert(
      fc.property(fc.array(cell, { maxLength: 200 }), fc.integer({ min: 1, max: 8 }), (cells, n) => {
        const rs: Reading[] = [];
        cells.forEach((c, i) => {
          if (c === 'absent') return;
          const kw = c === 'over' ? 30 : c === 'ok' ? 2 : null;
          rs.push(reading({ ts: T0 + i * INTERVAL, kw, flags: c === 'over' ? ['over_limit'] : [] }));
        });
        const got = faults(
          run(detectOverload(new StateStore(), registry(), { overloadConsecutive: n, overloadKw: 20 }), [
            data(...rs),
          ]),
        ).filter((f) => status(f) === 'active');
        // Reference: maximal runs of 'over' cells (consecutive indexes; a null row does not break a run
        // but its interval is not over-limit either, so it splits the run by index) of length ≥ n.
        const want: [number, number][] = [];
        let start = -1;
        for (let i = 0; i <= cells.length; i++) {
          if (cells[i] === 'over') {
            if (start < 0) start = i;
            if (i - start + 1 === n) want.push([start, i]);
          } else start = -1;
        }
        // The cadence is learnt from the rows that arrived: until two rows are seen it is unknown, so a
        // first chain may start after an absent interval; the simulator and fillGaps never produce that.
        const firstTwo = cells.findIndex((c) => c !== 'absent');
        const cadenceKnownEarly = firstTwo >= 0 && cells[firstTwo + 1] !== 'absent';
        if (cadenceKnownEarly) {
          expect(got.map((f) => [(f.windowStart - T0) / INTERVAL, (f.detectedAt - T0) / INTERVAL])).toEqual(
            want,
          );
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('detectOverload state in typed rows', () => {
  it('resumes from a binary checkpoint mid-chain and with a fault open as an uninterrupted run', () => {
    // A chain of 4, one of 10 (the fault at its 6th) whose maximum rises late, then the end.
    const kws = [3, ...over(4), 3, ...over(8, 26), ...over(2, 30.5), 3, 3];
    const events = (): FlowEvent<Reading>[] => loads(kws).map((r) => data(r));
    const op = (store: StateStore) => detectOverload(store, registry(), thresholds);
    const whole = run(op(new StateStore()), events());
    expect(faults(whole).map((f) => [status(f), JSON.parse(f.evidence).maxKw])).toEqual([
      ['active', 26],
      ['cleared', 26],
    ]);
    expect(JSON.parse(faults(whole)[1]!.evidence).cleared).toEqual({ consecutive: 10, maxKw: 30.5, kw: 3 });
    for (let cut = 1; cut < kws.length; cut += 2) expect(runResumed(op, events, cut)).toEqual(whole);
    const store = new StateStore();
    run(op(store), events());
    expect(store.keyed('detectOverload').size).toBe(0);
  });
});
