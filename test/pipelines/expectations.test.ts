/**
 * Expectation suites on ClickHouse 18.16 and chDB: a clean day passes; a seeded completeness drop and a
 * meter temperature far from the weather fail with their rows' keys, are stored in expectation_results,
 * raise quality_degradation alerts and show in the reports; freshness judges the newest reading's age.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import {
  defaultExpectationThresholds,
  expectationReportHtml,
  expectationReportMarkdown,
  expectationSummary,
  runExpectations,
} from '../../pipelines/expectations.js';
import { chdbDataDir, testDatabase } from '../connectors/clickhouse-fixtures.js';
import { DAY_START, seedStore } from '../schemas/models-fixtures.js';

const ENGINES = [
  ['clickhouse-server 18.16', 'server'],
  ['chDB', 'chdb'],
] as const;
const thresholds = defaultExpectationThresholds(defaultRuleProfile);
const NOW = DAY_START + 86_400_000;

describe.each(ENGINES)('expectations on %s', (_name, engine) => {
  let dataDir: ReturnType<typeof chdbDataDir> | undefined;
  const stores: HotStore[] = [];
  const open = async (label: string) => {
    const database = testDatabase(label);
    const store = openHotStore(
      engine === 'server'
        ? { kind: 'server', url: inject('clickhouseUrl'), database }
        : { kind: 'chdb', path: dataDir!.path, database },
    );
    stores.push(store);
    await store.migrate();
    return store;
  };

  beforeAll(() => {
    dataDir = engine === 'chdb' ? chdbDataDir() : undefined;
  });
  afterAll(async () => {
    for (const s of stores) await s.command(sql`DROP DATABASE IF EXISTS ${sql.ident(s.database)}`);
    for (const s of stores.reverse()) await s.close();
    dataDir?.remove();
  });

  it('a clean day passes every daily expectation and raises nothing', async () => {
    const store = await open('clean');
    await seedStore(store);
    const run = await runExpectations(store, { thresholds, suites: ['daily'], now: NOW, runId: 'r1' });
    expect(run.results.filter((r) => !r.success)).toEqual([]);
    expect(run.results.map((r) => r.kind)).toEqual(
      expect.arrayContaining(['completeness', 'range', 'uniqueness', 'referential_integrity', 'consistency']),
    );
    expect(run.alerts).toEqual([]);
    expect(expectationSummary(run)).toBe(`expectations: ${run.results.length}/${run.results.length} passed`);
  });

  it('catches a seeded completeness drop and a temperature inconsistency, with keys, results and alerts', async () => {
    const store = await open('seeded');
    // 1 of M2's 96 quarter-hours missing: 98.96 % < 99.5 %; M1's own temperature 12 °C above the weather.
    await seedStore(store, { missingM2: 1, m1TemperatureOffset: 12 });
    const run = await runExpectations(store, { thresholds, suites: ['daily'], now: NOW, runId: 'r2' });
    const failed = Object.fromEntries(run.results.filter((r) => !r.success).map((r) => [r.expectation, r]));
    expect(Object.keys(failed).sort()).toEqual([
      'completeness_per_meter_day',
      'meter_temperature_matches_weather',
    ]);
    expect(failed.completeness_per_meter_day!.failingKeys).toEqual(['M2 2024-07-15']);
    expect(failed.completeness_per_meter_day!.observed).toBe('M2 2024-07-15: 0.9896');
    expect(failed.meter_temperature_matches_weather!.failing).toBe(24);
    expect(failed.meter_temperature_matches_weather!.failingKeys[0]).toBe('M1 2024-07-14 22:00:00');

    const stored = await store.query<{ expectation: string; success: number; failing_rows: string }>(
      sql`SELECT expectation, success, failing_rows FROM ${sql.ident(store.database, 'expectation_results')} FINAL WHERE run_id = 'r2' AND success = 0 ORDER BY expectation`,
    );
    expect(stored.map((r) => [r.expectation, Number(r.failing_rows)])).toEqual([
      ['completeness_per_meter_day', 1],
      ['meter_temperature_matches_weather', 24],
    ]);
    const alerts = await store.query<{ kind: string; severity: string; message: string }>(
      sql`SELECT kind, severity, message FROM ${sql.ident(store.database, 'alerts')} FINAL ORDER BY message`,
    );
    expect(alerts.map((a) => [a.kind, a.severity])).toEqual([
      ['quality_degradation', 'warning'],
      ['quality_degradation', 'warning'],
    ]);
    expect(alerts[0]!.message).toContain('completeness_per_meter_day failed on 1 row(s): M2 2024-07-15');

    const md = expectationReportMarkdown(run);
    expect(md).toContain('| daily | completeness_per_meter_day | completeness | **FAIL** | 1 |');
    expect(md).toContain('- `M2 2024-07-15`');
    expect(expectationReportHtml(run)).toContain(
      '<tr class="fail"><td>daily</td><td>meter_temperature_matches_weather</td>',
    );
  });

  it('freshness: the newest reading must be younger than 5 minutes', async () => {
    const store = await open('fresh');
    await seedStore(store);
    const newest = DAY_START + 95 * 900_000;
    const live = (now: number) => runExpectations(store, { thresholds, suites: ['live'], now });
    expect((await live(newest + 299_000)).results[0]!.success).toBe(true);
    const stale = (await live(newest + 300_000)).results[0]!;
    expect(stale).toMatchObject({ expectation: 'readings_fresh', success: false, failingKeys: ['readings'] });
  });
});
