/**
 * The console's reads of the hot store, one function per page section; every value reaches SQL through
 * the `sql` tag's escaping. Times come back as epoch seconds (`toUnixTimestamp`) for the charts.
 */

import { sql } from '../codecs/sql.js';
import { REVIEW_LOG_TABLE } from '../schemas/review.js';
import type { ConsoleStore } from './store.js';

const HOUR_S = 3600;

/** Whether the store holds anything at all (an empty store says so instead of drawing empty charts). */
export async function storeCounts(store: ConsoleStore): Promise<{ readings: number; quarantine: number }> {
  const [r] = await store.query<{ readings: string | number; quarantine: string | number }>(
    sql`SELECT (SELECT count() FROM ${store.table('readings')}) AS readings, (SELECT count() FROM ${store.table('quarantine')}) AS quarantine`,
  );
  return { readings: Number(r?.readings ?? 0), quarantine: Number(r?.quarantine ?? 0) };
}

export interface QualityData {
  /** Hour starts (s) and, per tier, readings in that hour. */
  readonly tiers: {
    readonly t: number[];
    readonly premium: number[];
    readonly standard: number[];
    readonly quarantine: number[];
  };
  readonly faults: { fault_type: string; region: string; faults: number }[];
  readonly reasons: { reason: string; records: number }[];
  readonly alerts: { severity: string; kind: string; alerts: number; latest: number }[];
  readonly balance: {
    day: string;
    records_in: number;
    stored: number;
    quarantined: number;
    dead_lettered: number;
  }[];
}

export async function qualityData(store: ConsoleStore): Promise<QualityData> {
  const [tierRows, faults, reasons, alerts, balance] = await Promise.all([
    store.query<{ t: number; tier: string; n: string | number }>(
      sql`SELECT toUnixTimestamp(toStartOfHour(ts)) AS t, quality_tier AS tier, count() AS n
        FROM ${store.table('readings')} FINAL WHERE status != 'missing' GROUP BY t, tier ORDER BY t`,
    ),
    store.query<{ fault_type: string; region: string; faults: string | number }>(
      sql`SELECT fault_type, if(region = '', '(unregistered)', region) AS region, count() AS faults FROM
        (SELECT meter_id, fault_type FROM ${store.table('faults')} FINAL) AS f
        ANY LEFT JOIN (SELECT meter_id, region FROM ${store.table('meters')} FINAL) AS m USING meter_id
        GROUP BY fault_type, region ORDER BY fault_type, region`,
    ),
    store.query<{ reason: string; records: string | number }>(
      sql`SELECT splitByChar(':', arrayJoin(reasons))[1] AS reason, count() AS records
        FROM ${store.table('quarantine')} FINAL GROUP BY reason ORDER BY records DESC, reason LIMIT 30`,
    ),
    store.query<{ severity: string; kind: string; alerts: string | number; latest: number }>(
      sql`SELECT severity, kind, count() AS alerts, toUnixTimestamp(max(ts)) AS latest
        FROM ${store.table('alerts')} FINAL GROUP BY severity, kind
        ORDER BY indexOf(['critical', 'high', 'warning'], severity), kind`,
    ),
    store.query<{
      day: string;
      records_in: string | number;
      stored: string | number;
      quarantined: string | number;
      dead_lettered: string | number;
    }>(
      sql`SELECT toString(toDate(logged_at)) AS day, sum(records_in) AS records_in, sum(stored) AS stored,
        sum(quarantined) AS quarantined, sum(dead_lettered) AS dead_lettered
        FROM ${store.table('quality_log')} FINAL GROUP BY day ORDER BY day`,
    ),
  ]);
  const hours = [...new Set(tierRows.map((r) => Number(r.t)))].sort((a, b) => a - b);
  const index = new Map(hours.map((h, i) => [h, i]));
  const series = () => new Array<number>(hours.length).fill(0);
  const tiers = { t: hours, premium: series(), standard: series(), quarantine: series() };
  for (const r of tierRows) {
    const s = tiers[r.tier as 'premium' | 'standard' | 'quarantine'];
    if (s !== undefined) s[index.get(Number(r.t))!] = Number(r.n);
  }
  return {
    tiers,
    faults: faults.map((f) => ({ ...f, faults: Number(f.faults) })),
    reasons: reasons.map((r) => ({ ...r, records: Number(r.records) })),
    alerts: alerts.map((a) => ({ ...a, alerts: Number(a.alerts), latest: Number(a.latest) })),
    balance: balance.map((b) => ({
      day: b.day,
      records_in: Number(b.records_in),
      stored: Number(b.stored),
      quarantined: Number(b.quarantined),
      dead_lettered: Number(b.dead_lettered),
    })),
  };
}

export interface MeterData {
  readonly meter: Record<string, unknown> | undefined;
  readonly from: number;
  readonly to: number;
  /** Interval starts (s), kW (null when missing), status per point. */
  readonly series: { t: number[]; kw: (number | null)[]; status: string[]; score: number[] };
  readonly faults: { fault_type: string; from: number; to: number; evidence: string }[];
  readonly alerts: { severity: string; kind: string; t: number; message: string }[];
  readonly score: { avg: number | null; premium: number; standard: number; quarantine: number };
  readonly quarantined: number;
  readonly reviews: { action: string; reviewer: string; at: number; reason: string; target_id: string }[];
}

/**
 * One meter over [from, to) (epoch s); without a range, the last 7 days of its data. `undefined` when the
 * store knows nothing of the meter (neither registry nor readings).
 */
export async function meterData(
  store: ConsoleStore,
  meterId: string,
  range: { from?: number; to?: number } = {},
): Promise<MeterData | undefined> {
  const [meters, span] = await Promise.all([
    store.query<Record<string, unknown>>(
      sql`SELECT meter_id, region, neighborhood, meter_type, vacant, max_kw FROM ${store.table('meters')} FINAL WHERE meter_id = ${meterId} LIMIT 1`,
    ),
    store.query<{ first: number; last: number; n: string | number }>(
      sql`SELECT toUnixTimestamp(min(ts)) AS first, toUnixTimestamp(max(ts)) AS last, count() AS n
        FROM ${store.table('readings')} WHERE meter_id = ${meterId}`,
    ),
  ]);
  const n = Number(span[0]?.n ?? 0);
  if (meters.length === 0 && n === 0) return undefined;
  const last = n === 0 ? Math.floor(Date.now() / 1000) : Number(span[0]!.last);
  const to = range.to ?? last + HOUR_S;
  const from = range.from ?? Math.max(n === 0 ? 0 : Number(span[0]!.first), to - 7 * 24 * HOUR_S);
  const fromDate = new Date(from * 1000);
  const toDate = new Date(to * 1000);
  const [points, faults, alerts, quarantined, reviews] = await Promise.all([
    store.query<{ t: number; kw: number | null; status: string; score: number }>(
      sql`SELECT toUnixTimestamp(ts) AS t, kw, status, quality_score AS score FROM ${store.table('readings')} FINAL
        WHERE meter_id = ${meterId} AND ts >= ${fromDate} AND ts < ${toDate} ORDER BY ts`,
    ),
    store.query<{ fault_type: string; from: number; to: number; evidence: string }>(
      sql`SELECT fault_type, toUnixTimestamp(window_start) AS from, toUnixTimestamp(window_end) AS to, evidence
        FROM ${store.table('faults')} FINAL
        WHERE meter_id = ${meterId} AND window_end >= ${fromDate} AND window_start < ${toDate} ORDER BY window_start`,
    ),
    store.query<{ severity: string; kind: string; t: number; message: string }>(
      sql`SELECT severity, kind, toUnixTimestamp(ts) AS t, message FROM ${store.table('alerts')} FINAL
        WHERE meter_id = ${meterId} AND ts >= ${fromDate} AND ts < ${toDate} ORDER BY ts`,
    ),
    store.query<{ n: string | number }>(
      sql`SELECT count() AS n FROM ${store.table('quarantine')} FINAL WHERE meter_id = ${meterId}`,
    ),
    store.query<{ action: string; reviewer: string; at: number; reason: string; target_id: string }>(
      sql`SELECT action, reviewer, toUnixTimestamp(reviewed_at) AS at, reason, target_id
        FROM ${store.table(REVIEW_LOG_TABLE)} FINAL WHERE meter_id = ${meterId} ORDER BY reviewed_at DESC LIMIT 20`,
    ),
  ]);
  const series = {
    t: points.map((p) => Number(p.t)),
    kw: points.map((p) => (p.kw === null || p.status === 'missing' ? null : Number(p.kw))),
    status: points.map((p) => p.status),
    score: points.map((p) => Number(p.score)),
  };
  const valued = points.filter((p) => p.status !== 'missing');
  const tier = (lo: number, hi: number) =>
    valued.filter((p) => Number(p.score) >= lo && Number(p.score) < hi).length;
  return {
    meter: meters[0],
    from,
    to,
    series,
    faults: faults.map((f) => ({ ...f, from: Number(f.from), to: Number(f.to) })),
    alerts: alerts.map((a) => ({ ...a, t: Number(a.t) })),
    score: {
      avg:
        valued.length === 0
          ? null
          : Math.round((valued.reduce((s, p) => s + Number(p.score), 0) / valued.length) * 10) / 10,
      premium: tier(90, 101),
      standard: tier(70, 90),
      quarantine: tier(0, 70),
    },
    quarantined: Number(quarantined[0]?.n ?? 0),
    reviews: reviews.map((r) => ({ ...r, at: Number(r.at) })),
  };
}

/** Readings with a value scored under `below`, lowest first: the candidates for a score override. */
export async function lowScoreReadings(
  store: ConsoleStore,
  filter: { meter?: string; below?: number; limit?: number } = {},
): Promise<{ meter_id: string; t: number; kw: number; score: number; flags: string[] }[]> {
  const meter = filter.meter === undefined || filter.meter === '' ? sql`1` : sql`meter_id = ${filter.meter}`;
  const rows = await store.query<{ meter_id: string; t: number; kw: number; score: number; flags: string[] }>(
    sql`SELECT meter_id, toUnixTimestamp(ts) AS t, kw, quality_score AS score, flags FROM ${store.table('readings')} FINAL
      WHERE ${meter} AND status != 'missing' AND kw IS NOT NULL AND quality_score < ${filter.below ?? 70}
      ORDER BY quality_score, meter_id, ts LIMIT ${Math.max(1, Math.min(filter.limit ?? 50, 1000))}`,
  );
  return rows.map((r) => ({ ...r, t: Number(r.t), kw: Number(r.kw), score: Number(r.score) }));
}

/** The latest review decisions. */
export async function recentReviews(
  store: ConsoleStore,
  limit = 30,
): Promise<
  { target: string; target_id: string; action: string; reviewer: string; at: number; reason: string }[]
> {
  const rows = await store.query<{
    target: string;
    target_id: string;
    action: string;
    reviewer: string;
    at: number;
    reason: string;
  }>(
    sql`SELECT target, target_id, action, reviewer, toUnixTimestamp(reviewed_at) AS at, reason
      FROM ${store.table(REVIEW_LOG_TABLE)} FINAL ORDER BY reviewed_at DESC LIMIT ${limit}`,
  );
  return rows.map((r) => ({ ...r, at: Number(r.at) }));
}
