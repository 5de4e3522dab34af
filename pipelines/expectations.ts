/**
 * Expectation suites over the hot store and its models (Metrify seed, "Great Expectations Framework"):
 * each expectation is declared as the query of the rows that break it (a `key` naming the row and the
 * `observed` figure), grouped into suites; a run counts the failing rows, keeps the first keys, writes one
 * result row per expectation to `expectation_results`, raises a `quality_degradation` alert per failed
 * expectation, and renders a Markdown or HTML report.
 */
import { type SqlFragment, sql } from '../codecs/sql.js';
import type { HotStore } from '../connectors/clickhouse.js';
import { insertModelRows } from '../connectors/model-tables.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type { ExpectationResult } from '../schemas/models.js';
import { MODELS_TIME_ZONE } from '../schemas/models.js';
import type { Alert } from '../schemas/reading.js';

export type ExpectationKind =
  | 'completeness'
  | 'freshness'
  | 'range'
  | 'uniqueness'
  | 'referential_integrity'
  | 'consistency';

export interface ExpectationThresholds {
  /** Share of a meter's intervals of a local day that are measured (seed: ≥ 99.5 %). */
  readonly minCompleteness: number;
  /** Age of the newest reading for live data, seconds (seed: < 5 min). */
  readonly maxAgeSeconds: number;
  /** Largest plausible stored kW. */
  readonly maxKw: number;
  /** Meter temperature vs the region's weather temperature in the same hour, °C. */
  readonly temperatureToleranceC: number;
  readonly measurements: RuleProfile['measurements'];
}

export interface Expectation {
  readonly suite: string;
  readonly name: string;
  readonly kind: ExpectationKind;
  readonly description: string;
  /** The rows that break it, with columns `key` and `observed` (both String). */
  readonly failing: (db: (table: string) => SqlFragment, now: number) => SqlFragment;
}

export const SUITES = ['daily', 'live'] as const;

/** The declared expectations; `live` holds what only makes sense on a store fed in real time. */
export function expectations(t: ExpectationThresholds): readonly Expectation[] {
  const m = t.measurements;
  return [
    {
      suite: 'daily',
      name: 'completeness_per_meter_day',
      kind: 'completeness',
      description: `measured intervals ≥ ${t.minCompleteness * 100} % of each meter's intervals per local day`,
      failing: (
        db,
      ) => sql`SELECT concat(meter_id, ' ', toString(day)) AS key, toString(round(share, 4)) AS observed
FROM (
  SELECT meter_id, toDate(ts, ${MODELS_TIME_ZONE}) AS day, countIf(status = 'measured') / count() AS share
  FROM ${db('readings')} FINAL GROUP BY meter_id, day
) AS c WHERE share < ${t.minCompleteness}`,
    },
    {
      suite: 'daily',
      name: 'kw_in_range',
      kind: 'range',
      description: `stored kW within [0, ${t.maxKw}]`,
      failing: (db) => sql`SELECT concat(meter_id, ' ', toString(ts)) AS key, toString(kw) AS observed
FROM ${db('readings')} FINAL WHERE kw IS NOT NULL AND (kw < 0 OR kw > ${t.maxKw})`,
    },
    {
      suite: 'daily',
      name: 'measurements_in_range',
      kind: 'range',
      description: 'voltage, frequency, temperature and humidity within the rule profile ranges',
      failing: (db) => sql`SELECT concat(meter_id, ' ', toString(ts)) AS key,
  concat('V=', ifNull(toString(voltage), '-'), ' Hz=', ifNull(toString(frequency), '-'), ' °C=', ifNull(toString(temperature), '-'), ' %=', ifNull(toString(humidity), '-')) AS observed
FROM ${db('readings')} FINAL
WHERE voltage < ${m.voltageMinV} OR voltage > ${m.voltageMaxV}
   OR frequency < ${m.frequencyMinHz} OR frequency > ${m.frequencyMaxHz}
   OR temperature < ${m.temperatureMinC} OR temperature > ${m.temperatureMaxC}
   OR humidity < ${m.humidityMinPct} OR humidity > ${m.humidityMaxPct}`,
    },
    {
      suite: 'daily',
      name: 'weather_in_range',
      kind: 'range',
      description: 'weather temperature within [−60, 60] °C and humidity within [0, 100] %',
      failing: (
        db,
      ) => sql`SELECT concat(region, ' ', city, ' ', toString(ts)) AS key, toString(temperature_celsius) AS observed
FROM ${db('weather_observations')} FINAL
WHERE temperature_celsius < -60 OR temperature_celsius > 60 OR humidity_percent < 0 OR humidity_percent > 100`,
    },
    {
      suite: 'daily',
      name: 'record_id_unique',
      kind: 'uniqueness',
      description: 'one measured reading per record id',
      failing: (db) => sql`SELECT record_id AS key, toString(n) AS observed
FROM (SELECT record_id, count() AS n FROM ${db('readings')} FINAL WHERE status = 'measured' GROUP BY record_id) AS u
WHERE n > 1`,
    },
    {
      suite: 'daily',
      name: 'facts_reference_meters',
      kind: 'referential_integrity',
      description: 'every meter of fact_meter_hourly is in dim_meters',
      failing: (db) => sql`SELECT DISTINCT meter_id AS key, 'not in dim_meters' AS observed
FROM ${db('hourly_consumption')} FINAL
WHERE meter_id NOT IN (SELECT meter_id FROM ${db('meters')} FINAL)`,
    },
    {
      suite: 'daily',
      name: 'meter_temperature_matches_weather',
      kind: 'consistency',
      description: `a meter's hourly mean temperature within ${t.temperatureToleranceC} °C of its region's weather`,
      failing: (db) => sql`SELECT concat(meter_id, ' ', toString(hour)) AS key,
  concat(toString(round(meter_t, 2)), ' vs ', toString(round(weather_t, 2))) AS observed
FROM (
  SELECT * FROM (
    SELECT meter_id, hour, meter_t, region FROM (
      SELECT meter_id, toStartOfHour(ts) AS hour, avg(temperature) AS meter_t
      FROM ${db('readings')} FINAL WHERE temperature IS NOT NULL GROUP BY meter_id, hour
    ) AS r
    ANY LEFT JOIN (SELECT meter_id, region FROM ${db('meters')} FINAL) AS mt USING (meter_id)
  ) AS rm
  ANY INNER JOIN (
    SELECT region, ts AS hour, avg(temperature_celsius) AS weather_t
    FROM ${db('weather_observations')} FINAL GROUP BY region, ts
  ) AS w USING (region, hour)
) AS j
WHERE abs(meter_t - weather_t) > ${t.temperatureToleranceC}`,
    },
    {
      suite: 'live',
      name: 'readings_fresh',
      kind: 'freshness',
      description: `newest reading less than ${t.maxAgeSeconds} s old`,
      failing: (db, now) => sql`SELECT 'readings' AS key, toString(age) AS observed
FROM (SELECT ${Math.floor(now / 1000)} - toInt64(toUInt32(max(ts))) AS age FROM ${db('readings')}) AS f
WHERE age >= ${t.maxAgeSeconds}`,
    },
  ];
}

export function defaultExpectationThresholds(profile: RuleProfile): ExpectationThresholds {
  return {
    minCompleteness: 0.995,
    maxAgeSeconds: 300,
    maxKw: 1000,
    temperatureToleranceC: 8,
    measurements: profile.measurements,
  };
}

const SAMPLE_KEYS = 20;

export interface ExpectationRun {
  readonly runId: string;
  readonly results: readonly (ExpectationResult & { description: string })[];
  readonly alerts: readonly Alert[];
}

/** Runs the expectations of `suites` (all when empty), stores the results and the alerts of failures. */
export async function runExpectations(
  store: HotStore,
  options: {
    readonly thresholds: ExpectationThresholds;
    readonly suites?: readonly string[];
    readonly now: number;
    readonly runId?: string;
  },
): Promise<ExpectationRun> {
  const db = (table: string) => sql.ident(store.database, table);
  const runId = options.runId ?? `expect-${new Date(options.now).toISOString()}`;
  const chosen = expectations(options.thresholds).filter(
    (e) => options.suites === undefined || options.suites.length === 0 || options.suites.includes(e.suite),
  );
  const results: (ExpectationResult & { description: string })[] = [];
  for (const e of chosen) {
    const failing = e.failing(db, options.now);
    const [count] = await store.query<{ n: string | number }>(
      sql`SELECT count() AS n FROM (${failing}) AS x`,
    );
    const n = Number(count?.n ?? 0);
    const sample =
      n === 0
        ? []
        : await store.query<{ key: string; observed: string }>(
            sql`SELECT key, observed FROM (${failing}) AS x ORDER BY key LIMIT ${SAMPLE_KEYS}`,
          );
    results.push({
      runId,
      suite: e.suite,
      expectation: e.name,
      kind: e.kind,
      success: n === 0,
      failing: n,
      observed:
        sample.length === 0
          ? ''
          : sample
              .map((s) => `${s.key}: ${s.observed}`)
              .slice(0, 3)
              .join('; '),
      failingKeys: sample.map((s) => s.key),
      runAt: options.now,
      description: e.description,
    });
  }
  await insertModelRows(store, 'expectation_results', results);
  const alerts: Alert[] = results
    .filter((r) => !r.success)
    .map((r) => ({
      severity: 'warning',
      kind: 'quality_degradation',
      meterId: '',
      ts: options.now,
      message: `expectation ${r.suite}/${r.expectation} failed on ${r.failing} row(s): ${r.failingKeys.slice(0, 5).join(', ')}`,
    }));
  if (alerts.length > 0) await store.insert('alerts', alerts);
  return { runId, results, alerts };
}

/** One line: how many held, and the names of those that failed. */
export function expectationSummary(run: ExpectationRun): string {
  const failed = run.results.filter((r) => !r.success);
  return (
    `expectations: ${run.results.length - failed.length}/${run.results.length} passed` +
    (failed.length === 0
      ? ''
      : `; failed: ${failed.map((r) => `${r.expectation} (${r.failing})`).join(', ')}`)
  );
}

function mdCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\n/g, ' ');
}

export function expectationReportMarkdown(run: ExpectationRun): string {
  const lines = [
    `# Expectation report ${run.runId}`,
    '',
    expectationSummary(run),
    '',
    '| suite | expectation | kind | result | failing rows | expectation text |',
    '| --- | --- | --- | --- | --- | --- |',
    ...run.results.map(
      (r) =>
        `| ${r.suite} | ${r.expectation} | ${r.kind} | ${r.success ? 'pass' : '**FAIL**'} | ${r.failing} | ${mdCell(r.description)} |`,
    ),
    '',
  ];
  for (const r of run.results.filter((x) => !x.success)) {
    lines.push(
      `## ${r.suite}/${r.expectation}: failing rows (first ${r.failingKeys.length} of ${r.failing})`,
      '',
    );
    for (const key of r.failingKeys) lines.push(`- \`${key.replace(/`/g, "'")}\``);
    lines.push('');
  }
  return lines.join('\n');
}

function html(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function expectationReportHtml(run: ExpectationRun): string {
  const rows = run.results
    .map(
      (r) =>
        `<tr class="${r.success ? 'pass' : 'fail'}"><td>${html(r.suite)}</td><td>${html(r.expectation)}</td><td>${html(r.kind)}</td>` +
        `<td>${r.success ? 'pass' : 'FAIL'}</td><td>${r.failing}</td><td>${html(r.description)}</td>` +
        `<td>${r.failingKeys.map(html).join('<br>')}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Expectation report ${html(run.runId)}</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}.fail{background:#fde2e2}.pass{background:#e6f4ea}</style>
</head><body>
<h1>Expectation report ${html(run.runId)}</h1>
<p>${html(expectationSummary(run))}</p>
<table><thead><tr><th>suite</th><th>expectation</th><th>kind</th><th>result</th><th>failing rows</th><th>expectation</th><th>failing keys (first ${SAMPLE_KEYS})</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}
