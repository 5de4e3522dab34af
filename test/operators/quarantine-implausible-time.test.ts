import { describe, expect, it } from 'vitest';
import { dataEvent, StateStore } from '../../core/index.js';
import { QUARANTINE } from '../../operators/outputs.js';
import type { ParsedReading } from '../../operators/parse-reading.js';
import { quarantineImplausibleTime } from '../../operators/quarantine-implausible-time.js';
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
});
