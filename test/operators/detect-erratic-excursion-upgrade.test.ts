import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, StateStore } from '../../core/index.js';
import { detectErraticExcursion } from '../../operators/detect-erratic-excursion.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import { data, wm } from '../core/helpers.js';
import { DAY, faults, HOUR, INTERVAL, readingsOut, run, series, T0 } from './fixtures.js';

/**
 * `erratic-excursion-v1.snapshot.json` is the state the previous release (JSON snapshot version 1, state
 * layout meter-quality/5) wrote for the readings below up to `cut`: meter 1 holds a 7 kW candidate, meter
 * 2 has a full history. A worker upgraded in place restores it into the rows and goes on.
 */
const v1 = readFileSync(new URL('./erratic-excursion-v1.snapshot.json', import.meta.url), 'utf8');

const day = (): number[] =>
  Array.from({ length: 96 }, (_, q) => {
    const h = q / 4;
    if (h >= 19 && h < 19.25) return 4;
    if (h >= 18 && h < 20) return 3;
    return h >= 7 && h < 23 ? 1 : 0.4;
  });
const days = (n: number): number[] => Array.from({ length: n }, day).flat();
const kws = [...days(4), ...day().slice(0, 12), 7, 0.4, 0.4];
const cut = kws.length - 2;
const other = days(5).map((v, i) => (i % 7 === 3 ? v * 1.3 : v));
const otherTail = [...other.slice(cut, cut + 2), 9, 0.5, 0.5];
const readings = () =>
  [
    ...series(kws, { meterId: 'MTR-000001' }),
    ...series([...other.slice(0, cut), ...otherTail], { meterId: 'MTR-000002' }),
  ].sort((a, b) => a.ts - b.ts || a.meterId.localeCompare(b.meterId));
const end = wm(T0 + (cut + otherTail.length) * INTERVAL + HOUR);
const excursions = (store: StateStore) => detectErraticExcursion(store, defaultRuleProfile.faults);

describe('detectErraticExcursion restored from a checkpoint of the previous release (JSON, version 1)', () => {
  it.each([
    ['built before the restore', true],
    ['built after the restore', false],
  ])('goes on exactly as an uninterrupted run (operator %s)', (_, buildFirst) => {
    const all = readings();
    const whole = run(excursions(new StateStore()), [data(...readings()), end]);
    const before = all.filter((r) => r.ts < T0 + cut * INTERVAL);
    const after = all.filter((r) => r.ts >= T0 + cut * INTERVAL);
    const store = new StateStore();
    const early = buildFirst ? excursions(store) : undefined;
    store.restore(deserializeSnapshot(v1));
    const transform = early ?? excursions(store);
    const resumed = run(transform, [data(...after), end]);
    // Meter 1's held candidate comes out of the restored state, then the rest in order.
    const wholeOut = readingsOut(whole);
    const upgraded = readingsOut(resumed);
    expect(upgraded.map((r) => [r.meterId, r.ts, r.flags])).toEqual(
      wholeOut.slice(before.length - 1).map((r) => [r.meterId, r.ts, r.flags]),
    );
    expect(faults(resumed)).toEqual(faults(whole));
    expect(faults(whole).map((f) => [f.meterId, f.windowStart])).toEqual([
      ['MTR-000001', T0 + 4 * DAY + 3 * HOUR],
      ['MTR-000002', T0 + (cut + 2) * INTERVAL],
    ]);
    // The upgraded state checkpoints in the binary encoding and restores to the same continuation.
    const bytes = store.beginSnapshot().finish();
    expect(typeof bytes).not.toBe('string');
  });
});
