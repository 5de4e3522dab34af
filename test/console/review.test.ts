/**
 * Review that acts, on a chDB store filled by a small simulated run: approve, reject, override and
 * redrive change what they say, each lands as one review_log row, a decision taken twice or about a
 * record that is not there is refused and changes nothing, and records waiting more than 24 h raise
 * the backlog alert.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import {
  approveQuarantined,
  kwOf,
  listDeadLetters,
  listQuarantine,
  overrideScore,
  ReviewRefusedError,
  raiseReviewBacklogAlerts,
  rawValueOf,
  readingAt,
  redriveDeadLetter,
  rejectQuarantined,
} from '../../console/review.js';
import { buildSampleStore, type SampleStore } from '../../console/sample-store.js';
import { type ConsoleStore, endpointStore, hotConsoleStore } from '../../console/store.js';

let dir: string;
let sample: SampleStore;
let store: ConsoleStore;
const who = { reviewer: 'ada', reason: 'checked on site' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-review-'));
  sample = await buildSampleStore(dir, { meters: 24 });
  store = hotConsoleStore(sample.hot, 'sample');
}, 120_000);

afterAll(async () => {
  await store?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function logRows(targetId: string): Promise<{ action: string; before: string; after: string }[]> {
  return store.query(
    sql`SELECT action, before, after FROM ${store.table('review_log')} FINAL WHERE target_id = ${targetId} ORDER BY reviewed_at`,
  );
}

async function refused(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ReviewRefusedError);
  return (error as Error).message;
}

/** Undecided quarantined records of registered meters with a time, and the kW their raw line reads as. */
async function candidates() {
  const registered = new Set(
    (await store.query<{ meter_id: string }>(sql`SELECT meter_id FROM ${store.table('meters')} FINAL`)).map(
      (m) => m.meter_id,
    ),
  );
  return (await listQuarantine(store, { limit: 5000 }))
    .filter((q) => q.ts !== null && registered.has(q.meter_id))
    .map((q) => {
      const raw = rawValueOf(q.raw);
      return { ...q, kw: raw === undefined ? undefined : kwOf(raw.value, raw.unit) };
    });
}

describe('review actions', () => {
  it('rejects once: the record stays quarantined with the decision; a second decision is refused', async () => {
    const [item] = await candidates();
    expect(item).toBeDefined();
    const outcome = await rejectQuarantined(store, item!.id, who);
    expect(outcome.message).toContain('rejected');
    expect((await listQuarantine(store, { decision: 'decided', limit: 5000 })).map((q) => q.id)).toContain(
      item!.id,
    );
    expect((await listQuarantine(store, { limit: 5000 })).map((q) => q.id)).not.toContain(item!.id);
    expect(await refused(rejectQuarantined(store, item!.id, who))).toContain('already rejected by ada');
    expect(await refused(approveQuarantined(store, item!.id, { ...who, valueKw: 1 }))).toContain(
      'already rejected',
    );
    expect((await logRows(item!.id)).map((r) => r.action)).toEqual(['reject']);
  });

  it('approves a readable record as received: the reading, its hour and its day are rewritten', async () => {
    const item = (await candidates()).find((c) => c.kw !== undefined && c.decision === '');
    expect(item, 'a quarantined record with a readable value').toBeDefined();
    const before = await readingAt(store, item!.meter_id, item!.ts!);
    const outcome = await approveQuarantined(store, item!.id, who);
    expect(outcome.message).toContain(`stored as ${item!.kw} kW`);
    const after = await readingAt(store, item!.meter_id, item!.ts!);
    expect(after).toMatchObject({ kw: item!.kw, status: 'measured', qualityScore: 100, flags: ['reviewed'] });
    expect(after!.processedAt).toBeGreaterThan(before?.processedAt ?? 0);
    const hour = Math.floor(item!.ts! / 3_600_000) * 3_600_000;
    const [hourly] = await store.query<{ max_kw: number; count: number }>(
      sql`SELECT max_kw, count FROM ${store.table('hourly_consumption')} FINAL
        WHERE meter_id = ${item!.meter_id} AND hour = ${new Date(hour)}`,
    );
    expect(Number(hourly!.max_kw)).toBeGreaterThanOrEqual(item!.kw!);
    const log = await logRows(item!.id);
    expect(log.map((r) => r.action)).toEqual(['approve']);
    expect(JSON.parse(log[0]!.after)).toMatchObject({ meterId: item!.meter_id, kw: item!.kw });
    expect(JSON.parse(log[0]!.before).quarantine.id).toBe(item!.id);
    expect(await refused(approveQuarantined(store, item!.id, who))).toContain('already approved by ada');
    expect(await logRows(item!.id)).toHaveLength(1);
  });

  it('refuses a record that is not there, an id that is not one, and a review without a reason', async () => {
    expect(await refused(approveQuarantined(store, '123456789', who))).toContain(
      'no quarantined record 123456789',
    );
    expect(await refused(rejectQuarantined(store, "1' OR 1=1", who))).toContain('is not a quarantine id');
    const [item] = (await candidates()).filter((c) => c.decision === '');
    expect(await refused(rejectQuarantined(store, item!.id, { reviewer: 'ada', reason: ' ' }))).toContain(
      'needs a reason',
    );
    expect(await logRows('123456789')).toEqual([]);
    expect(await logRows(item!.id)).toEqual([]);
  });

  it('overrides a low score once; the same override again is refused', async () => {
    const [low] = await store.query<{ meter_id: string; t: number; score: number }>(
      sql`SELECT meter_id, toUnixTimestamp(ts) AS t, quality_score AS score FROM ${store.table('readings')} FINAL
        WHERE status != 'missing' AND kw IS NOT NULL AND quality_score < 70 ORDER BY meter_id, ts LIMIT 1`,
    );
    expect(low).toBeDefined();
    const ts = Number(low!.t) * 1000;
    const outcome = await overrideScore(store, low!.meter_id, ts, { ...who, score: 95 });
    expect(outcome.message).toContain(`from ${low!.score} to 95`);
    expect(await readingAt(store, low!.meter_id, ts)).toMatchObject({
      qualityScore: 95,
      qualityTier: 'premium',
      grade: 'A',
    });
    expect((await readingAt(store, low!.meter_id, ts))!.flags).toContain('score_overridden');
    const id = `${low!.meter_id}@${new Date(ts).toISOString()}`;
    expect(await refused(overrideScore(store, low!.meter_id, ts, { ...who, score: 95 }))).toContain(
      'already scores 95',
    );
    expect(await refused(overrideScore(store, 'NO-SUCH', ts, { ...who, score: 95 }))).toContain('no reading');
    expect((await logRows(id)).map((r) => r.action)).toEqual(['override']);
  });

  it('raises the backlog alert only for records waiting more than 24 h', async () => {
    expect(await raiseReviewBacklogAlerts(store, { now: Date.now() })).toEqual([]);
    const later = Date.now() + 25 * 3_600_000;
    const alerts = await raiseReviewBacklogAlerts(store, { now: later });
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ kind: 'backlog', severity: 'warning' });
    expect(alerts[0]!.message).toMatch(/^quarantine review overdue: \d+ record/);
    const stored = await store.query(
      sql`SELECT message FROM ${store.table('alerts')} FINAL WHERE kind = 'backlog' AND ts = ${new Date(Math.floor(later / 3_600_000) * 3_600_000)}`,
    );
    expect(stored).toHaveLength(1);
  });

  it('redrives a dead letter back into the landing folder once', async () => {
    const deadLetters = join(sample.landing, 'dead-letter');
    const folder = join(deadLetters, 'raw', '2024', '03', '11', '00');
    await mkdir(folder, { recursive: true });
    await writeFile(
      join(folder, 'gw-9999.csv'),
      'meter_id,timestamp,value,unit\nMTR-000001,2024-03-11T00:00:00Z,1,kW\n',
    );
    await writeFile(
      join(folder, 'gw-9999.csv.reason.json'),
      JSON.stringify({ source: 'raw/2024/03/11/00/gw-9999.csv', reason: 'no header' }),
    );
    const path = 'raw/2024/03/11/00/gw-9999.csv';
    expect((await listDeadLetters(deadLetters)).map((d) => d.path)).toContain(path);
    const outcome = await redriveDeadLetter(store, deadLetters, path, { ...who, now: 1_700_000_000_000 });
    expect(outcome.message).toBe(`redrove ${path} to raw/2024/03/11/00/gw-9999.redrive-1700000000000.csv`);
    expect(await readdir(join(sample.landing, 'raw', '2024', '03', '11', '00'))).toContain(
      'gw-9999.redrive-1700000000000.csv',
    );
    expect((await listDeadLetters(deadLetters)).map((d) => d.path)).not.toContain(path);
    expect(await refused(redriveDeadLetter(store, deadLetters, path, who))).toContain('no dead letter');
    expect((await logRows(path)).map((r) => r.action)).toEqual(['redrive']);
  });

  it('refuses every action on a store read through a worker (read-only)', async () => {
    const readOnly = endpointStore('http://127.0.0.1:9', 'greenstream', 'chdb:/nowhere');
    try {
      expect(await refused(approveQuarantined(readOnly, '1', who))).toContain(
        'reviews need the hot store itself',
      );
    } finally {
      await readOnly.close();
    }
  });
});

describe('reading a quarantined line', () => {
  it('takes value and unit from a CSV line in the documented order, or from JSON', () => {
    expect(rawValueOf('MTR-1,2024-03-11T00:00:00Z,25.5,kW')).toEqual({ value: '25.5', unit: 'kW' });
    expect(rawValueOf('{"meter_id":"M","timestamp":"t","value":1500,"unit":"W"}')).toEqual({
      value: '1500',
      unit: 'W',
    });
    expect(rawValueOf('{"value":null}')).toEqual({ value: '', unit: '' });
    expect(rawValueOf('{broken')).toBeUndefined();
    expect(rawValueOf('just-one-field')).toBeUndefined();
  });

  it('converts only what needs no interval, and nothing negative or unreadable', () => {
    expect(kwOf('1500', 'W')).toBe(1.5);
    expect(kwOf('2', 'Kilowatts')).toBe(2);
    expect(kwOf('0.002', 'MWh')).toBe(2);
    expect(kwOf('-1', 'kW')).toBeUndefined();
    expect(kwOf('', 'kW')).toBeUndefined();
    expect(kwOf('NaN', 'kW')).toBeUndefined();
    expect(kwOf('5', 'furlongs')).toBeUndefined();
    expect(kwOf('5', '')).toBeUndefined();
  });
});
