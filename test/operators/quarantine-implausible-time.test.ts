import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dataEvent, StateStore } from '../../core/index.js';
import { QUARANTINE } from '../../operators/outputs.js';
import type { ParsedReading } from '../../operators/parse-reading.js';
import { median, quarantineImplausibleTime } from '../../operators/quarantine-implausible-time.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import type { QuarantineRecord } from '../../schemas/reading.js';
import { INTERVAL, reading, run, T0 } from './fixtures.js';

const DAY = 86_400_000;
const at = (ts: number, meterId = 'm1'): ParsedReading => ({ ...reading({ meterId, ts }), receivedAt: ts });
const day = (from: number, n: number, meterId = 'm1') =>
  Array.from({ length: n }, (_, i) => at(from + i * INTERVAL, meterId));

function judge(batches: ParsedReading[][], store = new StateStore()) {
  const out = run(
    quarantineImplausibleTime(store, defaultRuleProfile.validation),
    batches.map((b) => dataEvent(b)),
  );
  const kept = out.flatMap((e) => (e.kind === 'data' ? (e.items as ParsedReading[]) : []));
  const quarantined = out.flatMap((e) =>
    e.kind === 'tagged' && e.tag === QUARANTINE.name ? (e.items as QuarantineRecord[]) : [],
  );
  return { kept: kept.map((r) => r.ts), quarantined: quarantined.map((q) => [q.ts, q.reasons[0]]) };
}

describe('quarantineImplausibleTime', () => {
  it('quarantines a reading dated next year, alone in its batch, instead of letting it move the watermark', () => {
    const nextYear = T0 + 365 * DAY;
    const r = judge([day(T0, 96), [at(nextYear)], day(T0 + DAY, 96)]);
    expect(r.quarantined).toEqual([[nextYear, 'far_future']]);
    expect(r.kept).toHaveLength(192);
  });

  it('quarantines a 2010 reading among 2024 readings as far_past', () => {
    const old = Date.UTC(2010, 5, 1);
    const r = judge([[...day(T0, 50), at(old, 'm2'), ...day(T0 + 50 * INTERVAL, 46)]]);
    expect(r.quarantined).toEqual([[old, 'far_past']]);
  });

  it('takes a whole week in one batch, and a source resuming after a five-day outage', () => {
    const week = Array.from({ length: 7 }, (_, d) => day(T0 + d * DAY, 96)).flat();
    expect(judge([week]).quarantined).toEqual([]);
    const resumed = judge([day(T0, 96), day(T0 + 6 * DAY, 96)]);
    expect(resumed.quarantined).toEqual([]);
    expect(resumed.kept).toHaveLength(192);
  });

  it('judges after a restore as the killed worker would have: the frontier is operator state', () => {
    const store = new StateStore();
    judge([day(T0, 96)], store);
    const restored = new StateStore();
    restored.restore(JSON.parse(JSON.stringify(store.snapshot())));
    expect(judge([[at(T0 + 30 * DAY)]], restored).quarantined).toEqual([[T0 + 30 * DAY, 'far_future']]);
  });

  it('selects the lower median of any times, as sorting would', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ noNaN: true })), {
          minLength: 1,
          maxLength: 300,
        }),
        (values) => {
          const sorted = Float64Array.from(values).sort();
          const expected = sorted[(sorted.length - 1) >> 1]!;
          const selected = median(Float64Array.from(values));
          // Equal as numbers: the sort orders -0 before 0, selection may return either (times are never -0).
          expect(selected === expected, `${selected} against ${expected}`).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
    // Sorted, reversed and constant runs: the orders a naive pivot degrades on.
    const n = 200_001;
    const up = Float64Array.from({ length: n }, (_, i) => i);
    expect(median(up.slice())).toBe(100_000);
    expect(median(up.slice().reverse())).toBe(100_000);
    expect(median(new Float64Array(n).fill(7))).toBe(7);
  });

  it('judges every batch as the sorted walk from the reference does (the skip of the sort changes nothing)', () => {
    const limits = { farFutureMs: 30 * DAY, farPastMs: 60 * DAY };
    // The stage as specified: the lower median of the sorted times, then the walks from the reference.
    const specified = (batches: number[][]) => {
      let known: number | null = null;
      return batches.map((batch) => {
        const times = Float64Array.from(batch).sort();
        const mid = times[(times.length - 1) >> 1]!;
        const reference = known === null ? mid : batch.length >= 16 ? Math.max(known, mid) : known;
        let upper = reference;
        let k = 0;
        while (k < times.length && times[k]! < reference) k++;
        for (let j = k; j < times.length && times[j]! - upper <= limits.farFutureMs; j++) upper = times[j]!;
        let lower = reference;
        for (let j = k - 1; j >= 0 && lower - times[j]! <= limits.farPastMs; j--) lower = times[j]!;
        const kept = batch.filter((t) => t <= upper && t >= lower);
        if (kept.length > 0) known = Math.max(known ?? Number.NEGATIVE_INFINITY, ...kept);
        return kept;
      });
    };
    // Times in whole days around T0, so that gaps near both tolerances occur often.
    const time = fc.integer({ min: -200, max: 200 }).map((d) => T0 + d * DAY);
    fc.assert(
      fc.property(
        fc.array(fc.array(time, { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 5 }),
        (batches) => {
          const out = run(
            quarantineImplausibleTime(new StateStore(), limits),
            batches.map((b) => dataEvent(b.map((t) => at(t)))),
          );
          const kept = out
            .filter((e) => e.kind === 'data')
            .map((e) => (e.items as ParsedReading[]).map((r) => r.ts));
          expect(kept).toEqual(specified(batches).filter((b) => b.length > 0));
        },
      ),
      { numRuns: 300 },
    );
  });
});
