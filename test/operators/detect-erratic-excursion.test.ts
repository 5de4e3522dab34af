import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, StateStore, serializeSnapshot } from '../../core/index.js';
import { detectErraticExcursion } from '../../operators/detect-erratic-excursion.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import { data, wm } from '../core/helpers.js';
import { DAY, excluded, faults, HOUR, INTERVAL, readingsOut, run, series, T0 } from './fixtures.js';

const thresholds = defaultRuleProfile.faults;
const excursions = (st = new StateStore(), t = thresholds) => detectErraticExcursion(st, t);

/**
 * A household day of 96 quarter hours: 0.4 kW at night, 1 kW by day, a 3 kW evening peak 18:00–20:00
 * with a 4 kW top at 19:00. Four days of it give the default three days of history.
 */
const day = (): number[] =>
  Array.from({ length: 96 }, (_, q) => {
    const h = q / 4;
    if (h >= 19 && h < 19.25) return 4;
    if (h >= 18 && h < 20) return 3;
    return h >= 7 && h < 23 ? 1 : 0.4;
  });
const days = (n: number): number[] => Array.from({ length: n }, day).flat();
/** Four ordinary days, then the fifth day's readings until 03:00 and `tail` from 03:00 on. */
const withTail = (tail: number[]) => [...days(4), ...day().slice(0, 12), ...tail];
const at = (q: number) => T0 + 4 * DAY + q * INTERVAL;
const end = (kws: number[]) => wm(T0 + kws.length * INTERVAL + HOUR);

describe('detectErraticExcursion: an isolated excursion above the meter’s own time of day', () => {
  it('reports a 7 kW reading at 03:00 that comes straight back down, and excludes it alone', () => {
    const kws = withTail([7, 0.4, 0.4, 0.4]);
    const out = run(excursions(), [data(...series(kws)), end(kws)]);
    const fs = faults(out);
    expect(fs).toHaveLength(1);
    expect(fs[0]).toMatchObject({ faultType: 'erratic_spike', windowStart: at(12), windowEnd: at(12) });
    expect(JSON.parse(fs[0]!.evidence)).toMatchObject({
      kw: 7,
      readings: 1,
      baselineKw: 0.4,
      windowMaxKw: 4,
      thresholdKw: 6,
      rule: 'own_profile',
    });
    const rs = readingsOut(out);
    expect(excluded(rs)).toEqual([at(12)]);
    // Held back and released in order: nothing lost, nothing reordered.
    expect(rs.map((r) => r.ts)).toEqual(series(kws).map((r) => r.ts));
  });

  it('a two-reading excursion is one fault; a third high reading makes it a load (an EV charging), not a spike', () => {
    const two = withTail([7, 7, 0.4, 0.4]);
    const twoOut = run(excursions(), [data(...series(two)), end(two)]);
    expect(faults(twoOut).map((f) => [f.windowStart, f.windowEnd])).toEqual([[at(12), at(13)]]);
    expect(excluded(readingsOut(twoOut))).toEqual([at(12), at(13)]);
    const three = withTail([7.2, 7.2, 7.2, 0.4]);
    const threeOut = run(excursions(), [data(...series(three)), end(three)]);
    expect(faults(threeOut)).toEqual([]);
    expect(excluded(readingsOut(threeOut))).toEqual([]);
  });

  it('a charge that dips under the threshold with noise has not come back down', () => {
    // Threshold at 03:00: max(3 × 0.4 kW, 0.4 + 1, 1.5 × 4 kW) = 6 kW; 5.5 is under it but above half of 8.
    const kws = withTail([8, 5.5, 8, 8, 0.4]);
    expect(faults(run(excursions(), [data(...series(kws)), end(kws)]))).toEqual([]);
  });

  it('is not fooled by the ordinary evening peak: the peak is the baseline at that time of day', () => {
    const kws = [...days(4), ...day().map((v, q) => (q === 76 ? 8 : v))]; // 19:00 at 8 kW = 2 × its 4 kW top
    expect(faults(run(excursions(), [data(...series(kws)), end(kws)]))).toEqual([]);
    const peaky = [...days(4), ...day().map((v, q) => (q === 77 ? 13 : v))]; // 19:15 at 13 kW > 3 × 4 kW
    expect(faults(run(excursions(), [data(...series(peaky)), end(peaky)]))).toHaveLength(1);
  });

  it('judges only after spikeMinHistoryMs (3 days by default)', () => {
    const early = [...days(2), ...day().slice(0, 12), 7, 0.4, 0.4];
    expect(faults(run(excursions(), [data(...series(early)), end(early)]))).toEqual([]);
    const configured = run(
      excursions(new StateStore(), { ...thresholds, spikeMinHistoryMs: 2 * DAY, spikeMinSlotDays: 2 }),
      [data(...series(early)), end(early)],
    );
    expect(faults(configured)).toHaveLength(1);
  });

  it('keeps a spike out of the baseline: a second one at the same hour the next day is judged against the normal', () => {
    const kws = [...withTail([7, 0.4]), ...day().slice(14), ...day().slice(0, 12), 7, 0.4, 0.4];
    expect(faults(run(excursions(), [data(...series(kws)), end(kws)])).map((f) => f.windowStart)).toEqual([
      at(12),
      at(12) + DAY,
    ]);
  });

  it('releases a held reading when the watermark reaches the end of its hour, unreported when the meter went silent', () => {
    const kws = withTail([7]);
    const out = run(excursions(), [data(...series(kws)), wm(at(12) + HOUR / 2)]);
    expect(readingsOut(out)).toHaveLength(kws.length - 1);
    const released = run(excursions(), [data(...series(kws)), wm(T0 + 4 * DAY + 4 * HOUR)]);
    expect(readingsOut(released)).toHaveLength(kws.length);
    expect(faults(released)).toEqual([]);
  });

  it('a run resumed from a snapshot taken while a reading is held emits what an uninterrupted run does', () => {
    const kws = withTail([7, 0.4, 0.4]);
    // Fresh readings per run: a detector flags the readings it excludes in place.
    const readings = series(kws);
    const cut = kws.length - 2; // the candidate is held, its follower not yet in
    const whole = run(excursions(), [data(...series(kws)), end(kws)]);
    const store = new StateStore();
    const before = run(excursions(store), [data(...readings.slice(0, cut))]);
    const resumed = new StateStore();
    resumed.restore(deserializeSnapshot(serializeSnapshot(store.snapshot())));
    const after = run(excursions(resumed), [data(...readings.slice(cut)), end(kws)]);
    expect(faults([...before, ...after])).toEqual(faults(whole));
    expect(readingsOut([...before, ...after]).map((r) => [r.ts, r.flags])).toEqual(
      readingsOut(whole).map((r) => [r.ts, r.flags]),
    );
  });
});
