/**
 * `greenstream review` and `greenstream dlq` as a person runs them, against the ClickHouse server
 * (Debian's 18.16, the oldest engine the queries must run on): list, approve as received and with a
 * corrected value, override, and the refusals with their exit status.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import type { Reading } from '../../schemas/reading.js';
import { ensureBuilt, runCli } from '../pipelines/helpers.js';

const database = `review_cli_${process.pid}`;
let url: string;
let hot: HotStore;
let dir: string;
const T10 = Date.parse('2024-03-11T10:00:00Z');

function missingAt(ts: number): Reading {
  return {
    meterId: 'MTR-1',
    ts,
    kw: null,
    rawValue: '',
    rawUnit: '',
    status: 'missing',
    flags: ['MISSING_READING'],
    warnings: 0,
    qualityScore: 0,
    qualityTier: 'quarantine',
    grade: 'F',
    peakClass: 'standard',
    season: 'spring',
    recordId: `missing-${ts}`,
    source: 'gap',
    processedAt: Date.parse('2024-03-11T12:00:00Z'),
    pipelineVersion: 'test',
  };
}

const review = (...args: string[]) =>
  runCli(['review', ...args, '--hot', url, '--database', database, '--reviewer', 'ada'], {
    env: { CLICKHOUSE_URL: '', CLICKHOUSE_DATABASE: '' },
  });

beforeAll(async () => {
  url = inject('clickhouseUrl');
  dir = await mkdtemp(join(tmpdir(), 'gs-review-cli-'));
  hot = openHotStore({ kind: 'server', url, database });
  await Promise.all([ensureBuilt(), hot.migrate()]);
  await hot.insert('meters', [
    {
      meterId: 'MTR-1',
      region: 'north',
      neighborhood: 'n1',
      meterType: 'residential',
      vacant: false,
      maxKw: null,
    },
  ]);
  await hot.insert('readings', [missingAt(T10), missingAt(T10 + 3_600_000)]);
  await hot.insert('quarantine', [
    {
      meterId: 'MTR-1',
      ts: T10,
      raw: 'MTR-1,2024-03-11T10:00:00Z,25.5,kW',
      reasons: ['out_of_range'],
      source: 'raw/2024/03/11/10/gw-1.csv:2',
      quarantinedAt: Date.parse('2024-03-11T10:05:00Z'),
    },
    {
      meterId: 'MTR-1',
      ts: T10 + 3_600_000,
      raw: 'MTR-1,2024-03-11T11:00:00Z,abc,kW',
      reasons: ['invalid_value'],
      source: 'raw/2024/03/11/11/gw-1.csv:2',
      quarantinedAt: Date.parse('2024-03-11T11:05:00Z'),
    },
  ]);
}, 180_000);

afterAll(async () => {
  await hot?.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
  await hot?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('greenstream review on a ClickHouse server', () => {
  it('lists, approves, overrides and refuses what it must', async () => {
    const list = await review('list', '--format', 'json');
    expect(list.code, list.stderr).toBe(0);
    const rows = JSON.parse(list.stdout) as { id: string; raw: string; reasons: string }[];
    expect(rows).toHaveLength(2);
    const readable = rows.find((r) => r.raw.includes('25.5'))!;
    const unreadable = rows.find((r) => r.raw.includes('abc'))!;

    const filtered = await review('list', '--reason', 'invalid_value', '--format', 'json');
    expect((JSON.parse(filtered.stdout) as { id: string }[]).map((r) => r.id)).toEqual([unreadable.id]);

    const approved = await review('approve', readable.id, '--reason', 'limit raised for this meter');
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain('stored as 25.5 kW');

    const again = await review('approve', readable.id, '--reason', 'twice');
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('already approved by ada');

    const noValue = await review('approve', unreadable.id, '--reason', 'typo');
    expect(noValue.code).toBe(5);
    expect(noValue.stderr).toContain('cannot be read as kW');
    const corrected = await review('approve', unreadable.id, '--value', '1.5', '--reason', 'typo, read 1.5');
    expect(corrected.code, corrected.stderr).toBe(0);

    const missing = await review('approve', '42', '--reason', 'gone');
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('no quarantined record 42');

    const noReason = await review('reject', readable.id);
    expect(noReason.code).toBe(2);

    const override = await review(
      'override',
      'MTR-1',
      '2024-03-11T10:00:00Z',
      '--score',
      '60',
      '--reason',
      'suspect',
    );
    expect(override.code, override.stderr).toBe(0);

    const stored = await hot.query<{ ts: number; kw: number; score: number }>(
      sql`SELECT toUnixTimestamp(ts) AS ts, kw, quality_score AS score FROM ${hot.relation('readings')} FINAL ORDER BY ts`,
    );
    expect(stored.map((r) => [Number(r.kw), Number(r.score)])).toEqual([
      [25.5, 60],
      [1.5, 100],
    ]);
    const hourly = await hot.query<{ count: number }>(
      sql`SELECT count FROM ${hot.relation('hourly_consumption')} FINAL ORDER BY hour`,
    );
    // The override took 10:00 under 70, out of analytics: its hour keeps its last row (documented).
    expect(hourly.map((h) => Number(h.count))).toEqual([1, 1]);
    const log = await hot.query<{ action: string }>(
      sql`SELECT action FROM ${sql.ident(database, 'review_log')} FINAL ORDER BY reviewed_at, action`,
    );
    expect(log.map((l) => l.action).sort()).toEqual(['approve', 'approve', 'override']);

    const backlog = await review('backlog');
    expect(backlog.code, backlog.stderr).toBe(0);
    expect(backlog.stdout).toContain('nothing has waited');
  });

  it('lists an empty dead-letter folder and refuses a redrive without a reason', async () => {
    const list = await runCli(['dlq', 'list', '--dead-letter', join(dir, 'dead-letter')]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain('(no rows)');
    const noReason = await runCli(['dlq', 'redrive', '--all', '--dead-letter', join(dir, 'dead-letter')]);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('needs --reason');
  });
});
