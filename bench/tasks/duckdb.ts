/**
 * Baseline (b): DuckDB doing the job natively in SQL — the same CSV files read with `read_csv`, the
 * per-meter rules as window functions, Parquet written partitioned as the lake is. What it covers:
 * parsing (timestamps with zones, values), units (W → kW, inference, ambiguous and invalid units),
 * validation (unknown meter, clock reset, future, negative, over the limit), duplicates, the record id
 * (SHA-256 of meter|ts|value), gaps (interpolated rows below 4 h, missing_short / missing_extended rows
 * with their alerts), rate of change (spike/drop), the zero, stuck and overload faults, a quality score,
 * hourly aggregates; readings, quarantine and hourly written as Snappy Parquet by year/month.
 * What it leaves out, which the pipeline does: low variance, erratic spike, communication failure and
 * neighborhood outlier (7-day statistics), peak classes and daily peaks, the ClickHouse copy, checkpoints.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { duckdbLiteral } from '../../codecs/sql.js';
import type { TaskContext } from '../child.js';
import { cpuMsSince, peakRssMb } from '../protocol.js';

export interface DuckdbArgs {
  readonly landingDir: string;
  readonly registryPath: string;
  readonly outDir: string;
  readonly threads: number;
}

export interface DuckdbFigures {
  readonly version: string;
  readonly linesRead: number;
  readonly rejectedLines: number;
  readonly readings: number;
  readonly quarantined: number;
  readonly faults: number;
  readonly hourly: number;
  readonly wallMs: number;
  readonly stepsMs: Record<string, number>;
  readonly readingsPerSecond: number;
  readonly cpuMs: number;
  readonly peakRssMb: number;
}

const INTERVAL = 'INTERVAL 15 MINUTE';

/** The job, step by step; each statement is timed on its own. */
function steps(a: DuckdbArgs): [string, string][] {
  const glob = duckdbLiteral(join(a.landingDir, 'raw', '*', '*', '*', '*', '*.csv'));
  const registry = duckdbLiteral(a.registryPath);
  const out = (name: string) => duckdbLiteral(join(a.outDir, name));
  return [
    [
      'read_csv',
      `CREATE TABLE raw AS SELECT * FROM read_csv(${glob}, auto_detect = false, header = true, delim = ',',
         quote = '"', escape = '"', null_padding = true, filename = true, store_rejects = true,
         columns = {'meter_id': 'VARCHAR', 'timestamp': 'VARCHAR', 'value': 'VARCHAR', 'unit': 'VARCHAR',
                    'location': 'VARCHAR'});
       CREATE TABLE registry AS SELECT * FROM read_csv(${registry}, header = true, all_varchar = true);`,
    ],
    [
      'parse_units_validate',
      `CREATE TABLE parsed AS
       WITH p AS (
         SELECT meter_id, "timestamp" AS raw_ts, coalesce("value", '') AS raw_value, coalesce(unit, '') AS raw_unit,
                filename, try_cast(trim("timestamp") AS TIMESTAMPTZ) AS ts,
                try_cast(nullif(trim("value"), '') AS DOUBLE) AS v, lower(trim(coalesce(unit, ''))) AS u,
                strptime(regexp_extract(filename, 'raw/(\\d{4}/\\d{2}/\\d{2}/\\d{2})/', 1), '%Y/%m/%d/%H')::TIMESTAMPTZ
                  + INTERVAL 1 HOUR AS received
         FROM raw
       ), k AS (
         SELECT p.*, r.meter_id IS NOT NULL AS known, r.vacant = 'true' AS vacant,
                coalesce(try_cast(r.max_kw AS DOUBLE), CASE r.meter_type WHEN 'commercial' THEN 50 ELSE 20 END) AS limit_kw,
                CASE WHEN u IN ('kw', 'kilowatt', 'kilowatts', 'kwh') THEN 1
                     WHEN u IN ('w', 'watt', 'watts') THEN 1000
                     WHEN u = '' AND v < 10 THEN 1 WHEN u = '' AND v > 1000 THEN 1000 END AS divisor
         FROM p LEFT JOIN registry r USING (meter_id)
       )
       SELECT *, round(v / divisor, 4) AS kw,
              (divisor = 1000 OR u = '') AND v IS NOT NULL AS unit_changed,
              CASE WHEN ts IS NULL THEN 'invalid_timestamp'
                   WHEN raw_value <> '' AND trim(raw_value) <> '' AND v IS NULL THEN 'invalid_value'
                   WHEN NOT known THEN 'unknown_meter'
                   WHEN ts < TIMESTAMPTZ '2010-01-01 00:00:00+00' THEN 'clock_reset'
                   WHEN ts > received + INTERVAL 1 HOUR THEN 'future_timestamp'
                   WHEN v IS NOT NULL AND divisor IS NULL AND u IN ('', 'kw', 'kilowatt', 'kilowatts', 'kwh', 'w', 'watt', 'watts') THEN 'ambiguous_unit'
                   WHEN v IS NOT NULL AND divisor IS NULL THEN 'invalid_unit:' || trim(raw_unit)
                   WHEN v < 0 THEN 'negative_value'
                   WHEN row_number() OVER (PARTITION BY meter_id, ts ORDER BY filename) > 1 THEN 'duplicate'
              END AS reason
       FROM k;`,
    ],
    [
      'rules_windows',
      `CREATE TABLE judged AS
       WITH a AS (
         SELECT meter_id, ts, kw, raw_value, raw_unit, filename, unit_changed, vacant, limit_kw,
                kw > limit_kw AS over_limit
         FROM parsed WHERE reason IS NULL
       ), w AS (
         SELECT *, lag(ts) OVER m AS prev_ts, lag(kw) OVER m AS prev_kw,
                sum(CASE WHEN kw = 0 THEN 0 ELSE 1 END) OVER m AS zero_run,
                sum(CASE WHEN over_limit THEN 0 ELSE 1 END) OVER m AS over_run
         FROM a WINDOW m AS (PARTITION BY meter_id ORDER BY ts)
       ), s AS (
         SELECT *, sum(CASE WHEN kw IS NOT DISTINCT FROM prev_kw THEN 0 ELSE 1 END)
                     OVER (PARTITION BY meter_id ORDER BY ts) AS value_run
         FROM w
       )
       SELECT *,
              prev_kw >= 0.05 AND kw > prev_kw * 6 AS spike,
              prev_kw >= 0.05 AND kw < prev_kw * 0.1 AS drop_,
              ts - prev_ts AS gap
       FROM s;`,
    ],
    [
      'faults',
      `CREATE TABLE faults AS
       SELECT meter_id, 'zero' AS fault_type, min(ts) AS window_start, max(ts) AS window_end FROM judged
         WHERE kw = 0 AND NOT coalesce(vacant, false) GROUP BY meter_id, zero_run
         HAVING max(ts) - min(ts) + ${INTERVAL} >= INTERVAL 48 HOUR
       UNION ALL
       SELECT meter_id, 'stuck', min(ts), max(ts) FROM judged
         WHERE kw IS NOT NULL AND kw <> 0 GROUP BY meter_id, value_run
         HAVING max(ts) - min(ts) + ${INTERVAL} >= INTERVAL 24 HOUR
       UNION ALL
       SELECT meter_id, 'overload', min(ts), max(ts) FROM judged
         WHERE over_limit GROUP BY meter_id, over_run HAVING count(*) >= 6;`,
    ],
    [
      'gaps_score_record_id',
      `CREATE TABLE readings AS
       WITH filled AS (
         SELECT meter_id, unnest(generate_series(prev_ts + ${INTERVAL}, ts - ${INTERVAL}, ${INTERVAL})) AS ts,
                prev_ts, ts AS next_ts, prev_kw, kw AS next_kw, filename, gap
         FROM judged WHERE gap > INTERVAL 20 MINUTE
       ), generated AS (
         SELECT meter_id, ts,
                CASE WHEN gap < INTERVAL 4 HOUR + ${INTERVAL} AND prev_kw IS NOT NULL AND next_kw IS NOT NULL
                     THEN round(prev_kw + (next_kw - prev_kw) * epoch(ts - prev_ts) / epoch(next_ts - prev_ts), 4)
                END AS kw,
                '' AS raw_value, '' AS raw_unit, filename,
                CASE WHEN gap < INTERVAL 4 HOUR + ${INTERVAL} AND prev_kw IS NOT NULL AND next_kw IS NOT NULL
                     THEN 'interpolated' ELSE 'missing' END AS status,
                CASE WHEN gap >= INTERVAL 24 HOUR + ${INTERVAL} THEN ['missing_extended']
                     WHEN gap >= INTERVAL 4 HOUR + ${INTERVAL} THEN ['missing_short']
                     ELSE []::VARCHAR[] END AS flags
         FROM filled
       ), measured AS (
         SELECT meter_id, ts, kw, raw_value, raw_unit, filename, 'measured' AS status,
                list_concat(CASE WHEN unit_changed THEN ['unit_converted'] ELSE []::VARCHAR[] END,
                            CASE WHEN spike THEN ['spike'] WHEN drop_ THEN ['drop'] ELSE []::VARCHAR[] END,
                            CASE WHEN kw IS NULL THEN ['MISSING_READING'] ELSE []::VARCHAR[] END) AS flags
         FROM judged WHERE NOT over_limit
       ), u AS (SELECT * FROM measured UNION ALL SELECT * FROM generated)
       SELECT meter_id, ts, kw, raw_value, raw_unit, status, flags,
              CASE WHEN kw IS NULL OR status = 'missing' THEN 0
                   ELSE greatest(0, 100 - 5 * list_contains(flags, 'unit_converted')::INT
                                   - 10 * (status = 'interpolated')::INT
                                   - 20 * (list_contains(flags, 'spike') OR list_contains(flags, 'drop'))::INT) END
                AS quality_score,
              sha256(meter_id || '|' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ') || '|' || trim(raw_value)) AS record_id,
              filename AS source, year(ts) AS year, month(ts) AS month
       FROM u;`,
    ],
    [
      'quarantine_alerts_hourly',
      `CREATE TABLE quarantine AS
         SELECT meter_id, ts, concat_ws(',', meter_id, raw_ts, raw_value, raw_unit) AS raw, [reason] AS reasons,
                filename AS source, year(coalesce(ts, TIMESTAMPTZ '1970-01-01 00:00:00+00')) AS year,
                month(coalesce(ts, TIMESTAMPTZ '1970-01-01 00:00:00+00')) AS month
         FROM parsed WHERE reason IS NOT NULL
         UNION ALL
         SELECT meter_id, ts, concat_ws(',', meter_id, strftime(ts, '%Y-%m-%dT%H:%M:%SZ'), raw_value, raw_unit),
                ['out_of_range'], filename, year(ts), month(ts)
         FROM judged WHERE over_limit;
       CREATE TABLE alerts AS
         SELECT meter_id, ts, CASE WHEN gap >= INTERVAL 24 HOUR + ${INTERVAL} THEN 'missing_extended' ELSE 'connectivity' END AS kind
         FROM judged WHERE gap >= INTERVAL 4 HOUR + ${INTERVAL};
       CREATE TABLE hourly AS
         SELECT meter_id, date_trunc('hour', ts) AS hour, avg(kw) AS avg_kw, min(kw) AS min_kw, max(kw) AS max_kw,
                stddev_pop(kw) AS stddev_kw, count(kw) AS count, year(hour) AS year, month(hour) AS month
         FROM readings WHERE status = 'measured' AND kw IS NOT NULL GROUP BY ALL;`,
    ],
    [
      'write_parquet',
      `COPY readings TO ${out('readings')} (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (year, month), OVERWRITE_OR_IGNORE);
       COPY quarantine TO ${out('quarantine')} (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (year, month), OVERWRITE_OR_IGNORE);
       COPY hourly TO ${out('hourly')} (FORMAT PARQUET, COMPRESSION SNAPPY, PARTITION_BY (year, month), OVERWRITE_OR_IGNORE);`,
    ],
  ];
}

export async function duckdbTask(args: DuckdbArgs, _context: TaskContext): Promise<DuckdbFigures> {
  await rm(args.outDir, { recursive: true, force: true });
  await mkdir(args.outDir, { recursive: true });
  const instance = await DuckDBInstance.create(':memory:', { threads: String(args.threads) });
  const connection = await instance.connect();
  try {
    await connection.run(`SET TimeZone = 'UTC'`);
    const stepsMs: Record<string, number> = {};
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const [name, statement] of steps(args)) {
      const t = performance.now();
      await connection.run(statement);
      stepsMs[name] = Math.round(performance.now() - t);
    }
    const wallMs = performance.now() - t0;
    const cpuMs = cpuMsSince(cpu0);
    const one = async (q: string): Promise<number> => {
      const reader = await connection.runAndReadAll(q);
      return Number(reader.getRows()[0]?.[0] ?? -1);
    };
    const linesRead = await one('SELECT count(*) FROM raw');
    const rejectedLines = await one('SELECT count(*) FROM reject_errors');
    const version = String((await connection.runAndReadAll('SELECT version()')).getRows()[0]?.[0]);
    return {
      version,
      linesRead,
      rejectedLines,
      readings: await one("SELECT count(*) FROM readings WHERE status = 'measured'"),
      quarantined: (await one('SELECT count(*) FROM quarantine')) + rejectedLines,
      faults: await one('SELECT count(*) FROM faults'),
      hourly: await one('SELECT count(*) FROM hourly'),
      wallMs: Math.round(wallMs),
      stepsMs,
      readingsPerSecond: Math.round((linesRead + rejectedLines) / (wallMs / 1000)),
      cpuMs,
      peakRssMb: peakRssMb(),
    };
  } finally {
    connection.closeSync();
    instance.closeSync();
    await rm(args.outDir, { recursive: true, force: true });
  }
}
