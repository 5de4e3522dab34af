/**
 * Retention of every store, per table class (the architecture seed's "Data Retention Policy": validated
 * data 2 years in the active database, error logs 1 year, raw data 90 days hot, 7 years cold):
 * - hot store, engines with TTL (chDB, current servers): `ALTER TABLE … MODIFY TTL`, so merges drop rows;
 * - hot store, engines without (ClickHouse 18.16): whole monthly partitions past the policy are dropped,
 *   and the unpartitioned error logs lose their old rows by an `ALTER TABLE … DELETE` mutation;
 * - raw readings in JetStream: the READINGS stream's `max_age`;
 * - the Parquet lake: month folders (`year=YYYY/month=MM`) past the cold policy are removed.
 * Event-time tables count from their partition column, the logs from when they were written.
 */
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { JetStreamClient } from '@nats-io/jetstream';
import { sql } from '../codecs/sql.js';
import { type HotTableName, hotTables } from '../schemas/clickhouse.js';
import type { HotStore } from './clickhouse.js';
import { ensureReadingsStream, setStreamMaxAge } from './jetstream-streams.js';

export interface RetentionPolicy {
  /** readings, hourly_consumption, daily_peaks, faults, alerts. */
  readonly validated: number;
  /** quarantine, quality_log. */
  readonly errors: number;
  /** Raw readings in the JetStream stream. */
  readonly raw: number;
  /** The Parquet lake. */
  readonly cold: number;
}

const DAY_MS = 86_400_000;

export const DEFAULT_RETENTION: RetentionPolicy = { validated: 730, errors: 365, raw: 90, cold: 2557 };

export const RETENTION_CLASSES: Readonly<Record<'validated' | 'errors', readonly HotTableName[]>> = {
  validated: ['readings', 'hourly_consumption', 'daily_peaks', 'faults', 'alerts'],
  errors: ['quarantine', 'quality_log'],
};

/** `validated=730,errors=365,raw=90,cold=2557` (any subset; the rest keep their defaults). */
export function parseRetention(text: string, base: RetentionPolicy = DEFAULT_RETENTION): RetentionPolicy {
  const out: Record<string, number> = { ...base };
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(validated|errors|raw|cold)=(\d+)$/.exec(part);
    if (m === null)
      throw new RangeError(`must be class=days pairs (validated, errors, raw, cold), got "${part}"`);
    const days = Number(m[2]);
    if (!(Number.isSafeInteger(days) && days > 0)) throw new RangeError(`${m[1]} must be at least 1 day`);
    out[m[1]!] = days;
  }
  return out as unknown as RetentionPolicy;
}

/** The column a table's age counts from: its monthly partition column, else when the row was written. */
export function retentionColumnOf(table: HotTableName): string {
  const spec = hotTables[table];
  const column = spec.monthlyPartitionOf ?? spec.retentionColumn;
  if (column === undefined) throw new Error(`${table} has no column to count retention from`);
  return column;
}

/** Whether every row of month `yyyymm` is older than `cutoff` (the month ended at or before it). */
export function monthExpired(yyyymm: number, cutoff: number): boolean {
  const year = Math.floor(yyyymm / 100);
  const month = yyyymm % 100;
  return Date.UTC(year, month, 1) <= cutoff;
}

export type RetentionAction =
  | { readonly kind: 'ttl'; readonly table: HotTableName; readonly days: number }
  | { readonly kind: 'drop_partition'; readonly table: HotTableName; readonly partition: number }
  | { readonly kind: 'delete'; readonly table: HotTableName; readonly before: string }
  | { readonly kind: 'stream_max_age'; readonly stream: string; readonly days: number }
  | { readonly kind: 'lake_month_removed'; readonly path: string };

/** Applies the hot store part of the policy; returns what it did. */
export async function applyHotRetention(
  store: HotStore,
  policy: RetentionPolicy,
  now: number = Date.now(),
): Promise<RetentionAction[]> {
  const caps = await store.capabilities();
  const actions: RetentionAction[] = [];
  for (const [klass, tables] of Object.entries(RETENTION_CLASSES) as [
    'validated' | 'errors',
    HotTableName[],
  ][]) {
    const days = policy[klass];
    const cutoff = now - days * DAY_MS;
    for (const table of tables) {
      const column = sql.ident(retentionColumnOf(table));
      if (caps.ttl) {
        await store.command(
          sql`ALTER TABLE ${store.relation(table)} MODIFY TTL ${column} + INTERVAL ${days} DAY`,
        );
        actions.push({ kind: 'ttl', table, days });
      } else if (hotTables[table].monthlyPartitionOf !== undefined) {
        const parts = await store.query<{ partition: string }>(
          sql`SELECT DISTINCT partition FROM system.parts WHERE database = ${store.database} AND table = ${table} AND active`,
        );
        for (const p of parts.map((r) => Number(r.partition)).sort((a, b) => a - b)) {
          if (!Number.isInteger(p) || !monthExpired(p, cutoff)) continue;
          await store.command(sql`ALTER TABLE ${store.relation(table)} DROP PARTITION ${p}`);
          actions.push({ kind: 'drop_partition', table, partition: p });
        }
      } else {
        const before = new Date(cutoff);
        const [old] = await store.query<{ n: string | number }>(
          sql`SELECT count() AS n FROM ${store.relation(table)} WHERE ${column} < ${before}`,
        );
        if (Number(old?.n ?? 0) === 0) continue;
        await store.command(sql`ALTER TABLE ${store.relation(table)} DELETE WHERE ${column} < ${before}`);
        actions.push({ kind: 'delete', table, before: before.toISOString() });
      }
    }
  }
  return actions;
}

/** Sets the READINGS stream's `max_age` to the raw policy (created if missing). */
export async function applyStreamRetention(
  js: JetStreamClient,
  policy: RetentionPolicy,
): Promise<RetentionAction[]> {
  const maxAgeMs = policy.raw * DAY_MS;
  const created = await ensureReadingsStream(js, { maxAgeMs });
  const info = await setStreamMaxAge(js, created.config.name, maxAgeMs);
  return [{ kind: 'stream_max_age', stream: info.config.name, days: policy.raw }];
}

/** Removes the lake's month folders (`<table>/year=YYYY/month=MM`) whose month ended before the cold policy. */
export async function applyLakeRetention(
  lakeDir: string,
  policy: RetentionPolicy,
  now: number = Date.now(),
): Promise<RetentionAction[]> {
  const cutoff = now - policy.cold * DAY_MS;
  const actions: RetentionAction[] = [];
  const dirs = async (path: string) => {
    try {
      return (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return [];
    }
  };
  for (const table of await dirs(lakeDir)) {
    for (const year of await dirs(join(lakeDir, table))) {
      const y = /^year=(\d{4})$/.exec(year);
      if (y === null) continue;
      for (const month of await dirs(join(lakeDir, table, year))) {
        const m = /^month=(\d{2})$/.exec(month);
        if (m === null || !monthExpired(Number(y[1]) * 100 + Number(m[1]), cutoff)) continue;
        const path = join(lakeDir, table, year, month);
        await rm(path, { recursive: true, force: true });
        actions.push({ kind: 'lake_month_removed', path });
      }
      // A year left empty goes too, so the lake's listing shows only what it holds.
      if ((await readdir(join(lakeDir, table, year))).length === 0) await rmdir(join(lakeDir, table, year));
    }
  }
  return actions;
}
