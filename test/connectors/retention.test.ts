/**
 * Retention on both engines: TTL on chDB (rows past the policy go at the next merge), partition drops and
 * an error-log DELETE on ClickHouse 18.16 (no TTL there); the READINGS stream's max_age on a NATS server
 * of its own (kept by a later worker start); lake month folders past the cold policy.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { connectNats, ensureReadingsStream } from '../../connectors/jetstream.js';
import {
  applyHotRetention,
  applyLakeRetention,
  applyStreamRetention,
  DEFAULT_RETENTION,
  monthExpired,
  parseRetention,
} from '../../connectors/retention.js';
import type { QuarantineRecord } from '../../schemas/reading.js';
import { type NatsServer, startNatsServer } from '../harness/servers.js';
import { makeReadings } from './clickhouse-fixtures.js';

const DAY = 86_400_000;
const NOW = Date.now();
const OLD = NOW - 1000 * DAY; // past the 2-year and 1-year policies
const RECENT = NOW - 30 * DAY;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-retention-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function readingsAt(ts: number, n: number, prefix: string) {
  return makeReadings(n, { meters: n }).map((r, i) => ({
    ...r,
    meterId: `${prefix}-${i}`,
    ts,
    processedAt: NOW,
  }));
}

function quarantineAt(at: number, raw: string): QuarantineRecord {
  return { meterId: 'M', ts: at, raw, reasons: ['bad'], source: 's.csv', quarantinedAt: at };
}

async function count(store: HotStore, table: 'readings' | 'quarantine'): Promise<number> {
  const [row] = await store.query<{ n: string }>(sql`SELECT count() AS n FROM ${store.relation(table)}`);
  return Number(row!.n);
}

async function fill(store: HotStore): Promise<void> {
  await store.migrate();
  await store.insert('readings', [...readingsAt(OLD, 5, 'old'), ...readingsAt(RECENT, 7, 'new')]);
  await store.insert('quarantine', [quarantineAt(OLD, 'old line'), quarantineAt(RECENT, 'new line')]);
}

describe('the policy', () => {
  it('reads class=days pairs over the seed defaults, and tells expired months', () => {
    expect(DEFAULT_RETENTION).toEqual({ validated: 730, errors: 365, raw: 90, cold: 2557 });
    expect(parseRetention('raw=30,errors=100')).toEqual({ validated: 730, errors: 100, raw: 30, cold: 2557 });
    expect(() => parseRetention('hot=5')).toThrow(RangeError);
    expect(() => parseRetention('raw=0')).toThrow(RangeError);
    // January 2024 ends at 2024-02-01T00:00Z: expired from that instant on, not a millisecond before.
    expect(monthExpired(202401, Date.UTC(2024, 1, 1))).toBe(true);
    expect(monthExpired(202401, Date.UTC(2024, 1, 1) - 1)).toBe(false);
    expect(monthExpired(202412, Date.UTC(2025, 0, 1))).toBe(true);
  });
});

describe('on ClickHouse 18.16 (no TTL)', () => {
  const database = `gs_retention_${process.pid}`;
  let store: HotStore;
  beforeAll(async () => {
    store = openHotStore({ kind: 'server', url: inject('clickhouseUrl'), database });
    await fill(store);
  });
  afterAll(async () => {
    await store.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
    await store.close();
  });

  it('drops the monthly partitions past the policy and deletes old error-log rows, keeping recent data', async () => {
    expect(await count(store, 'readings')).toBe(12);
    const actions = await applyHotRetention(store, DEFAULT_RETENTION, NOW);
    const oldMonth = Number(new Date(OLD).toISOString().slice(0, 7).replace('-', ''));
    expect(actions).toContainEqual({ kind: 'drop_partition', table: 'readings', partition: oldMonth });
    expect(actions.some((a) => a.kind === 'ttl')).toBe(false);
    expect(actions.some((a) => a.kind === 'delete' && a.table === 'quarantine')).toBe(true);
    expect(await count(store, 'readings')).toBe(7);
    // The DELETE is a mutation: it completes in the background.
    for (let i = 0; i < 100 && (await count(store, 'quarantine')) !== 1; i++) await sleep(100);
    const left = await store.query<{ raw: string }>(sql`SELECT raw FROM ${store.relation('quarantine')}`);
    expect(left.map((r) => r.raw)).toEqual(['new line']);
    // Idempotent: nothing left to do.
    const again = await applyHotRetention(store, DEFAULT_RETENTION, NOW);
    expect(again.filter((a) => a.kind !== 'ttl')).toEqual([]);
  });
});

describe('on chDB (TTL)', () => {
  let store: HotStore;
  beforeAll(async () => {
    store = openHotStore({ kind: 'chdb', path: join(dir, 'chdb') });
    await fill(store);
  });
  afterAll(async () => {
    await store.close();
  });

  it('sets a TTL per table class, and a merge then removes the rows past it', async () => {
    const actions = await applyHotRetention(store, DEFAULT_RETENTION, NOW);
    expect(actions).toContainEqual({ kind: 'ttl', table: 'readings', days: 730 });
    expect(actions).toContainEqual({ kind: 'ttl', table: 'quarantine', days: 365 });
    const [ddl] = await store.query<{ statement: string }>(
      sql`SHOW CREATE TABLE ${store.relation('readings')}`,
    );
    expect(ddl!.statement).toMatch(/TTL ts \+ (toIntervalDay\(730\)|INTERVAL 730 DAY)/);
    await store.command(sql`OPTIMIZE TABLE ${store.relation('readings')} FINAL`);
    await store.command(sql`OPTIMIZE TABLE ${store.relation('quarantine')} FINAL`);
    expect(await count(store, 'readings')).toBe(7);
    expect(await count(store, 'quarantine')).toBe(1);
  });
});

describe('the JetStream stream and the lake', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.dispose();
  });

  it("sets the readings stream's max_age, which a later worker start leaves as it is", async () => {
    const nc = await connectNats({ servers: nats.url });
    try {
      const js = jetstream(nc);
      await ensureReadingsStream(js);
      const [action] = await applyStreamRetention(js, parseRetention('raw=90'));
      expect(action).toEqual({ kind: 'stream_max_age', stream: 'READINGS', days: 90 });
      // What `run` and `publish` call at start: no limits asked, none changed.
      const after = await ensureReadingsStream(js);
      expect(after.config.max_age).toBe(90 * DAY * 1e6);
    } finally {
      await nc.close();
    }
  });

  it('removes the lake month folders past the cold policy and nothing else', async () => {
    const lake = join(dir, 'lake');
    const month = (table: string, y: number, m: number) =>
      join(lake, table, `year=${y}`, `month=${String(m).padStart(2, '0')}`);
    const old = month('readings', 2010, 1);
    const kept = month('readings', new Date(RECENT).getUTCFullYear(), new Date(RECENT).getUTCMonth() + 1);
    for (const d of [old, kept, month('quarantine', 2011, 12)]) {
      await mkdir(d, { recursive: true });
      await writeFile(join(d, 'part-1.parquet'), 'x');
    }
    const actions = await applyLakeRetention(lake, DEFAULT_RETENTION, NOW);
    expect(actions.map((a) => (a.kind === 'lake_month_removed' ? a.path : '')).sort()).toEqual(
      [old, month('quarantine', 2011, 12)].sort(),
    );
    expect(await readdir(kept)).toEqual(['part-1.parquet']);
    expect(await readdir(join(lake, 'readings'))).toEqual([`year=${new Date(RECENT).getUTCFullYear()}`]);
  });
});
