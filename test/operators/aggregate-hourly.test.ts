import fc from 'fast-check';
import { from, type Observable, of, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, type FlowEvent, LATE, SideInput, StateStore } from '../../core/index.js';
import { aggregateHourly, faultsBesideReadings } from '../../operators/aggregate-hourly.js';
import { detectStuckMeter } from '../../operators/detect-stuck-meter.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { FaultEvent, HourlyConsumption, Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { HOUR, INTERVAL, MINUTE, reading, registryOf, T0 } from './fixtures.js';

function registry(): SideInput<MeterRegistry> {
  const side = new SideInput<MeterRegistry>(
    'registry',
    of(registryOf({ meterId: 'M1', neighborhood: 'N-01' }, { meterId: 'M2', neighborhood: 'N-02' })),
  );
  side.connect((err) => {
    throw err;
  });
  return side;
}

const r = (meterId: string, ts: number, kw: number | null, partial: Partial<Reading> = {}): Reading =>
  reading({ meterId, ts, kw, ...partial });

const hourly = (
  partial: Partial<HourlyConsumption> & Pick<HourlyConsumption, 'meterId' | 'hour'>,
): HourlyConsumption => ({
  neighborhood: partial.meterId === 'M2' ? 'N-02' : 'N-01',
  avgKw: 1,
  minKw: 1,
  maxKw: 1,
  stddevKw: 0,
  count: 1,
  ...partial,
});

function run(events: FlowEvent<Reading>[], allowedLatenessMs = 0): FlowEvent<HourlyConsumption>[] {
  const out: FlowEvent<HourlyConsumption>[] = [];
  from(events)
    .pipe(aggregateHourly(new StateStore(), registry(), { allowedLatenessMs }))
    .subscribe((e) => out.push(e));
  return out;
}

const rows = (events: FlowEvent<HourlyConsumption>[]) =>
  events.flatMap((e) => (e.kind === 'data' ? e.items : []));

describe('aggregateHourly windows', () => {
  it('fires each meter-hour when the watermark reaches the end of the hour, with avg/min/max/stddev/count', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-(d|)', {
        a: data(r('M1', T0, 1), r('M1', T0 + INTERVAL, 2), r('M2', T0, 5), r('M1', T0 + HOUR, 7)),
        b: data(r('M1', T0 + 2 * INTERVAL, 3), r('M1', T0 + 3 * INTERVAL, 4)),
        c: wm(T0 + HOUR - 1),
        d: wm(T0 + HOUR),
      });
      expectObservable(
        input.pipe(aggregateHourly(new StateStore(), registry(), { allowedLatenessMs: 0 })),
      ).toBe('----c-(xd|)', {
        c: wm(T0 + HOUR - 1),
        x: data(
          hourly({
            meterId: 'M1',
            hour: T0,
            avgKw: 2.5,
            minKw: 1,
            maxKw: 4,
            stddevKw: Math.sqrt(1.25),
            count: 4,
          }),
          hourly({ meterId: 'M2', hour: T0, avgKw: 5, minKw: 5, maxKw: 5, count: 1 }),
        ),
        d: wm(T0 + HOUR),
      });
    });
  });

  it('puts 00:59:59.999 in the first hour and 01:00 in the second', () => {
    const out = rows(run([data(r('M1', T0 + HOUR - 1, 1), r('M1', T0 + HOUR, 3)), wm(T0 + 2 * HOUR)]));
    expect(out.map((h) => [h.hour, h.avgKw])).toEqual([
      [T0, 1],
      [T0 + HOUR, 3],
    ]);
  });

  it('gives exactly 0 spread for equal readings (no cancellation error)', () => {
    const out = rows(run([data(...[0, 1, 2, 3].map((k) => r('M1', T0 + k * INTERVAL, 0.1))), wm(T0 + HOUR)]));
    expect(out[0]).toEqual(
      hourly({ meterId: 'M1', hour: T0, avgKw: 0.1, minKw: 0.1, maxKw: 0.1, stddevKw: 0, count: 4 }),
    );
  });

  it('counts measured readings, and leaves out interpolated rows, NULLs, missing rows, faulty meters and over-limit readings', () => {
    const out = rows(
      run([
        data(
          r('M1', T0, 2),
          r('M1', T0 + INTERVAL, 4, { status: 'interpolated', flags: ['interpolated'] }),
          r('M1', T0 + INTERVAL + MINUTE, 4),
          r('M1', T0 + 2 * INTERVAL, null, { flags: ['MISSING_READING'] }),
          r('M1', T0 + 3 * INTERVAL, null, { status: 'missing', flags: ['missing_short'] }),
          r('M1', T0 + 3 * INTERVAL + MINUTE, 9, { flags: ['fault_excluded'] }),
          r('M2', T0, 9, { flags: ['spike', 'fault_excluded'] }),
          r('M2', T0 + INTERVAL, 25, { flags: ['over_limit'] }),
        ),
        wm(T0 + HOUR),
      ]),
    );
    expect(out).toEqual([
      hourly({ meterId: 'M1', hour: T0, avgKw: 3, minKw: 2, maxKw: 4, stddevKw: 1, count: 2 }),
    ]);
  });

  it('leaves out readings scored below minQualityScore (the quarantine tier), keeps 70 and above', () => {
    const events = [
      data(
        r('M1', T0, 2, { qualityScore: 70 }),
        r('M1', T0 + INTERVAL, 4, { qualityScore: 90 }),
        r('M1', T0 + 2 * INTERVAL, 50, { qualityScore: 69 }),
      ),
      wm(T0 + HOUR),
    ];
    const out: FlowEvent<HourlyConsumption>[] = [];
    from(events)
      .pipe(aggregateHourly(new StateStore(), registry(), { allowedLatenessMs: 0, minQualityScore: 70 }))
      .subscribe((e) => out.push(e));
    expect(rows(out)).toEqual([
      hourly({ meterId: 'M1', hour: T0, avgKw: 3, minKw: 2, maxKw: 4, stddevKw: 1, count: 2 }),
    ]);
    // Without the cut (the operator's default), the low-scored reading counts.
    expect(rows(run(events))[0]!.count).toBe(3);
  });

  it('an hour with nothing countable emits nothing', () => {
    expect(rows(run([data(r('M1', T0, null, { flags: ['MISSING_READING'] })), wm(T0 + HOUR)]))).toEqual([]);
  });

  it('leaves the neighborhood empty for a meter the registry does not know', () => {
    expect(rows(run([data(r('M9', T0, 1)), wm(T0 + HOUR)]))[0]!.neighborhood).toBe('');
  });
});

describe('aggregateHourly late data', () => {
  it('re-fires the whole hour within the allowed lateness, and sends later readings to the late output', () => {
    const lateOne = r('M1', T0 + INTERVAL, 3);
    const tooLate = r('M1', T0 + 2 * INTERVAL, 5);
    const out = run(
      [data(r('M1', T0, 1)), wm(T0 + HOUR), data(lateOne), wm(T0 + HOUR + 10 * MINUTE), data(tooLate)],
      10 * MINUTE,
    );
    expect(out).toEqual([
      data(hourly({ meterId: 'M1', hour: T0, avgKw: 1, count: 1 })),
      wm(T0 + HOUR),
      data(hourly({ meterId: 'M1', hour: T0, avgKw: 2, minKw: 1, maxKw: 3, stddevKw: 1, count: 2 })),
      wm(T0 + HOUR + 10 * MINUTE),
      { kind: 'tagged', tag: LATE.name, items: [tooLate] },
    ]);
  });
});

describe('aggregateHourly properties', () => {
  it('agrees with a batch group-by over (meter, hour) for any readings', () => {
    const item = fc.record({
      meter: fc.constantFrom('M1', 'M2'),
      minute: fc.nat(6 * 60 - 1),
      kw: fc.integer({ min: 0, max: 200_000 }).map((n) => n / 10_000),
    });
    fc.assert(
      fc.property(fc.array(item, { maxLength: 80 }), (items) => {
        const readings = items.map((i) => r(i.meter, T0 + i.minute * MINUTE, i.kw));
        const out = rows(run([data(...readings), wm(T0 + 6 * HOUR)]));
        const groups = new Map<string, number[]>();
        for (const x of readings) {
          const k = `${x.meterId}@${Math.floor((x.ts - T0) / HOUR)}`;
          groups.set(k, [...(groups.get(k) ?? []), x.kw!]);
        }
        expect(out).toHaveLength(groups.size);
        for (const h of out) {
          const values = groups.get(`${h.meterId}@${(h.hour - T0) / HOUR}`)!;
          const mean = values.reduce((a, b) => a + b, 0) / values.length;
          const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
          expect(h.count).toBe(values.length);
          expect(h.avgKw).toBeCloseTo(mean, 9);
          expect(h.stddevKw).toBeCloseTo(sd, 6);
          expect(h.minKw).toBe(Math.min(...values));
          expect(h.maxKw).toBe(Math.max(...values));
        }
      }),
    );
  });
});

describe('aggregateHourly: a zero or stuck fault takes its whole window out (faultHoldMs)', () => {
  const HOLD = 2 * HOUR;
  // M1 reads 1..4 kW, is stuck at 5 kW from 01:00 to 03:45 (recognised at 02:45, after 2 h), then varies.
  const values = (k: number): number => (k >= 4 && k < 16 ? 5 : 1 + (k % 4));
  const readings = Array.from({ length: 20 }, (_, k) => r('M1', T0 + k * INTERVAL, values(k)));
  const stuckThenHourly = (faultHoldMs: number) => {
    const store = new StateStore();
    const stuck = detectStuckMeter(store, { stuckMinDurationMs: 2 * HOUR, stuckToleranceKw: 0 });
    const hourlyOf = aggregateHourly(store, registry(), { allowedLatenessMs: 0, faultHoldMs });
    return (source: Observable<FlowEvent<Reading>>) =>
      hourlyOf(faultsBesideReadings<Reading>()(stuck(source)));
  };
  const row = (hour: number, kws: number[]): HourlyConsumption => {
    const mean = kws.reduce((a, b) => a + b, 0) / kws.length;
    const variance = kws.reduce((a, b) => a + (b - mean) ** 2, 0) / kws.length;
    return hourly({
      meterId: 'M1',
      hour,
      avgKw: mean,
      minKw: Math.min(...kws),
      maxKw: Math.max(...kws),
      stddevKw: Math.sqrt(variance),
      count: kws.length,
    });
  };

  it('emits an hour once the watermark passes its end plus the hold, without the stuck hours from the fault start', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-----b-----c-----|', {
        a: data(...readings),
        b: wm(T0 + HOUR + HOLD),
        c: wm(T0 + 7 * HOUR),
      });
      // The fault (start 01:00, recognised 02:45) is known before any of its hours is due: hours 01:00,
      // 02:00 and 03:00 never appear (from 02:45 on the detector flags the readings itself).
      expectObservable(input.pipe(stuckThenHourly(HOLD))).toBe('------(xb)--(yc)--(e|)', {
        x: data(row(T0, [1, 2, 3, 4])),
        b: wm(T0 + HOUR),
        y: data(row(T0 + 4 * HOUR, [1, 2, 3, 4])),
        c: wm(T0 + 5 * HOUR),
        e: wm(T0 + 7 * HOUR),
      });
    });
  });

  it('gives the same rows whatever the batches, and with no hold keeps the hours before recognition', () => {
    const hours = (events: FlowEvent<Reading>[], hold: number) =>
      rows(runEvents(stuckThenHourly(hold), events)).map((h) => [h.hour, h.count]);
    const oneBatch = hours([data(...readings), wm(T0 + 5 * HOUR)], HOLD);
    expect(oneBatch).toEqual([
      [T0, 4],
      [T0 + 4 * HOUR, 4],
    ]);
    const perReading = [...readings.flatMap((x) => [data(x), wm(x.ts - HOUR)]), wm(T0 + 5 * HOUR)];
    expect(hours(perReading, HOLD)).toEqual(oneBatch);
    // Without the hold the stuck readings before recognition stay in their hours.
    expect(hours([data(...readings), wm(T0 + 5 * HOUR)], 0)).toEqual([
      [T0, 4],
      [T0 + HOUR, 4],
      [T0 + 2 * HOUR, 3],
      [T0 + 4 * HOUR, 4],
    ]);
  });

  it('counts a reading behind the held watermark in its open hour, and sends it to late once the hour fired', () => {
    const store = new StateStore();
    const events: FlowEvent<Reading | FaultEvent>[] = [
      data(r('M1', T0 + 10 * MINUTE, 1)),
      // Releases 00:10; the hour 00:00 fires only at its end plus the hold.
      wm(T0 + HOUR + HOLD - 1),
      // Behind the held watermark (00:20 + hold <= watermark), its hour still open: counted at once.
      data(r('M1', T0 + 20 * MINUTE, 3)),
      wm(T0 + HOUR + HOLD),
      // Its hour has fired: late.
      data(r('M1', T0 + 30 * MINUTE, 5)),
      wm(T0 + 2 * HOUR + HOLD),
    ];
    const out: FlowEvent<HourlyConsumption>[] = [];
    from(events)
      .pipe(aggregateHourly(store, registry(), { allowedLatenessMs: 0, faultHoldMs: HOLD }))
      .subscribe((e) => out.push(e));
    expect(rows(out)).toEqual([
      hourly({ meterId: 'M1', hour: T0, avgKw: 2, minKw: 1, maxKw: 3, stddevKw: 1, count: 2 }),
    ]);
    const late = out.flatMap((e) => (e.kind === 'tagged' && e.tag === LATE.name ? e.items : []));
    expect(late).toEqual([expect.objectContaining({ meterId: 'M1', ts: T0 + 30 * MINUTE, kw: 5 })]);
    // Watermarks leave minus the hold; nothing is kept once every hour fired and nothing is held.
    expect(out.filter((e) => e.kind === 'watermark')).toEqual([
      wm(T0 + HOUR - 1),
      wm(T0 + HOUR),
      wm(T0 + 2 * HOUR),
      // The end of input: the last watermark moved on by the hold, less the hold.
      wm(T0 + 2 * HOUR + HOLD),
    ]);
    expect(store.keyed('aggregateHourly').size).toBe(0);
  });

  describe('every meter\u2019s hours, released and fired by watermark', () => {
    // Numbered in first-seen order, which is not the id order: rows must still come in id order.
    const ids = ['M9', 'M3', 'M10', 'M1', 'M20'];
    const fleet = (hours: number) =>
      Array.from({ length: hours * 4 }, (_, k) =>
        ids.map((id, i) => r(id, T0 + k * INTERVAL, 1 + ((k * (i + 3)) % 7))),
      );
    const events = (): FlowEvent<Reading | FaultEvent>[] => {
      const out: FlowEvent<Reading | FaultEvent>[] = [];
      const minutes = fleet(5);
      for (let k = 0; k < minutes.length; k++) {
        out.push(data(...minutes[k]!));
        // Every 40 min, a watermark 20 min behind the data: hours fire a few at a time.
        if (k % 3 === 2) out.push(wm(T0 + k * INTERVAL - 20 * MINUTE + HOLD));
      }
      out.push(wm(T0 + 6 * HOUR + HOLD));
      return out;
    };
    /** Without `end`, the input stays open (a worker killed there): no end-of-input watermark. */
    const runFrom = (store: StateStore, input: FlowEvent<Reading | FaultEvent>[], end = true) => {
      const out: FlowEvent<HourlyConsumption>[] = [];
      const source = new Subject<FlowEvent<Reading | FaultEvent>>();
      source
        .pipe(aggregateHourly(store, registry(), { allowedLatenessMs: 0, faultHoldMs: HOLD }))
        .subscribe((e) => out.push(e));
      for (const e of input) source.next(e);
      if (end) source.complete();
      return out;
    };
    const sortedIds = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

    it('fires every meter\u2019s hour in meter-id order, with no timer (one release pass a watermark)', () => {
      const store = new StateStore();
      const all = events();
      // Up to the first watermark that releases two hours' readings: both hours open, none fired.
      const cut = all.findIndex((e) => e.kind === 'watermark' && e.time >= T0 + HOUR + HOLD + 30 * MINUTE);
      runFrom(store, all.slice(0, cut + 1), false);
      expect(store.timers('aggregateHourly').size).toBe(0);
      const out = runFrom(new StateStore(), all);
      const batches = out.flatMap((e) => (e.kind === 'data' ? [e.items] : []));
      expect(batches.flat()).toHaveLength(5 * ids.length);
      for (const batch of batches) {
        const order = batch.map((h) => [h.hour, h.meterId]);
        const hours = [...new Set(batch.map((h) => h.hour))].sort((a, b) => a - b);
        expect(order).toEqual(hours.flatMap((hour) => sortedIds.map((id) => [hour, id])));
      }
    });

    it('a run restored at any cut, from its own checkpoint or one with the timers of layouts 8 to 10, emits what an uninterrupted one does', () => {
      const all = events();
      const uninterrupted = runFrom(new StateStore(), all);
      for (let cut = 1; cut < all.length; cut += 3) {
        for (const legacy of [false, true]) {
          const first = new StateStore();
          const before = runFrom(first, all.slice(0, cut), false);
          if (legacy) {
            // Layout 8: a `release` timer per meter holding readings, an `end:<start>` timer per meter and
            // open hour (9 and 10 kept one of these per hour, under the first meter): what the lists say.
            const queue = first.timers('aggregateHourly');
            const index = first.denseKeys('meters');
            const held = first.vectors('aggregateHourly/held', 'meters');
            const hours = first.vectors('aggregateHourly/hours', 'meters');
            for (let n = 0; n < index.size; n++) {
              const id = index.keyOf(n)!;
              if (held.length(n) > 0) queue.set(id, 'release', held.array(n)[held.start(n)]! + HOLD);
              for (let j = 0; j < hours.length(n); j += 7) {
                const start = hours.array(n)[j]!;
                queue.set(id, `end:${start}`, start + HOUR + HOLD);
              }
            }
          }
          const resumed = new StateStore();
          resumed.restore(deserializeSnapshot(first.serialize()));
          expect([...before, ...runFrom(resumed, all.slice(cut))]).toEqual(uninterrupted);
          // The old timers were dropped, not kept in every checkpoint after.
          expect(resumed.timers('aggregateHourly').size).toBe(0);
        }
      }
    });

    it('keeps meter-id order when the store is restored in place with its meters numbered otherwise', () => {
      const store = new StateStore();
      const source = new Subject<FlowEvent<Reading | FaultEvent>>();
      const out: FlowEvent<HourlyConsumption>[] = [];
      source
        .pipe(aggregateHourly(store, registry(), { allowedLatenessMs: 0, faultHoldMs: HOLD }))
        .subscribe((e) => out.push(e));
      source.next(data(r('M9', T0, 1), r('M3', T0, 2)));
      source.next(wm(T0 + HOUR + HOLD));
      // Another run numbered M1, M20, M3 (and never saw M9), its next hour open: numbers 0 and 1 now name
      // keys in the other order than M9 and M3 did.
      const other = new StateStore();
      runFrom(
        other,
        [
          data(r('M1', T0 + HOUR, 5), r('M20', T0 + HOUR, 4), r('M3', T0 + HOUR, 6)),
          wm(T0 + HOUR + HOLD + MINUTE),
        ],
        false,
      );
      store.restore(deserializeSnapshot(other.serialize()));
      source.next(wm(T0 + 2 * HOUR + HOLD));
      expect(rows(out).map((h) => [(h.hour - T0) / HOUR, h.meterId])).toEqual([
        [0, 'M3'],
        [0, 'M9'],
        [1, 'M1'],
        [1, 'M20'],
        [1, 'M3'],
      ]);
    });

    it('for any readings, batches and watermarks: every meter-hour once, in (hour, meter id) order within a batch', () => {
      fc.assert(
        fc.property(
          fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9-]{1,6}$/), { minLength: 1, maxLength: 6 }),
          fc.array(fc.tuple(fc.nat({ max: 5 }), fc.integer({ min: 0, max: 8 * 60 - 1 })), { maxLength: 80 }),
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
          (meterIds, picks, cuts) => {
            // Distinct (meter, minute) readings in event-time order, cut into batches at the given sizes.
            const seen = new Set<string>();
            const readings = picks
              .map(([m, minute]) => r(meterIds[m % meterIds.length]!, T0 + minute * MINUTE, 1 + (minute % 5)))
              .filter((x) => !seen.has(`${x.meterId}@${x.ts}`) && seen.add(`${x.meterId}@${x.ts}`))
              .sort((a, b) => a.ts - b.ts);
            const input: FlowEvent<Reading | FaultEvent>[] = [];
            let i = 0;
            for (let c = 0; i < readings.length; c++) {
              const batch = readings.slice(i, i + cuts[c % cuts.length]!);
              i += batch.length;
              input.push(data(...batch));
              // Below the next batch's first time (no reading is late), moved on by the hold.
              const next = readings[i];
              if (next !== undefined) input.push(wm(next.ts - 1 + HOLD));
            }
            input.push(wm(T0 + 9 * HOUR + HOLD));
            const out = runFrom(new StateStore(), input);
            const expected = new Map<string, number>();
            for (const x of readings) {
              const key = `${Math.floor((x.ts - T0) / HOUR)}|${x.meterId}`;
              expected.set(key, (expected.get(key) ?? 0) + 1);
            }
            const got = rows(out);
            expect(new Map(got.map((h) => [`${(h.hour - T0) / HOUR}|${h.meterId}`, h.count]))).toEqual(
              expected,
            );
            expect(got).toHaveLength(expected.size);
            for (const e of out) {
              if (e.kind !== 'data') continue;
              for (let j = 1; j < e.items.length; j++) {
                const a = e.items[j - 1]!;
                const b = e.items[j]!;
                expect(a.hour < b.hour || (a.hour === b.hour && a.meterId < b.meterId)).toBe(true);
              }
            }
          },
        ),
      );
    });
    it('for any readings, faults, late readings, batches and watermarks: what releasing every meter at every watermark gives', () => {
      // The reference: the semantics of a release timer per meter and an end timer per hour, written as the
      // naive pass they amount to (a timer fired at the first watermark at or past it, and did nothing when
      // nothing was due): at every watermark, every meter releases what is due and drops ended exclusions,
      // then every open hour that ended fires in (hour, meter id) order.
      const model = (input: readonly FlowEvent<Reading | FaultEvent>[]): unknown[] => {
        const out: unknown[] = [];
        const held = new Map<string, [number, number][]>();
        const excl = new Map<string, [number, number][]>();
        const open = new Map<string, [number, number, number, number, number, number, number][]>();
        let wm = Number.NEGATIVE_INFINITY;
        let last = Number.NEGATIVE_INFINITY;
        const count = (id: string, ts: number, kw: number): void => {
          const start = Math.floor(ts / HOUR) * HOUR;
          const hours = open.get(id) ?? [];
          open.set(id, hours);
          const h = hours.find((x) => x[0] === start);
          if (h === undefined) hours.push([start, 1, kw, 0, 0, kw, kw]);
          else {
            if (kw < h[5]) h[5] = kw;
            else if (kw > h[6]) h[6] = kw;
            const d = kw - h[2];
            h[1]++;
            h[3] += d;
            h[4] += d * d;
          }
        };
        const watermark = (time: number): void => {
          wm = time;
          for (const [id, list] of held) {
            while (list.length > 0 && list[0]![0] + HOLD <= wm) {
              const [ts, kw] = list.shift()!;
              count(id, ts, kw);
            }
          }
          for (const [id, list] of excl) {
            const kept = list.filter(([, to]) => to >= wm);
            if (kept.length === 0) excl.delete(id);
            else excl.set(id, kept);
          }
          const due: [number, string, number[]][] = [];
          for (const [id, hours] of open)
            for (const h of [...hours])
              if (h[0] + HOUR + HOLD <= wm) {
                due.push([h[0], id, h]);
                hours.splice(hours.indexOf(h as never), 1);
              }
          due.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
          for (const [, id, h] of due) {
            const mean = h[3]! / h[1]!;
            const variance = h[4]! / h[1]! - mean * mean;
            out.push([
              'row',
              id,
              h[0],
              h[1],
              h[2]! + mean,
              h[5],
              h[6],
              variance > 0 ? Math.sqrt(variance) : 0,
            ]);
          }
          out.push(['wm', wm - HOLD]);
        };
        for (const e of input) {
          if (e.kind === 'watermark') {
            last = e.time;
            watermark(e.time);
          } else if (e.kind === 'data')
            for (const item of e.items) {
              const id = item.meterId;
              if ('faultType' in item) {
                if (item.faultType !== 'zero' && item.faultType !== 'stuck') continue;
                const from = item.windowStart;
                const to = item.detectedAt;
                excl.set(id, [...(excl.get(id) ?? []), [from, to]]);
                held.set(
                  id,
                  (held.get(id) ?? []).filter(([ts]) => ts < from || ts > to),
                );
                continue;
              }
              const ts = item.ts;
              if ((excl.get(id) ?? []).some(([from, to]) => ts >= from && ts <= to)) continue;
              if (ts + HOLD <= wm) {
                if (Math.floor(ts / HOUR) * HOUR + HOUR + HOLD <= wm) out.push(['late', id, ts]);
                else count(id, ts, item.kw!);
              } else held.set(id, [...(held.get(id) ?? []), [ts, item.kw!]]);
            }
        }
        if (last !== Number.NEGATIVE_INFINITY) watermark(last + HOLD);
        return out;
      };
      const tokens = (events: readonly FlowEvent<HourlyConsumption>[]): unknown[] =>
        events.flatMap((e) =>
          e.kind === 'watermark'
            ? [['wm', e.time]]
            : e.kind === 'data'
              ? e.items.map((h) => ['row', h.meterId, h.hour, h.count, h.avgKw, h.minKw, h.maxKw, h.stddevKw])
              : e.kind === 'tagged' && e.tag === LATE.name
                ? (e.items as Reading[]).map((x) => ['late', x.meterId, x.ts])
                : [],
        );
      // A step: readings of some meters at the clock's next minutes, a fault, a reading far behind (some in
      // the last fault's window), or a watermark moved by 0 to 4 h (several hours' releases and ends in one
      // pass), some to the last fault's end or just past it (its exclusion kept, or dropped).
      const step = fc.oneof(
        fc.record({
          kind: fc.constant('readings' as const),
          meters: fc.array(fc.nat({ max: 4 }), { minLength: 1, maxLength: 6 }),
          gap: fc.integer({ min: 1, max: 40 }),
        }),
        fc.record({
          kind: fc.constant('fault' as const),
          meter: fc.nat({ max: 4 }),
          type: fc.constantFrom('zero', 'stuck', 'overload'),
          back: fc.integer({ min: 0, max: 150 }),
          length: fc.integer({ min: 0, max: 300 }),
        }),
        fc.record({
          kind: fc.constant('behind' as const),
          meter: fc.nat({ max: 4 }),
          back: fc.integer({ min: 0, max: 150 }),
          inFault: fc.boolean(),
        }),
        fc.record({
          kind: fc.constant('watermark' as const),
          advance: fc.integer({ min: 0, max: 240 }),
          snap: fc.constantFrom(0, 0, 1, 2),
        }),
      );
      const ids = ['M9', 'M3', 'M10', 'M1', 'M20'];
      fc.assert(
        fc.property(fc.array(step, { maxLength: 60 }), fc.integer({ min: 1, max: 200 }), (steps, cut) => {
          // A first watermark: a reading behind it is never held, and held readings stay in event-time order
          // per meter, as the stage's input keeps them (orderByEventTime quarantines the others upstream).
          const input: FlowEvent<Reading | FaultEvent>[] = [wm(T0)];
          let batch: (Reading | FaultEvent)[] = [];
          const flush = (): void => {
            if (batch.length > 0) input.push(data(...batch));
            batch = [];
          };
          let clock = T0;
          let w = T0;
          let kw = 0;
          let lastFault: { meter: number; from: number; to: number } | undefined;
          for (const s of steps) {
            if (s.kind === 'readings') {
              clock += s.gap * MINUTE;
              for (const m of new Set(s.meters)) batch.push(r(ids[m]!, clock, 1 + (kw++ % 7)));
            } else if (s.kind === 'fault') {
              const to = clock - s.back * MINUTE;
              if (s.type !== 'overload') lastFault = { meter: s.meter, from: to - s.length * MINUTE, to };
              batch.push({
                meterId: ids[s.meter]!,
                faultType: s.type,
                windowStart: to - s.length * MINUTE,
                windowEnd: to,
                detectedAt: to,
                evidence: '{}',
              });
            } else if (s.kind === 'behind') {
              // At or behind the held watermark: counted into its open hour, or late (or excluded).
              const f = s.inFault ? lastFault : undefined;
              const ts = Math.min(
                w - HOLD,
                f === undefined ? w - HOLD - s.back * MINUTE : f.to - s.back * MINUTE,
              );
              batch.push(r(ids[f === undefined ? s.meter : f.meter]!, ts, 1 + (kw++ % 7)));
            } else {
              w = Math.max(w, clock - HOUR) + s.advance * MINUTE;
              if (s.snap > 0 && lastFault !== undefined) w = Math.max(w, lastFault.to + s.snap - 1);
              flush();
              input.push(wm(w));
            }
          }
          flush();
          const expected = model(input);
          expect(tokens(runFrom(new StateStore(), input))).toEqual(expected);
          // … and the same from a checkpoint taken at any cut, the stage built afresh on the restored store
          // (one a watermark follows: the end of input moves on the last watermark the worker saw).
          const at = cut % (input.length + 1);
          if (!input.slice(at).some((e) => e.kind === 'watermark')) return;
          const first = new StateStore();
          const before = runFrom(first, input.slice(0, at), false);
          const resumed = new StateStore();
          resumed.restore(deserializeSnapshot(first.serialize()));
          expect(tokens([...before, ...runFrom(resumed, input.slice(at))])).toEqual(expected);
        }),
        { numRuns: 300 },
      );
    });
  });

  it('refuses a fault hold with allowed lateness: an hour under the hold fires once', () => {
    expect(() =>
      aggregateHourly(new StateStore(), registry(), { allowedLatenessMs: HOUR, faultHoldMs: HOLD }),
    ).toThrow(/allowedLatenessMs must be 0/);
  });

  it('reads FAULTS beside the readings and passes no tagged event on (the trunk routes them to the sinks)', () => {
    const out = runEvents(stuckThenHourly(HOLD), [data(...readings), wm(T0 + 5 * HOUR)]);
    expect(out.filter((e) => e.kind === 'tagged')).toEqual([]);
  });
});

function runEvents(
  transform: (s: Observable<FlowEvent<Reading>>) => Observable<FlowEvent<HourlyConsumption>>,
  events: FlowEvent<Reading>[],
): FlowEvent<HourlyConsumption>[] {
  const out: FlowEvent<HourlyConsumption>[] = [];
  from(events)
    .pipe(transform)
    .subscribe((e) => out.push(e));
  return out;
}
