import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  deserializeSnapshot,
  type FlowEvent,
  StateStore,
  serializeSnapshot,
  taggedEvent,
} from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { fillGaps } from '../../operators/fill-gaps.js';
import { ALERTS } from '../../operators/outputs.js';
import { canonicalTimestamp, recordId } from '../../operators/record-id.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Alert, Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { DAY, HOUR, INTERVAL, MINUTE, reading, runResumed, series, T0 } from './fixtures.js';

const gaps = defaultRuleProfile.gaps;

interface Run {
  rows: Reading[];
  alerts: Alert[];
  events: FlowEvent<Reading>[];
}

function run(events: FlowEvent<Reading>[], store = new StateStore(), thresholds = gaps): Run {
  const out: FlowEvent<Reading>[] = [];
  from(events)
    .pipe(fillGaps(store, thresholds))
    .subscribe((e) => out.push(e));
  const rows: Reading[] = [];
  const alerts: Alert[] = [];
  for (const e of out) {
    if (e.kind === 'data') rows.push(...e.items);
    else if (e.kind === 'tagged' && e.tag === ALERTS.name) alerts.push(...(e.items as Alert[]));
  }
  return { rows, alerts, events: out };
}

/** A reading of M1 `k` intervals after T0. */
const at = (k: number, kw: number | null = 1, meterId = 'MTR-000001'): Reading =>
  reading({
    meterId,
    ts: T0 + k * INTERVAL,
    kw,
    rawValue: kw === null ? '' : String(kw),
    flags: kw === null ? ['MISSING_READING'] : [],
  });

/** A generated row, as fillGaps builds it, `k` intervals after T0; `from` is the reading that revealed it. */
function row(
  k: number,
  from: Reading,
  status: Reading['status'],
  kw: number | null,
  flags: Reading['flags'],
): Reading {
  const ts = T0 + k * INTERVAL;
  return reading({
    meterId: from.meterId,
    ts,
    kw,
    rawValue: '',
    rawUnit: '',
    status,
    flags,
    qualityScore: 0,
    qualityTier: 'quarantine',
    grade: 'F',
    peakClass: from.peakClass,
    season: from.season,
    recordId: recordId(from.meterId, canonicalTimestamp(ts), ''),
    source: from.source,
  });
}

/** Readings at 0 and at `missing + 1` intervals: a gap of `missing` intervals. */
const gapOf = (missing: number) => run([data(at(0, 1), at(missing + 1, 2))]);

describe('fillGaps interpolation', () => {
  it('fills a short gap with linearly interpolated rows, rounded to 4 decimals, before the reading that revealed it', () => {
    const next = at(4, 2);
    const { rows, alerts } = run([data(at(0, 1), next)]);
    expect(rows).toEqual([
      at(0, 1),
      row(1, next, 'interpolated', 1.25, ['interpolated']),
      row(2, next, 'interpolated', 1.5, ['interpolated']),
      row(3, next, 'interpolated', 1.75, ['interpolated']),
      next,
    ]);
    expect(alerts).toEqual([]);
  });

  it('rounds to 4 decimals', () => {
    const { rows } = run([data(at(0, 0), at(3, 1))]);
    expect(rows.map((r) => r.kw)).toEqual([0, 0.3333, 0.6667, 1]);
  });

  it('does not interpolate across a NULL reading: the rows stay missing, without a length flag', () => {
    const afterNull = run([data(at(0, null), at(3, 2))]).rows;
    expect(afterNull.slice(1, 3)).toEqual([
      row(1, at(3, 2), 'missing', null, []),
      row(2, at(3, 2), 'missing', null, []),
    ]);
    const beforeNull = run([data(at(0, 1), at(2, null))]).rows;
    expect(beforeNull[1]).toEqual(row(1, at(2, null), 'missing', null, []));
  });

  it('does not interpolate from or to a reading over the physical limit (it is quarantined after the fault rules)', () => {
    const over = at(4, 25);
    addFlag(over, 'over_limit');
    const { rows } = run([data(at(0, 1), at(1, 1), over, at(7, 1))]);
    expect(rows.map((r) => [r.status, r.kw])).toEqual([
      ['measured', 1],
      ['measured', 1],
      ['missing', null],
      ['missing', null],
      ['measured', 25],
      ['missing', null],
      ['missing', null],
      ['measured', 1],
    ]);
  });

  it('treats a reading a little off the grid as on time (jitter)', () => {
    const { rows } = run([data(at(0), reading({ ts: T0 + INTERVAL + 7 * MINUTE }))]);
    expect(rows).toHaveLength(2);
  });
});

describe('fillGaps length classes (gap = missing intervals × interval)', () => {
  it('4 h − 1 interval (15 missing) is interpolated', () => {
    const { rows, alerts } = gapOf(15);
    expect(rows).toHaveLength(17);
    expect(rows.slice(1, 16).every((r) => r.status === 'interpolated')).toBe(true);
    expect(alerts).toEqual([]);
  });

  it('exactly 4 h (16 missing) is missing_short with one connectivity warning', () => {
    const { rows, alerts } = gapOf(16);
    expect(rows).toHaveLength(18);
    expect(rows.slice(1, 17)).toEqual(
      Array.from({ length: 16 }, (_, i) => row(i + 1, at(17, 2), 'missing', null, ['missing_short'])),
    );
    expect(alerts).toEqual([
      {
        severity: 'warning',
        kind: 'connectivity',
        meterId: 'MTR-000001',
        ts: T0 + INTERVAL,
        message: 'meter MTR-000001 sent no reading for 4 h from 2024-03-04T00:15:00Z (missing_short)',
      },
    ]);
  });

  it('24 h − 1 interval (95 missing) is still missing_short', () => {
    const { rows, alerts } = gapOf(95);
    expect(rows.slice(1, 96).every((r) => r.flags[0] === 'missing_short' && r.kw === null)).toBe(true);
    expect(alerts.map((a) => [a.severity, a.kind])).toEqual([['warning', 'connectivity']]);
  });

  it('exactly 24 h (96 missing) is missing_extended with one critical alert', () => {
    const { rows, alerts } = gapOf(96);
    expect(rows).toHaveLength(98);
    expect(rows.slice(1, 97).every((r) => r.status === 'missing' && r.flags[0] === 'missing_extended')).toBe(
      true,
    );
    expect(alerts).toEqual([
      {
        severity: 'critical',
        kind: 'missing_extended',
        meterId: 'MTR-000001',
        ts: T0 + INTERVAL + DAY,
        message: 'meter MTR-000001 sent no reading for 24 h after 2024-03-04T00:00:00Z',
      },
    ]);
  });
});

describe('fillGaps length class table', () => {
  it.each<[number, Reading['status'], Reading['flags'], Alert['severity'][]]>([
    [1, 'interpolated', ['interpolated'], []],
    [15, 'interpolated', ['interpolated'], []],
    [16, 'missing', ['missing_short'], ['warning']],
    [17, 'missing', ['missing_short'], ['warning']],
    [95, 'missing', ['missing_short'], ['warning']],
    [96, 'missing', ['missing_extended'], ['critical']],
    [97, 'missing', ['missing_extended'], ['critical']],
  ])('%i missing intervals of 15 min: %s %j, alerts %j', (missing, status, flags, severities) => {
    const { rows, alerts } = gapOf(missing);
    const generated = rows.slice(1, -1);
    expect(generated).toHaveLength(missing);
    for (const r of generated) {
      expect(r.status).toBe(status);
      expect(r.flags).toEqual(flags);
    }
    expect(alerts.map((a) => a.severity)).toEqual(severities);
  });
});

describe('fillGaps NULL readings', () => {
  const nullsThenValue = (n: number) => [
    at(0, 1),
    ...Array.from({ length: n }, (_, i) => at(i + 1, null)),
    at(n + 1, 1),
  ];

  it('keeps NULL readings as they are', () => {
    const input = nullsThenValue(2);
    expect(run([data(...input)]).rows).toEqual(input);
  });

  it('4 NULLs in a row raise nothing', () => {
    expect(run([data(...nullsThenValue(4))]).alerts).toEqual([]);
  });

  it('the 5th NULL in a row raises one connectivity warning for the run', () => {
    expect(run([data(...nullsThenValue(5))]).alerts).toEqual([
      {
        severity: 'warning',
        kind: 'connectivity',
        meterId: 'MTR-000001',
        ts: T0 + 5 * INTERVAL,
        message: 'meter MTR-000001 sent 5 NULL readings in a row up to 2024-03-04T01:15:00Z',
      },
    ]);
    expect(run([data(...nullsThenValue(9))]).alerts).toHaveLength(1);
  });

  it('a reading with a value ends the run; the next run of 5 alerts again', () => {
    const first = nullsThenValue(5);
    const second = Array.from({ length: 5 }, (_, i) => at(i + 7, null));
    expect(run([data(...first, ...second)]).alerts.map((a) => a.ts)).toEqual([
      T0 + 5 * INTERVAL,
      T0 + 11 * INTERVAL,
    ]);
  });

  it('the run counts across batches (state, not batch-local)', () => {
    const [a, b, c, d, e, f] = nullsThenValue(5);
    expect(run([data(a!, b!), wm(T0), data(c!, d!), data(e!, f!)]).alerts).toHaveLength(1);
  });
});

describe('fillGaps silence timer', () => {
  const critical = (lastTs: number): Alert => ({
    severity: 'critical',
    kind: 'missing_extended',
    meterId: 'M1',
    ts: lastTs + INTERVAL + DAY,
    message: `meter M1 sent no reading for 24 h after ${canonicalTimestamp(lastTs)}`,
  });

  it('fires for a silent meter once the watermark, moved by another meter, passes last + interval + 24 h', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const deadline = T0 + INTERVAL + DAY;
      // M2 keeps reporting every interval for a day; M1 reports once and falls silent.
      const m2 = series(
        Array.from({ length: 97 }, () => 1),
        { meterId: 'M2', start: T0 + INTERVAL },
      );
      const input = cold<FlowEvent<Reading>>('a-b-c-d-e---(f|)', {
        a: data(at(0, 1, 'M1'), at(0, 1, 'M2')),
        b: wm(T0 + INTERVAL),
        c: data(...m2),
        d: wm(deadline - 1),
        e: wm(deadline),
        f: wm(deadline + HOUR),
      });
      expectObservable(input.pipe(fillGaps(new StateStore(), gaps))).toBe('a-b-c-d-(xe)(f|)', {
        a: data(at(0, 1, 'M1'), at(0, 1, 'M2')),
        b: wm(T0 + INTERVAL),
        c: data(...m2),
        d: wm(deadline - 1),
        x: taggedEvent(ALERTS, [critical(T0)]),
        e: wm(deadline),
        f: wm(deadline + HOUR),
      });
    });
  });

  it('raises exactly one critical alert per silence, at the deadline, and none again when the meter resumes', () => {
    const deadline = T0 + INTERVAL + DAY;
    const resumed = at(200, 3, 'M1');
    const { events, rows } = run([
      data(at(0, 1, 'M1')),
      wm(deadline - 1),
      wm(deadline),
      wm(deadline + 3 * DAY),
      data(resumed),
      wm(resumed.ts + 1),
    ]);
    expect(events.slice(0, 4)).toEqual([
      data(at(0, 1, 'M1')),
      wm(deadline - 1),
      taggedEvent(ALERTS, [critical(T0)]),
      wm(deadline),
    ]);
    expect(events.filter((e) => e.kind === 'tagged')).toHaveLength(1);
    expect(rows).toHaveLength(201);
    expect(rows.slice(1, 200).every((r) => r.flags[0] === 'missing_extended')).toBe(true);
  });

  it('the resuming reading raises the alert when it reveals the gap before the watermark did, and the timer then stays quiet', () => {
    const resumed = at(150, 3, 'M1');
    const { events } = run([
      data(at(0, 1, 'M1')),
      wm(T0 + 1),
      data(resumed),
      wm(resumed.ts + 1),
      wm(resumed.ts + DAY),
    ]);
    const alerts = events.filter((e) => e.kind === 'tagged');
    expect(alerts).toEqual([taggedEvent(ALERTS, [critical(T0)])]);
    // After resuming, the meter went silent again: that silence gets its own alert.
    const again = run([data(at(0, 1, 'M1')), wm(T0 + 1), data(resumed), wm(resumed.ts + INTERVAL + DAY)]);
    expect(again.alerts).toEqual([critical(T0), critical(resumed.ts)]);
  });

  it('a meter that keeps reporting never alerts, however far the watermark goes', () => {
    const readings = series(
      Array.from({ length: 300 }, () => 1),
      { meterId: 'M1' },
    );
    const events: FlowEvent<Reading>[] = [];
    for (const r of readings) events.push(data(r), wm(r.ts));
    expect(run(events).alerts).toEqual([]);
  });

  it('uses the meter\u2019s inferred cadence for the deadline', () => {
    const fiveMin = series([1, 1, 1], { meterId: 'M1', intervalMs: 5 * MINUTE });
    const last = fiveMin[2]!.ts;
    const { alerts } = run([data(...fiveMin), wm(last + 5 * MINUTE + DAY - 1), wm(last + 5 * MINUTE + DAY)]);
    expect(alerts.map((a) => a.ts)).toEqual([last + 5 * MINUTE + DAY]);
  });
});

describe('fillGaps cadence inference', () => {
  it('adopts a delta seen twice in a row: a 5-minute meter gets 5-minute rows', () => {
    const readings = [
      ...series([1, 1, 1], { intervalMs: 5 * MINUTE }),
      reading({ ts: T0 + 30 * MINUTE, kw: 2 }),
    ];
    const { rows } = run([data(...readings)]);
    expect(rows.map((r) => (r.ts - T0) / MINUTE)).toEqual([0, 5, 10, 15, 20, 25, 30]);
    expect(rows.slice(3, 6).map((r) => r.kw)).toEqual([1.25, 1.5, 1.75]);
  });

  it('an hourly meter is recognised by its third reading; the first delta is judged at the default', () => {
    const { rows } = run([data(...series([1, 1, 1, 1], { intervalMs: HOUR }))]);
    expect(rows.map((r) => (r.ts - T0) / MINUTE)).toEqual([0, 15, 30, 45, 60, 120, 180]);
  });

  it('equal gaps in a row do not lengthen a known cadence', () => {
    const readings = [at(0), at(1), at(10), at(19), at(28), at(29)];
    const { rows } = run([data(...readings)]);
    expect(rows.map((r) => (r.ts - T0) / INTERVAL)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('8 equal longer deltas in a row do: the meter was reconfigured to report hourly', () => {
    const readings = [at(0), at(1), ...Array.from({ length: 10 }, (_, i) => at(5 + 4 * i))];
    const { rows } = run([data(...readings)]);
    const steps = rows.slice(1).map((r, i) => (r.ts - rows[i]!.ts) / INTERVAL);
    // Seven hourly deltas are filled at 15 min; the 8th makes the hourly cadence, and the rest are on it.
    expect(steps).toEqual([...Array.from({ length: 1 + 7 * 4 }, () => 1), 4, 4, 4]);
  });

  it('a shorter cadence is adopted on its second delta even when one is known', () => {
    const readings = [
      at(0),
      at(1),
      at(2),
      reading({ ts: T0 + 2 * INTERVAL + 5 * MINUTE }),
      reading({ ts: T0 + 2 * INTERVAL + 10 * MINUTE }),
      reading({ ts: T0 + 2 * INTERVAL + 25 * MINUTE }),
    ];
    const { rows } = run([data(...readings)]);
    expect(rows.map((r) => (r.ts - T0) / MINUTE)).toEqual([0, 15, 30, 35, 40, 45, 50, 55]);
  });
});

describe('fillGaps checkpoints', () => {
  it('a run resumed from a serialized snapshot at any cut emits what an uninterrupted run does', () => {
    const events: FlowEvent<Reading>[] = [];
    let k = 0;
    for (let i = 0; i < 40; i++) {
      k += 1 + ((i * 37) % 11 === 0 ? 30 : 0) + (i === 20 ? 100 : 0);
      events.push(data(at(k, i % 7 === 3 ? null : i % 5, 'M1'), at(i, 1, 'M2')));
      events.push(wm(T0 + k * INTERVAL));
    }
    events.push(wm(T0 + (k + 200) * INTERVAL));
    const uninterrupted = run(events).events;
    expect(uninterrupted.some((e) => e.kind === 'tagged')).toBe(true);
    for (const cut of [1, 9, 30, 41, 60, events.length - 1]) {
      const first = new StateStore();
      const before = run(events.slice(0, cut), first).events;
      const resumed = new StateStore();
      resumed.restore(deserializeSnapshot(serializeSnapshot(first.snapshot())));
      expect([...before, ...run(events.slice(cut), resumed).events]).toEqual(uninterrupted);
    }
  });
});

describe('fillGaps state in typed rows', () => {
  it('resumes from a binary checkpoint as an uninterrupted run: mid NULL run, a NULL last, a cadence just learnt, an alert raised', () => {
    const m3 = (minutes: number): Reading => reading({ meterId: 'M3', ts: T0 + minutes * MINUTE });
    const events = (): FlowEvent<Reading>[] => [
      // M1: three NULLs last (no value to interpolate from), M2: one reading, M3: every 5 min.
      data(
        at(0, 1),
        at(1, 2),
        at(2, null),
        at(3, null),
        at(4, null),
        at(0, 1, 'M2'),
        m3(0),
        m3(5),
        m3(10),
        m3(15),
      ),
      // M2's silence passes 24 h: its timer raises the alert.
      wm(T0 + DAY + 16 * MINUTE),
      // M1: the 5th NULL in a row alerts, then a gap after a NULL (missing), then one between values
      // (interpolated); M2 resumes (its alert not raised again); M3 goes on every 5 min.
      data(at(5, null), at(6, null), at(9, 3), at(12, 4), at(100, 1, 'M2'), m3(20), m3(25), m3(40)),
      wm(T0 + 3 * DAY),
    ];
    const op = (store: StateStore) => fillGaps(store, gaps);
    const whole = run(events()).events;
    const rows = whole.flatMap((e) => (e.kind === 'data' ? e.items : []));
    const filled = (status: Reading['status']) =>
      rows.filter((r) => r.status === status).map((r) => [r.meterId, (r.ts - T0) / MINUTE]);
    expect(filled('interpolated')).toEqual([
      ['MTR-000001', 150],
      ['MTR-000001', 165],
      ['M3', 30],
      ['M3', 35],
    ]);
    expect(filled('missing')[0]).toEqual(['MTR-000001', 105]);
    for (const cut of [1, 2, 3]) expect(runResumed(op, events, cut)).toEqual(whole);
    const store = new StateStore();
    run(events(), store);
    expect(store.keyed('fillGaps').size).toBe(0);
    expect(store.rows('fillGaps/meter', 'meters', 10).size).toBe(3);
  });
});

describe('fillGaps properties', () => {
  it('per meter: one row per interval from first to last reading, every reading kept, no interpolation beyond 4 h', () => {
    const step = fc.record({
      skip: fc.oneof(fc.constant(0), fc.constant(0), fc.nat(20), fc.integer({ min: 90, max: 120 })),
      kw: fc.option(
        fc.integer({ min: 0, max: 9000 }).map((n) => n / 1000),
        { freq: 6 },
      ),
    });
    fc.assert(
      fc.property(
        fc.constantFrom(5 * MINUTE, INTERVAL, 30 * MINUTE, HOUR),
        fc.array(step, { minLength: 1, maxLength: 60 }),
        (interval, steps) => {
          // The first three readings are consecutive, so the cadence is known from the second delta on.
          const readings: Reading[] = [];
          let k = 0;
          let previousSkip = 0;
          steps.forEach((s, i) => {
            // Equal gaps back to back are the one pattern read as a cadence change: keep them apart.
            const skip = i < 3 ? 0 : s.skip > 0 && s.skip === previousSkip ? s.skip + 1 : s.skip;
            previousSkip = skip;
            k += i === 0 ? 0 : 1 + skip;
            readings.push(
              reading({
                ts: T0 + k * interval,
                kw: s.kw,
                flags: s.kw === null ? ['MISSING_READING'] : [],
              }),
            );
          });
          const { rows } = run([data(...readings)], new StateStore(), {
            ...gaps,
            defaultIntervalMs: interval,
          });
          for (let i = 1; i < rows.length; i++) expect(rows[i]!.ts - rows[i - 1]!.ts).toBe(interval);
          expect(rows[0]!.ts).toBe(readings[0]!.ts);
          expect(rows.at(-1)!.ts).toBe(readings.at(-1)!.ts);
          expect(rows.filter((r) => r.status === 'measured')).toEqual(readings);
          // Each run of generated rows is interpolated exactly when it is shorter than 4 h between two values.
          for (let i = 1; i < rows.length; ) {
            if (rows[i]!.status === 'measured') {
              i++;
              continue;
            }
            let j = i;
            while (rows[j]!.status !== 'measured') j++;
            const fillable =
              (j - i) * interval < 4 * HOUR && rows[i - 1]!.kw !== null && rows[j]!.kw !== null;
            for (const r of rows.slice(i, j)) {
              expect(r.status).toBe(fillable ? 'interpolated' : 'missing');
              expect(r.kw === null).toBe(!fillable);
            }
            i = j;
          }
        },
      ),
    );
  });
});

describe('fillGaps bounds', () => {
  it('never takes a cadence shorter than minIntervalMs: three readings 1 ms apart, then one 24 h later', () => {
    const m = (ts: number) => reading({ meterId: 'fast', ts, kw: 1 });
    const r = run([data(m(T0), m(T0 + 1), m(T0 + 2), m(T0 + 2 + DAY))]);
    // At most one row per 15 minutes (the default cadence stays): not 86.4 M rows of 1 ms.
    expect(r.rows.length).toBeLessThanOrEqual(4 + DAY / INTERVAL);
  });

  it('turns a gap of more than maxRowsPerGap intervals into one missing_extended row and its alert', () => {
    const m = (ts: number) => reading({ meterId: 'old', ts, kw: 1 });
    const old = Date.UTC(2010, 0, 1);
    const r = run([data(m(old), m(old + INTERVAL), m(T0))]);
    const generated = r.rows.filter((x) => x.status !== 'measured');
    expect(generated).toEqual([
      expect.objectContaining({ ts: old + 2 * INTERVAL, status: 'missing', flags: ['missing_extended'] }),
    ]);
    expect(r.alerts.map((a) => a.kind)).toContain('missing_extended');
    // A smaller cap: a gap of 10 intervals with maxRowsPerGap 5 is one row too.
    const capped = run([data(m(T0), m(T0 + 11 * INTERVAL))], new StateStore(), {
      ...gaps,
      maxRowsPerGap: 5,
    });
    expect(capped.rows.filter((x) => x.status !== 'measured')).toHaveLength(1);
  });
});
