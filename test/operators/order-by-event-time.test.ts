import fc from 'fast-check';
import { from, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  deserializeSnapshot,
  type FlowEvent,
  type SnapshotData,
  StateStore,
  serializeSnapshot,
  taggedEvent,
} from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { orderByEventTime } from '../../operators/order-by-event-time.js';
import { QUARANTINE } from '../../operators/outputs.js';
import type { QuarantineRecord, Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { DAY, HOUR, INTERVAL, MINUTE, PROCESSED_AT, quarantined, reading, T0 } from './fixtures.js';

const at = (meterId: string, k: number, kw = 1): Reading =>
  reading({ meterId, ts: T0 + k * INTERVAL, kw, rawValue: String(kw) });

/**
 * What a snapshot holds, whether binary (the store's last released times are typed rows) or the JSON text
 * `serialize` prints, with the rows' numbers as plain arrays.
 */
function content(data: SnapshotData): unknown {
  const s = deserializeSnapshot(data);
  const rows = Object.entries(s.rows ?? {}).map(([ns, r]) => [
    ns,
    { ...r, present: Array.from(r.present), data: Array.from(r.data) },
  ]);
  return { ...s, version: 0, rows: Object.fromEntries(rows) };
}

function run(store: StateStore, events: FlowEvent<Reading>[]): FlowEvent<Reading>[] {
  const out: FlowEvent<Reading>[] = [];
  from(events)
    .pipe(orderByEventTime(store))
    .subscribe((e) => out.push(e));
  return out;
}

describe('orderByEventTime releases on the watermark', () => {
  it('holds readings until the watermark reaches them, then releases them sorted by event time', () => {
    const out = run(new StateStore(), [
      data(at('M1', 2), at('M2', 1), at('M1', 0)),
      data(at('M1', 1), at('M2', 0), at('M1', 3)),
      wm(T0 + INTERVAL), // releases ts <= 00:15; equal times in arrival order
      wm(T0 + 2 * INTERVAL + 1),
      wm(T0 + 3 * INTERVAL),
    ]);
    expect(out).toEqual([
      data(at('M1', 0), at('M2', 0), at('M2', 1), at('M1', 1)),
      wm(T0 + INTERVAL),
      data(at('M1', 2)),
      wm(T0 + 2 * INTERVAL + 1),
      data(at('M1', 3)),
      wm(T0 + 3 * INTERVAL),
    ]);
  });

  it('a reading exactly at the watermark goes with it: nothing of its meter can come before it any more', () => {
    // The watermark promises every ts < it has arrived; a reading of the same meter at the same ts is a
    // duplicate, so a reading at the watermark is in order for its meter. Held until the next watermark,
    // readings stamped on a shared second would wait for the next second's readings (live latency).
    const held = run(new StateStore(), [data(at('M1', 4)), wm(T0 + 4 * INTERVAL), wm(T0 + 4 * INTERVAL + 1)]);
    expect(held).toEqual([data(at('M1', 4)), wm(T0 + 4 * INTERVAL), wm(T0 + 4 * INTERVAL + 1)]);
    const straight = run(new StateStore(), [data(at('M1', 0)), wm(T0 + 4 * INTERVAL), data(at('M1', 4))]);
    expect(straight).toEqual([data(at('M1', 0)), wm(T0 + 4 * INTERVAL), data(at('M1', 4))]);
  });

  it('splits a minute the watermark falls into, and sorts within it', () => {
    const [s10, s20, s30, s45] = [10, 20, 30, 45].map((s) => reading({ ts: T0 + s * 1000 }));
    const out = run(new StateStore(), [data(s45, s20, s30, s10), wm(T0 + 29_999), wm(T0 + MINUTE)]);
    expect(out).toEqual([data(s10!, s20!), wm(T0 + 29_999), data(s30!, s45!), wm(T0 + MINUTE)]);
  });
});

describe('orderByEventTime late readings', () => {
  const lateRecord = (r: Reading, reasons: string[]): QuarantineRecord =>
    quarantined({
      meterId: r.meterId,
      ts: r.ts,
      raw: `${r.meterId},${new Date(r.ts).toISOString().replace('.000Z', 'Z')},${r.rawValue},${r.rawUnit}`,
      reasons,
      source: r.source,
      quarantinedAt: PROCESSED_AT,
    });

  it('quarantines a reading at or before its meter\u2019s last released one, with its raw line', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b---(c|)', {
        a: data(at('M1', 0), at('M1', 2)),
        b: wm(T0 + 3 * INTERVAL),
        c: data(at('M1', 1), at('M1', 2, 5), at('M2', 1)),
      });
      expectObservable(input.pipe(orderByEventTime(new StateStore()))).toBe('--(xb)(qy|)', {
        x: data(at('M1', 0), at('M1', 2)),
        b: wm(T0 + 3 * INTERVAL),
        q: taggedEvent(QUARANTINE, [
          lateRecord(at('M1', 1), ['late']),
          lateRecord(at('M1', 2, 5), ['late', 'duplicate_timestamp']),
        ]),
        // M2 released nothing yet: behind the watermark, but still in order for its meter.
        y: data(at('M2', 1)),
      });
    });
  });

  it('passes a reading behind the watermark straight through when its meter has not passed it', () => {
    const out = run(new StateStore(), [
      data(at('M1', 0)),
      wm(T0 + INTERVAL),
      data(at('M1', 5)),
      wm(T0 + 4 * INTERVAL),
      data(at('M1', 2), at('M1', 1)), // 00:30 is behind the watermark but after 00:00; 00:15 then is late
      wm(T0 + 6 * INTERVAL),
    ]);
    expect(out).toEqual([
      data(at('M1', 0)),
      wm(T0 + INTERVAL),
      wm(T0 + 4 * INTERVAL),
      taggedEvent(QUARANTINE, [lateRecord(at('M1', 1), ['late'])]),
      data(at('M1', 2)),
      data(at('M1', 5)),
      wm(T0 + 6 * INTERVAL),
    ]);
  });

  it('keeps the first of two pending readings with the same time and quarantines the second', () => {
    const out = run(new StateStore(), [data(at('M1', 0, 1), at('M1', 0, 2)), wm(T0 + 1)]);
    expect(out).toEqual([
      taggedEvent(QUARANTINE, [lateRecord(at('M1', 0, 2), ['late', 'duplicate_timestamp'])]),
      data(at('M1', 0, 1)),
      wm(T0 + 1),
    ]);
  });
});

describe('orderByEventTime state', () => {
  it('keeps one number per meter once its readings are released', () => {
    const store = new StateStore();
    run(store, [data(at('M1', 0), at('M2', 0), at('M1', 1)), wm(T0 + 10 * INTERVAL)]);
    const snap = store.snapshot();
    // In a typed row by meter number (M1 is 0, M2 1), not a keyed entry.
    expect(snap.keyed.orderByEventTime ?? []).toEqual([]);
    expect(snap.rows?.['orderByEventTime/last']).toMatchObject({
      count: 2,
      present: Uint8Array.of(1, 1),
      data: Float64Array.of(T0 + INTERVAL, T0),
    });
    expect(snap.values['orderByEventTime/pending']).toEqual([]);
  });

  it('releases the very reading objects it took while it runs', () => {
    const first = at('M1', 1);
    const second = at('M1', 0);
    const out = run(new StateStore(), [data(first, second), wm(T0 + 2 * INTERVAL)]);
    const released = out.flatMap((e) => (e.kind === 'data' ? e.items : []));
    expect(released).toHaveLength(2);
    expect(released[0]).toBe(second);
    expect(released[1]).toBe(first);
  });

  it('checkpoints pending readings as columns, the fields most readings share once per minute', () => {
    const store = new StateStore();
    run(store, [
      data(at('M1', 1, 2.5), at('M2', 1, 3), reading({ meterId: 'M3', ts: T0 + INTERVAL + 30_000 })),
    ]);
    const text = store.serialize();
    expect(text).not.toContain('"meterId"');
    const [bucket, ...rest] = JSON.parse(text).values['orderByEventTime/pending'];
    expect(rest).toEqual([]);
    const ids = 'test-record';
    expect(bucket).toEqual({
      s: T0 + INTERVAL,
      g: [
        {
          // meterId, rawValue, rawUnit, recordId, source
          r: ['M1', '2.5', 'kW', ids, 'test', 'M2', '3', 'kW', ids, 'test', 'M3', '1', 'kW', ids, 'test'],
          // ts − s, kW, shared fields
          n: [0, 2.5, 0, 0, 3, 0, 30_000, 1, 0],
        },
      ],
      p: [
        {
          status: 'measured',
          flags: [],
          warnings: 0,
          qualityScore: 100,
          qualityTier: 'premium',
          grade: 'A',
          peakClass: 'standard',
          season: 'spring',
          processedAt: PROCESSED_AT,
          pipelineVersion: 'test',
          nk: false,
        },
      ],
    });
  });

  it('a restored worker releases readings equal to those it took, receivedAt and distinct flags included', () => {
    // As parsing leaves them: receivedAt still on board; a NULL reading and a backdated one among them.
    const parsed = (r: Reading): Reading => Object.assign(r, { receivedAt: T0 + HOUR });
    const taken = [
      parsed(at('M1', 1, 2.5)),
      parsed(
        reading({
          meterId: 'M2',
          ts: T0 + INTERVAL + 10_000,
          kw: null,
          rawValue: '',
          flags: ['MISSING_READING'],
        }),
      ),
      parsed(
        reading({
          meterId: 'M3',
          ts: T0 + INTERVAL + 40_000,
          kw: null,
          rawValue: '',
          flags: ['MISSING_READING'],
        }),
      ),
      reading({
        meterId: 'M4',
        ts: T0 + INTERVAL + 20_000,
        flags: ['backdated'],
        warnings: 1,
        processedAt: 7,
      }),
      parsed(at('M5', 1, 4)),
    ];
    const expected = taken.map((r) => structuredClone(r));
    const first = new StateStore();
    run(first, [data(...taken)]);
    const resumed = new StateStore();
    resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
    // The watermark falls inside the minute: the restored bucket is split too.
    const out = run(resumed, [wm(T0 + INTERVAL + 30_000), wm(T0 + DAY)]);
    const batches = out.flatMap((e) => (e.kind === 'data' ? [e.items] : []));
    expect(batches).toEqual([[expected[0], expected[4], expected[1], expected[3]], [expected[2]]]);
    const [m1, m5, m2, m4] = batches[0]!;
    expect(Object.keys(m1!)).toEqual([
      'meterId',
      'ts',
      'kw',
      'rawValue',
      'rawUnit',
      'status',
      'flags',
      'warnings',
      'qualityScore',
      'qualityTier',
      'grade',
      'peakClass',
      'season',
      'recordId',
      'source',
      'processedAt',
      'pipelineVersion',
      'receivedAt',
    ]);
    expect(m4).not.toHaveProperty('receivedAt');
    expect(m1!.flags).not.toBe(m5!.flags);
    expect(m2!.flags).not.toBe(batches[1]![0]!.flags);
  });

  it('a restored worker keeps the measurements a reading carries, and adds none to those without', () => {
    const withMeasurements = Object.assign(at('M1', 1, 2.5), {
      measurements: { voltage: 231, temperature: null },
    });
    const plain = at('M2', 1, 1.5);
    const expected = [structuredClone(withMeasurements), structuredClone(plain)];
    const first = new StateStore();
    run(first, [data(withMeasurements, plain)]);
    const resumed = new StateStore();
    resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
    const out = run(resumed, [wm(T0 + DAY)]);
    const released = out.flatMap((e) => (e.kind === 'data' ? [...e.items] : []));
    expect(released).toEqual(expected);
    expect(released[1]).not.toHaveProperty('measurements');
  });

  it('a minute of thousands of meters spans several segments, live and restored alike', () => {
    const many = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) =>
        reading({ meterId: `M${from + i}`, ts: T0 + ((from + i) % 60) * 1000, kw: from + i }),
      );
    const events: FlowEvent<Reading>[] = [
      data(...many(0, 1500)),
      data(...many(1500, 2600)),
      wm(T0 + 30_000),
      data(...many(2600, 3000)),
      wm(T0 + MINUTE),
    ];
    const uninterrupted = run(new StateStore(), events);
    const released = uninterrupted.flatMap((e) => (e.kind === 'data' ? e.items : []));
    expect(released).toHaveLength(3000);
    for (const cut of [1, 2, 3, 4]) {
      const first = new StateStore();
      const before = run(first, events.slice(0, cut));
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(first.serialize()));
      expect([...before, ...run(resumed, events.slice(cut))]).toEqual(uninterrupted);
    }
  });

  it('a snapshot prints the pending readings of its barrier a minute at a time, while readings come and go', () => {
    const minute = (k: number, from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) =>
        reading({
          meterId: `M${from + i}`,
          ts: T0 + k * MINUTE + ((from + i) % 60) * 1000,
          kw: (from + i) / 7,
          ...(i % 500 === 0 ? { measurements: { voltage: 230 + i } } : {}),
        }),
      );
    const store = new StateStore();
    const input = new Subject<FlowEvent<Reading>>();
    const released: Reading[] = [];
    input.pipe(orderByEventTime(store)).subscribe((e) => {
      if (e.kind === 'data') released.push(...e.items);
    });
    for (let k = 0; k < 4; k++) input.next(data(...minute(k, 0, 1500)));
    input.next(wm(T0 - 1));
    const atBarrier = store.serialize();
    const snapshot = store.beginSnapshot();
    // A zero deadline prints one minute at most: the changes below interleave with the steps.
    expect(snapshot.step(0)).toBe(false);
    input.next(data(...minute(4, 0, 1500)));
    input.next(wm(T0 + MINUTE + 30_000)); // the first minute and half of the second leave
    expect(released.length).toBeGreaterThan(2000);
    snapshot.step(0);
    input.next(data(...minute(3, 1500, 2600))); // into a minute already pending
    expect(content(snapshot.finish())).toEqual(content(atBarrier));
    // The barrier's pending readings come back from the text.
    const resumed = new StateStore();
    resumed.restore(deserializeSnapshot(atBarrier));
    expect(
      run(resumed, [wm(Number.POSITIVE_INFINITY)]).flatMap((e) => (e.kind === 'data' ? e.items : [])),
    ).toHaveLength(6000);
  });

  it('a snapshot holds its barrier\u2019s pending readings, however they are changed downstream after leaving', () => {
    const store = new StateStore();
    const input = new Subject<FlowEvent<Reading>>();
    const released: Reading[] = [];
    input.pipe(orderByEventTime(store)).subscribe((e) => {
      if (e.kind === 'data') released.push(...e.items);
    });
    input.next(
      data(
        Object.assign(at('M1', 1, 2.5), { measurements: { voltage: 231 } }),
        at('M2', 1, 3),
        at('M3', 2, 4),
      ),
    );
    const atBarrier = store.serialize();
    const snapshot = store.beginSnapshot();
    input.next(wm(T0 + DAY));
    expect(released).toHaveLength(3);
    // What later stages do to a reading: flags and scores in place, a measurement dropped.
    for (const r of released) {
      addFlag(r, 'spike');
      r.qualityScore = 40;
      r.status = 'interpolated';
      if (r.measurements !== undefined) r.measurements.voltage = null;
    }
    expect(content(snapshot.finish())).toEqual(content(atBarrier));
    expect(JSON.parse(atBarrier).values['orderByEventTime/pending'][0].g[0].m).toEqual({
      0: { voltage: 231 },
    });
  });

  it('a restored minute split by the watermark keeps each reading\u2019s measurements with it', () => {
    const readings = [0, 1, 2, 3].map((i) =>
      Object.assign(reading({ meterId: `M${i}`, ts: T0 + INTERVAL + i * 10_000, kw: i }), {
        measurements: { voltage: 230 + i },
      }),
    );
    const expected = readings.map((r) => structuredClone(r));
    const first = new StateStore();
    run(first, [data(...readings)]);
    const resumed = new StateStore();
    resumed.restore(deserializeSnapshot(first.serialize()));
    // M0 and M1 (the first 20 s of the minute) leave; M2 and M3 stay, moved to the segment's front.
    const out = run(resumed, [wm(T0 + INTERVAL + 15_000)]);
    const again = new StateStore();
    again.restore(deserializeSnapshot(resumed.serialize()));
    const rest = run(again, [wm(T0 + DAY)]);
    const released = [...out, ...rest].flatMap((e) => (e.kind === 'data' ? e.items : []));
    expect(released).toEqual(expected);
  });

  it('a run resumed from a serialized snapshot at any cut emits what an uninterrupted run does', () => {
    const events: FlowEvent<Reading>[] = [];
    for (let k = 0; k < 30; k++) {
      events.push(data(at('M1', k + ((k * 7) % 3)), at('M2', k), at('M3', 30 - k)));
      if (k % 3 === 2) events.push(wm(T0 + (k - 2) * INTERVAL));
    }
    events.push(wm(Number.POSITIVE_INFINITY));
    const uninterrupted = run(new StateStore(), events);
    for (const cut of [1, 5, 17, 30, events.length - 1]) {
      const first = new StateStore();
      const before = run(first, events.slice(0, cut));
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      expect([...before, ...run(resumed, events.slice(cut))]).toEqual(uninterrupted);
    }
  });
});

describe('orderByEventTime properties', () => {
  const STEP = 10_000;
  it('within the out-of-orderness bound: every reading comes out once, sorted per meter, behind its watermark', () => {
    const arrival = fc.array(
      fc.record({ meter: fc.constantFrom('A', 'B', 'C'), k: fc.nat(200), lag: fc.nat(8) }),
      { maxLength: 80 },
    );
    fc.assert(
      fc.property(arrival, fc.integer({ min: 1, max: 10 }), (items, batchSize) => {
        // Distinct (meter, k); each arrives `lag` intervals of event time after it happened.
        const unique = [...new Map(items.map((i) => [`${i.meter}${i.k}`, i])).values()];
        unique.sort((x, y) => x.k + x.lag - (y.k + y.lag));
        const events: FlowEvent<Reading>[] = [];
        let watermark = Number.NEGATIVE_INFINITY;
        for (let i = 0; i < unique.length; i += batchSize) {
          const batch = unique.slice(i, i + batchSize);
          // 10 s apart, so several readings of a meter share a minute bucket and arrive out of order in it.
          events.push(data(...batch.map((x) => reading({ meterId: x.meter, ts: T0 + x.k * STEP }))));
          // Bounded disorder of 8 steps: the watermark trails the newest arrival time by that much.
          const newest = Math.max(...batch.map((x) => x.k + x.lag));
          const next = T0 + (newest - 8) * STEP;
          if (next > watermark) {
            watermark = next;
            events.push(wm(next));
          }
        }
        events.push(wm(Number.POSITIVE_INFINITY));
        const out = run(new StateStore(), events);
        const released: Reading[] = [];
        let current = Number.NEGATIVE_INFINITY;
        for (const e of out) {
          if (e.kind === 'watermark') current = e.time;
          else if (e.kind === 'tagged') throw new Error(`unexpected ${e.tag}`);
          else if (e.kind === 'data')
            for (const r of e.items) {
              released.push(r);
              expect(r.ts).toBeGreaterThanOrEqual(current); // released before the watermark that passed it
            }
        }
        expect(released).toHaveLength(unique.length);
        for (const m of ['A', 'B', 'C']) {
          const ts = released.filter((r) => r.meterId === m).map((r) => r.ts);
          expect(ts).toEqual([...ts].sort((x, y) => x - y));
        }
      }),
    );
  });
});
