import fc from 'fast-check';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, StateStore, taggedEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import { detectCommFailure } from '../../operators/detect-comm-failure.js';
import { ALERTS, FAULTS } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import {
  DAY,
  excluded,
  faults,
  INTERVAL,
  reading,
  readingsOut,
  run,
  status,
  T0,
  tagged,
} from './fixtures.js';

const thresholds = defaultRuleProfile.faults;

const comm = (st = new StateStore(), t: Parameters<typeof detectCommFailure>[1] = thresholds) =>
  detectCommFailure(st, t);

type Row = 'ok' | 'missing' | 'null' | 'interp' | 'over';
/** Rows as fillGaps delivers them: one per interval, from `start`. */
function rows(kinds: Row[], start = T0): Reading[] {
  return kinds.map((k, i) => {
    const ts = start + i * INTERVAL;
    switch (k) {
      case 'ok':
        return reading({ ts, kw: 1 });
      case 'missing':
        return reading({ ts, kw: null, status: 'missing', flags: ['missing_short'] });
      case 'null':
        return reading({ ts, kw: null, flags: ['MISSING_READING'] });
      case 'interp':
        return reading({ ts, kw: 1, status: 'interpolated', flags: ['interpolated'] });
      default:
        return reading({ ts, kw: 25, flags: ['over_limit'] });
    }
  });
}
const n = (kind: Row, count: number): Row[] => new Array<Row>(count).fill(kind);

describe('detectCommFailure at the 20 % boundary', () => {
  it('exactly 20 % missing over 5 days (96 of 480) is not a fault', () => {
    expect(faults(run(comm(), [data(...rows([...n('ok', 384), ...n('missing', 96)]))]))).toEqual([]);
  });

  it('one more missing reading (97 of 481) is, at that reading', () => {
    const out = run(comm(), [data(...rows([...n('ok', 384), ...n('missing', 97)]))]);
    const at = T0 + 480 * INTERVAL;
    expect(faults(out)).toEqual([
      {
        meterId: 'MTR-000001',
        faultType: 'comm_failure',
        windowStart: T0,
        windowEnd: at,
        detectedAt: at,
        evidence: JSON.stringify({
          status: 'active',
          missingShare: 0.2017,
          missing: 97,
          expected: 481,
          observedHours: 120.25,
          thresholdShare: 0.2,
        }),
      },
    ]);
    expect(tagged(out, ALERTS.name)).toEqual([
      expect.objectContaining({ severity: 'warning', kind: 'meter_fault', ts: at }),
    ]);
    expect(excluded(readingsOut(out))).toEqual([at]);
  });

  it('counts missing rows, NULL readings and interpolated rows as missing; over-limit readings arrived', () => {
    const mixed: Row[] = [...n('ok', 384), ...n('missing', 30), ...n('null', 30), ...n('interp', 36)];
    expect(faults(run(comm(), [data(...rows(mixed))]))).toEqual([]);
    const fs = faults(run(comm(), [data(...rows([...mixed, 'interp']))]));
    expect(fs.map((f) => JSON.parse(f.evidence))).toEqual([
      expect.objectContaining({ missing: 97, expected: 481 }),
    ]);
    const withOver: Row[] = [...n('ok', 380), ...n('over', 4), ...n('missing', 96)];
    expect(faults(run(comm(), [data(...rows(withOver))]))).toEqual([]);
  });
});

describe('detectCommFailure over the observed span', () => {
  it('is not judged before one day of the meter has been observed', () => {
    expect(faults(run(comm(), [data(...rows(n('missing', 95)))]))).toEqual([]);
    const fs = faults(run(comm(), [data(...rows(n('missing', 96)))]));
    expect(fs.map((f) => [f.detectedAt, JSON.parse(f.evidence).observedHours])).toEqual([
      [T0 + 95 * INTERVAL, 24],
    ]);
  });

  it('clears once enough readings arrive again, with the last failing row as window end', () => {
    // Day 1 fine, 12 h silent (48 missing of 144: 33 %), then back: the share falls to 20 % at 240 rows.
    const out = run(comm(), [data(...rows([...n('ok', 96), ...n('missing', 48), ...n('ok', 150)]))]);
    const fs = faults(out);
    expect(fs.map(status)).toEqual(['active', 'cleared']);
    expect((fs[0]!.detectedAt - T0) / INTERVAL).toBe(120); // 25 of 121 missing
    expect((fs[1]!.windowEnd - T0) / INTERVAL).toBe(238); // 48 of 239: 20.08 %
    expect(JSON.parse(fs[1]!.evidence)).toMatchObject({ clearedAt: T0 + 239 * INTERVAL });
    expect(excluded(readingsOut(out))).toHaveLength(239 - 120);
  });

  it('forgets missing readings older than the 7-day window', () => {
    // A 40 h outage on day 1 (after a first day of data), then 8 clean days: cleared once it left the window.
    const out = run(comm(), [data(...rows([...n('ok', 96), ...n('missing', 160), ...n('ok', 8 * 96)]))]);
    const fs = faults(out);
    expect(fs.map(status)).toEqual(['active', 'cleared']);
    const clearedAt = JSON.parse(fs[1]!.evidence).clearedAt as number;
    // 160 of 672 is 23.8 %: the outage must mostly leave the window before the share is ≤ 20 %.
    expect(clearedAt).toBeGreaterThan(T0 + 7 * DAY);
    expect(clearedAt).toBeLessThan(T0 + 10 * DAY);
  });

  it('does not count a second row for the same interval', () => {
    const rs = rows([...n('ok', 384), ...n('missing', 96)]);
    const dup = reading({ ts: T0 + 479 * INTERVAL, kw: null, status: 'missing' });
    expect(faults(run(comm(), [data(...rs, dup)]))).toEqual([]);
  });
});

describe('detectCommFailure in event time (marbles)', () => {
  it('judges each row against the rows of its own window', () => {
    // A 1-day window: judged from the 96th row on.
    const t = { rollingWindowMs: DAY, commMissingShare: 0.2 };
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: data(...rows([...n('ok', 70), ...n('missing', 20)])),
        b: wm(T0 + 89 * INTERVAL),
        c: data(...rows(n('missing', 6), T0 + 90 * INTERVAL)),
      });
      const c = rows(n('missing', 6), T0 + 90 * INTERVAL);
      addFlag(c[5]!, 'fault_excluded');
      expectObservable(input.pipe(comm(new StateStore(), t))).toBe('a-b-(fgc)-|', {
        a: data(...rows([...n('ok', 70), ...n('missing', 20)])),
        b: wm(T0 + 89 * INTERVAL),
        f: taggedEvent(FAULTS, [
          expect.objectContaining({
            windowStart: T0,
            detectedAt: T0 + 95 * INTERVAL,
            windowEnd: T0 + 95 * INTERVAL,
          }),
        ]),
        g: taggedEvent(ALERTS, [expect.objectContaining({ ts: T0 + 95 * INTERVAL })]),
        c: data(...c),
      });
    });
  });
});

describe('detectCommFailure properties', () => {
  it('within one window, detects at the first row where ≥ 1 day is observed and the share exceeds 20 %', () => {
    const kind = fc.constantFrom<Row>('ok', 'ok', 'ok', 'ok', 'missing', 'null', 'interp', 'over');
    fc.assert(
      fc.property(fc.array(kind, { minLength: 90, maxLength: 400 }), (kinds) => {
        const got = faults(run(comm(), [data(...rows(kinds))]))
          .filter((f) => status(f) === 'active')
          .map((f) => (f.detectedAt - T0) / INTERVAL);
        let missing = 0;
        let want: number | undefined;
        kinds.forEach((k, i) => {
          if (k === 'missing' || k === 'null' || k === 'interp') missing += 1;
          if (want === undefined && i >= 95 && missing / (i + 1) > 0.2) want = i;
        });
        expect(got.slice(0, 1)).toEqual(want === undefined ? [] : [want]);
      }),
      { numRuns: 200 },
    );
  });

  it('keeps its state bounded: the same size after 8 days as after 30, a fraction of it after 1', () => {
    const store = new StateStore();
    const sizes: number[] = [];
    const kinds: Row[] = Array.from({ length: 96 }, (_, i) => (i % 9 === 0 ? 'missing' : 'ok'));
    const input = Array.from({ length: 30 }, (_, d) => data(...rows(kinds, T0 + d * DAY)));
    from(input)
      .pipe(comm(store))
      .subscribe(() => {
        const n = store.denseKeys('meters').numberOf('MTR-000001')!;
        sizes.push(store.vectors('detectCommFailure/ring', 'meters').length(n));
      });
    // The head (newest bucket, first row), the totals and 84 buckets of [rows, missing]: ~1.4 KB.
    expect(sizes[29]).toBe(2 + 2 + 84 * 2);
    // The ring grows bucket by bucket with the data: a day is 12 of the week's 84 buckets.
    expect(sizes[0]).toBeLessThan(sizes[29]! / 3);
    expect(sizes[8]).toBe(sizes[29]);
    // No keyed entry for a meter without an open fault; its three numbers are one typed row.
    expect(store.keyed('detectCommFailure').size).toBe(0);
    expect(store.rows('detectCommFailure/meter', 'meters', 3).size).toBe(1);
  });
});

describe('detectCommFailure: the history it waits for (faults.commMinObservedMs)', () => {
  /** Two days of a meter whose every other reading is a NULL: 50 % missing. */
  const halfMissing = (): Reading[] =>
    rows(Array.from({ length: 2 * 96 }, (_, i): Row => (i % 2 === 0 ? 'ok' : 'null')));

  it('judges from one day of history by default', () => {
    expect(faults(run(comm(), [data(...halfMissing())])).map(status)).toEqual(['active']);
  });

  it('waits for the seed’s full 7-day window when set to 7 days', () => {
    const t = { ...thresholds, commMinObservedMs: 7 * DAY };
    expect(faults(run(comm(new StateStore(), t), [data(...halfMissing())]))).toEqual([]);
  });
});

describe('detectCommFailure: a meter that goes silent for good', () => {
  /** Three days of every reading, then nothing. */
  const reported = (): Reading[] => rows(n('ok', 3 * 96));
  const lastRow = T0 + (3 * 96 - 1) * INTERVAL;
  // 288 rows, none missing: silence of k intervals passes 20 % once k / (288 + k) > 0.2, at k = 73.
  const deadline = lastRow + 73 * INTERVAL;

  it('gets its fault once the watermark passes the silence deadline: a reading at the deadline may still come', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const input = cold<FlowEvent<Reading>>('a-b-c-----|', {
        a: data(...reported()),
        b: wm(deadline),
        c: wm(deadline + 1),
      });
      expectObservable(input.pipe(comm())).toBe('a-b-(fgc)-|', {
        a: data(...reported()),
        b: wm(deadline),
        f: taggedEvent(FAULTS, [
          expect.objectContaining({
            faultType: 'comm_failure',
            windowStart: T0,
            detectedAt: deadline,
            windowEnd: deadline,
          }),
        ]),
        g: taggedEvent(ALERTS, [expect.objectContaining({ kind: 'meter_fault', ts: deadline })]),
        c: wm(deadline + 1),
      });
    });
  });

  it('raises the same fault whether the timer or the rows of the silence come first', () => {
    // The meter resumes after 100 missing intervals: fillGaps then delivers them as rows.
    const all = (): Reading[] => rows([...n('ok', 288), ...n('missing', 100), ...n('ok', 40)]);
    const timerFirst = run(comm(), [
      data(...all().slice(0, 288)),
      wm(deadline + 10 * INTERVAL),
      data(...all().slice(288)),
      wm(T0 + 500 * INTERVAL),
    ]);
    const rowsFirst = run(comm(), [data(...all()), wm(T0 + 500 * INTERVAL)]);
    expect(faults(timerFirst)).toEqual(faults(rowsFirst));
    expect(faults(rowsFirst)[0]).toMatchObject({ windowStart: T0, detectedAt: deadline });
    expect(tagged(timerFirst, ALERTS.name)).toEqual(tagged(rowsFirst, ALERTS.name));
    const flags = (out: FlowEvent<Reading>[]) =>
      readingsOut(out)
        .map((r) => `${r.ts}|${r.flags.join(',')}`)
        .sort();
    expect(flags(timerFirst)).toEqual(flags(rowsFirst));
    expect(excluded(readingsOut(timerFirst)).length).toBeGreaterThan(0);
  });

  it('is not raised for a meter that keeps reporting: the deadline moves on', () => {
    const more = rows(n('ok', 5 * 96));
    expect(
      faults(
        run(comm(), [
          data(...more.slice(0, 288)),
          wm(deadline - 1),
          data(...more.slice(288)),
          wm(deadline + DAY),
        ]),
      ),
    ).toEqual([]);
  });
});
