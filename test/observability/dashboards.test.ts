/**
 * deploy/grafana against the code: every data-quality dashboard query runs against the hot schema on both
 * engines (18.16 as the read-only dashboard user), and every metric the operations dashboard and the alert
 * rules name is one a worker exposes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { sql } from '../../codecs/sql.js';
import { type HotStore, type HotStoreTarget, openHotStore } from '../../connectors/clickhouse.js';
import { processMetrics } from '../../connectors/process-metrics.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import { makeReadings } from '../connectors/clickhouse-fixtures.js';

const grafana = new URL('../../deploy/grafana/', import.meta.url);

interface Panel {
  readonly title: string;
  readonly targets: readonly { readonly rawSql?: string; readonly expr?: string }[];
}

async function panels(file: string): Promise<Panel[]> {
  return (JSON.parse(await readFile(new URL(file, grafana), 'utf8')) as { panels: Panel[] }).panels;
}

/** The Grafana ClickHouse plugin's macros, expanded as it does, for a fixed range. */
function expandMacros(query: string, database: string): string {
  const from = 'toDateTime(1704067200)'; // 2024-01-01
  const to = 'toDateTime(1893456000)'; // 2030-01-01
  return query
    .replace(
      /\$__timeFilter\(([^)]+)\)/g,
      (_m, column: string) => `${column} >= ${from} AND ${column} <= ${to}`,
    )
    .replace(/\bgreenstream\./g, `${database}.`);
}

const database = `gs_dash_${process.pid}`;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-dashboards-'));
});
afterAll(async () => {
  const admin = openHotStore({ kind: 'server', url: inject('clickhouseUrl'), database });
  await admin.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
  await admin.close();
  await rm(dir, { recursive: true, force: true });
});

describe.each([
  ['ClickHouse 18.16, read-only user', 'server'],
  ['chDB', 'chdb'],
])('the data-quality dashboard on %s', (_name, engine) => {
  let writer: HotStore;
  let reader: HotStore;
  beforeAll(async () => {
    const target: HotStoreTarget =
      engine === 'server'
        ? { kind: 'server', url: inject('clickhouseUrl'), database }
        : { kind: 'chdb', path: join(dir, 'chdb'), database };
    writer = openHotStore(target);
    await writer.migrate();
    await writer.insert(
      'readings',
      makeReadings(200, { meters: 20 }).map((r) => ({ ...r, ts: r.ts - 400 * 86_400_000 })),
    );
    reader =
      engine === 'server'
        ? openHotStore({
            kind: 'server',
            url: inject('clickhouseUrl'),
            database,
            username: 'greenstream_reader',
            password: 'reader-secret',
          })
        : writer;
  });
  afterAll(async () => {
    if (reader !== writer) await reader?.close();
    await writer?.close();
  });

  it('runs every panel query', async () => {
    const all = await panels('data-quality.json');
    expect(all.length).toBeGreaterThanOrEqual(4);
    let rows = 0;
    for (const panel of all)
      for (const target of panel.targets) {
        expect(target.rawSql, panel.title).toBeDefined();
        const result = await reader.query(sql.raw(expandMacros(target.rawSql!, database)));
        rows += result.length;
      }
    expect(rows).toBeGreaterThan(0);
  });

  if (engine === 'server')
    it('cannot write as the dashboard user', async () => {
      await expect(reader.command(sql`DROP TABLE ${reader.relation('readings')}`)).rejects.toThrow(
        /readonly|Cannot execute/i,
      );
    });
});

describe('the operations dashboard and the alert rules', () => {
  it('name only metrics a worker exposes', async () => {
    const exposition = `${new JobMetrics().render()}${await processMetrics().render()}`;
    const families = new Set(
      [...exposition.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap((m) =>
        m[2] === 'histogram' ? [`${m[1]}_bucket`, `${m[1]}_sum`, `${m[1]}_count`] : [m[1]!],
      ),
    );
    const exprs = (await panels('operations.json')).flatMap((p) => p.targets.map((t) => t.expr!));
    const rules = parseYaml(await readFile(new URL('alerts.yml', grafana), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const ruleExprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
    expect(rules.groups[0]!.rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'GreenStreamCheckpointStalled',
        'GreenStreamLagGrowing',
        'GreenStreamSinkFailing',
      ]),
    );
    const named = [...exprs, ...ruleExprs].flatMap((e) =>
      [...e.matchAll(/\b((?:greenstream|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!),
    );
    expect(named.length).toBeGreaterThan(10);
    for (const metric of named) expect(families, metric).toContain(metric);
  });
});
