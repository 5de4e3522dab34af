import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, LATE, StateStore } from '../../core/index.js';
import { rankDailyPeaks } from '../../operators/rank-daily-peaks.js';
import type { DailyPeak, HourlyConsumption } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { DAY, HOUR, T0 } from './fixtures.js';

const thresholds = { topHoursPerDay: 3, timeZoneOffsetMinutes: 0 };

const h = (meterId: string, hour: number, avgKw: number): HourlyConsumption => ({
  meterId,
  neighborhood: 'N-01',
  hour,
  avgKw,
  minKw: avgKw,
  maxKw: avgKw,
  stddevKw: 0,
  count: 4,
});
const peak = (day: number, hour: number, totalKw: number, rank: number): DailyPeak => ({
  day,
  hour,
  totalKw,
  rank,
});

function run(events: FlowEvent<HourlyConsumption>[], t = thresholds): FlowEvent<DailyPeak>[] {
  const out: FlowEvent<DailyPeak>[] = [];
  from(events)
    .pipe(rankDailyPeaks(new StateStore(), t))
    .subscribe((e) => out.push(e));
  return out;
}
const peaks = (events: FlowEvent<DailyPeak>[]) => events.flatMap((e) => (e.kind === 'data' ? e.items : []));

describe('rankDailyPeaks', () => {
  it('ranks the hours of a day by the sum over meters when the watermark reaches the end of the day', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<HourlyConsumption>>('a-b-c-(d|)', {
        a: data(h('M1', T0 + 17 * HOUR, 3), h('M2', T0 + 17 * HOUR, 4), h('M1', T0 + 8 * HOUR, 6)),
        b: data(h('M2', T0 + 18 * HOUR, 5.5), h('M1', T0 + 2 * HOUR, 0.5), h('M2', T0 + DAY, 100)),
        c: wm(T0 + DAY - 1),
        d: wm(T0 + DAY),
      });
      expectObservable(input.pipe(rankDailyPeaks(new StateStore(), thresholds))).toBe('----c-(xd|)', {
        c: wm(T0 + DAY - 1),
        x: data(
          peak(T0, T0 + 17 * HOUR, 7, 1),
          peak(T0, T0 + 8 * HOUR, 6, 2),
          peak(T0, T0 + 18 * HOUR, 5.5, 3),
        ),
        d: wm(T0 + DAY),
      });
    });
  });

  it('breaks ties by the earlier hour and leaves out hours without data', () => {
    const out = peaks(run([data(h('M1', T0 + 20 * HOUR, 2), h('M1', T0 + 9 * HOUR, 2)), wm(T0 + DAY)]));
    expect(out).toEqual([peak(T0, T0 + 9 * HOUR, 2, 1), peak(T0, T0 + 20 * HOUR, 2, 2)]);
  });

  it('rounds totals to 4 decimals, so the order of arrival cannot reorder near-equal hours', () => {
    const out = peaks(
      run([
        data(h('M1', T0 + 5 * HOUR, 0.1), h('M2', T0 + 5 * HOUR, 0.2), h('M1', T0 + 4 * HOUR, 0.3)),
        wm(T0 + DAY),
      ]),
    );
    expect(out).toEqual([peak(T0, T0 + 4 * HOUR, 0.3, 1), peak(T0, T0 + 5 * HOUR, 0.3, 2)]);
  });

  it('keeps days apart and fires each at its own end', () => {
    const out = run([
      data(h('M1', T0 + DAY + HOUR, 1), h('M1', T0 + HOUR, 2)),
      wm(T0 + DAY),
      wm(T0 + 2 * DAY),
    ]);
    expect(out).toEqual([
      data(peak(T0, T0 + HOUR, 2, 1)),
      wm(T0 + DAY),
      data(peak(T0 + DAY, T0 + DAY + HOUR, 1, 1)),
      wm(T0 + 2 * DAY),
    ]);
  });

  it('sends an hourly row for a day already ranked to the late output', () => {
    const lateRow = h('M1', T0 + 3 * HOUR, 9);
    const out = run([data(h('M1', T0 + HOUR, 2)), wm(T0 + DAY), data(lateRow), wm(T0 + 2 * DAY)]);
    expect(out).toEqual([
      data(peak(T0, T0 + HOUR, 2, 1)),
      wm(T0 + DAY),
      { kind: 'tagged', tag: LATE.name, items: [lateRow] },
      wm(T0 + 2 * DAY),
    ]);
  });

  it('uses local days: at UTC+2 the day starts at 22:00 UTC', () => {
    const east = { topHoursPerDay: 3, timeZoneOffsetMinutes: 120 };
    const day = T0 - 2 * HOUR;
    const out = run(
      [
        data(h('M1', T0 - 2 * HOUR, 1), h('M1', T0 - 3 * HOUR, 5), h('M1', T0 + 21 * HOUR, 2)),
        wm(T0 + 22 * HOUR),
      ],
      east,
    );
    expect(peaks(out)).toEqual([
      peak(day - DAY, T0 - 3 * HOUR, 5, 1),
      peak(day, T0 + 21 * HOUR, 2, 1),
      peak(day, T0 - 2 * HOUR, 1, 2),
    ]);
  });

  it('handles a half-hour offset: 24 hour slots starting at the first whole UTC hour of the local day', () => {
    const india = { topHoursPerDay: 1, timeZoneOffsetMinutes: 330 };
    // Local day 2024-03-04 runs 2024-03-03T18:30Z – 2024-03-04T18:30Z: its hours start 19:00Z … 18:00Z.
    const day = T0 - 5.5 * HOUR;
    const out = run([data(h('M1', T0 - 5 * HOUR, 1), h('M1', T0 + 18 * HOUR, 3)), wm(day + DAY)], india);
    expect(peaks(out)).toEqual([peak(day, T0 + 18 * HOUR, 3, 1)]);
  });
});

describe('rankDailyPeaks properties', () => {
  it('agrees with a batch group-by and sort for any hourly rows', () => {
    const row = fc.record({
      meter: fc.constantFrom('M1', 'M2', 'M3'),
      hour: fc.nat(3 * 24 - 1),
      kw: fc.nat(50),
    });
    fc.assert(
      fc.property(fc.array(row, { maxLength: 100 }), fc.integer({ min: 1, max: 5 }), (rows, top) => {
        const unique = [...new Map(rows.map((x) => [`${x.meter}@${x.hour}`, x])).values()];
        const out = peaks(
          run([data(...unique.map((x) => h(x.meter, T0 + x.hour * HOUR, x.kw))), wm(T0 + 3 * DAY)], {
            topHoursPerDay: top,
            timeZoneOffsetMinutes: 0,
          }),
        );
        const totals = new Map<number, number>();
        for (const x of unique) totals.set(x.hour, (totals.get(x.hour) ?? 0) + x.kw);
        const expected: DailyPeak[] = [];
        for (let d = 0; d < 3; d++) {
          const hours = [...totals].filter(([hr]) => Math.floor(hr / 24) === d);
          hours.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
          hours.slice(0, top).forEach(([hr, total], i) => {
            expected.push(peak(T0 + d * DAY, T0 + hr * HOUR, total, i + 1));
          });
        }
        expect(out).toEqual(expected);
      }),
    );
  });
});
