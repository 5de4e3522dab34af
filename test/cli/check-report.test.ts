import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildReport, reportHtml, reportMarkdown } from '../../cli/report.js';
import { sql } from '../../codecs/sql.js';
import { type HotStore, type HotStoreTarget, openHotStore } from '../../connectors/clickhouse.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runMeterQualityJob } from '../../pipelines/job.js';
import { simulate } from '../../simulator/index.js';
import { findFreePort } from '../harness/servers.js';

const bin = new URL('../../bin/greenstream.js', import.meta.url).pathname;
const clickhouseUrl = inject('clickhouseUrl');

function greenstream(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: {
      ...process.env,
      NATS_URL: '',
      CLICKHOUSE_URL: '',
      CLICKHOUSE_USER: '',
      CLICKHOUSE_PASSWORD: '',
      ...env,
    },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
let landing: string;
const database = `gs_report_${process.pid}_${Date.now() % 100_000}`;

/** Runs the pipeline over the simulated landing folder into one store, and opens it for queries. */
async function populate(target: HotStoreTarget, name: string): Promise<HotStore> {
  const { hot, lake } = await runMeterQualityJob({
    source: { kind: 'files', root: landing },
    registryPath: join(landing, 'registry.csv'),
    hot: target,
    checkpointPath: join(dir, `${name}-checkpoint.json`),
    untilIdle: true,
    replay: false,
    profile: resolveRuleProfile(),
    workerId: name,
  });
  await lake?.close();
  // A quarantine reason is data: the report must show it, not run it.
  await hot.insert('quarantine', [
    {
      meterId: 'MTR-X',
      ts: Date.UTC(2024, 2, 11, 1),
      raw: 'x',
      reasons: ['<script>alert(1)</script> | pipe'],
      source: 'hostile.csv',
      quarantinedAt: Date.UTC(2024, 2, 11, 2),
    },
  ]);
  return hot;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-check-report-'));
  landing = join(dir, 'landing');
  await simulate({ out: landing, meters: 40, days: 1, start: '2024-03-11', seed: 3 });
}, 120_000);

afterAll(async () => {
  const admin = openHotStore({ kind: 'server', url: clickhouseUrl, database });
  await admin.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`).catch(() => {});
  await admin.close();
  await rm(dir, { recursive: true, force: true });
});

describe.each([
  ['server', () => ({ kind: 'server', url: clickhouseUrl, database }) as HotStoreTarget],
  ['chdb', () => ({ kind: 'chdb', path: join(dir, 'chdb') }) as HotStoreTarget],
])('greenstream report on %s', (engine, target) => {
  let store: HotStore;
  beforeAll(async () => {
    store = await populate(target(), `report_${engine}`);
  }, 180_000);
  afterAll(async () => {
    await store?.close();
  });

  it('summarizes the whole store: balanced, and each section agrees with the tables', async () => {
    const all = { from: new Date(0), to: new Date('2100-01-01T00:00:00Z') };
    const report = await buildReport(store, all);
    const section = (title: string) => report.sections.find((s) => s.title === title)!.rows;
    const [balance] = section('Balance');
    expect(Number(balance!.records_in)).toBeGreaterThan(3000);
    expect(Number(balance!.balanced)).toBe(1);
    const faults = await store.query<{ n: string }>(
      sql`SELECT count() AS n FROM ${store.relation('faults')} FINAL`,
    );
    expect(section('Faults by kind').reduce((n, r) => n + Number(r.faults), 0)).toBe(Number(faults[0]!.n));
    expect(section('Faults by kind').length).toBeGreaterThan(0);
    expect(section('Quality tiers').length).toBeGreaterThan(0);
    expect(section('Daily peak hours').map((r) => Number(r.rank))).toEqual([1, 2, 3]);
    expect(section('Quarantine reasons').map((r) => r.reason)).toContain('<script>alert(1)</script> | pipe');

    const md = reportMarkdown(report);
    expect(md).toContain('## Faults by kind');
    expect(md).toContain('&lt;script>alert(1)&lt;/script> \\| pipe');
    const html = reportHtml(report);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&#60;script&#62;');
  });

  it('keeps to the range: half a day has fewer readings, a range with no data has empty sections', async () => {
    const count = (r: Awaited<ReturnType<typeof buildReport>>) =>
      r.sections
        .find((s) => s.title === 'Readings by status')!
        .rows.reduce((n, x) => n + Number(x.readings), 0);
    const day = await buildReport(store, {
      from: new Date('2024-03-11T00:00:00Z'),
      to: new Date('2024-03-12T00:00:00Z'),
    });
    const half = await buildReport(store, {
      from: new Date('2024-03-11T00:00:00Z'),
      to: new Date('2024-03-11T12:00:00Z'),
    });
    expect(count(half)).toBeGreaterThan(0);
    expect(count(half)).toBeLessThan(count(day));
    const none = await buildReport(store, {
      from: new Date('2030-01-01T00:00:00Z'),
      to: new Date('2030-02-01T00:00:00Z'),
    });
    for (const s of none.sections.filter((x) => x.title !== 'Balance')) expect(s.rows, s.title).toEqual([]);
  });
});

describe('greenstream report and check on the command line', () => {
  it('writes an HTML report of a server store to a file', async () => {
    const out = join(dir, 'report.html');
    const r = greenstream([
      'report',
      '--hot',
      clickhouseUrl,
      '--database',
      database,
      '--from',
      '2024-03-11T00:00:00Z',
      '--to',
      '2024-03-12T00:00:00Z',
      '--format',
      'html',
      '--out',
      out,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const html = await import('node:fs/promises').then((fs) => fs.readFile(out, 'utf8'));
    expect(html).toContain('<h2>Quality tiers</h2>');
    expect(html).toContain(database);
  });

  it('passes a good configuration, naming what it checked', () => {
    const r = greenstream([
      'check',
      '--source',
      `files:${landing}`,
      '--registry',
      join(landing, 'registry.csv'),
      '--hot',
      clickhouseUrl,
      '--database',
      database,
    ]);
    expect(r.stdout).toContain('no problems found');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ok\s+registry\s+40 meters/);
    expect(r.stdout).toMatch(/ok\s+schema\s+up to date/);
    expect(r.stdout).toMatch(/ok\s+hot store permissions/);
  });

  it('lists every problem at once and exits 3: profile, registry, source, store, a read-only user', async () => {
    const badProfile = join(dir, 'profile.json');
    await writeFile(badProfile, '{"gaps": {"defaultIntervalMs": -5}}');
    const closedPort = await findFreePort();
    const many = greenstream([
      'check',
      '--profile',
      badProfile,
      '--registry',
      join(dir, 'no-registry.csv'),
      '--source',
      `files:${join(dir, 'no-landing')}`,
      '--hot',
      `http://127.0.0.1:${closedPort}`,
    ]);
    expect(many.code).toBe(3);
    for (const item of ['profile', 'registry', 'source', 'hot store'])
      expect(many.stdout).toMatch(new RegExp(`PROBLEM\\s+${item}\\s`));
    expect(many.stdout).toContain('4 problem(s) found');

    const reader = greenstream(
      [
        'check',
        '--source',
        `files:${landing}`,
        '--registry',
        join(landing, 'registry.csv'),
        '--hot',
        clickhouseUrl,
      ],
      { CLICKHOUSE_USER: 'greenstream_reader', CLICKHOUSE_PASSWORD: 'reader-secret' },
    );
    expect(reader.code).toBe(3);
    expect(reader.stdout).toMatch(/PROBLEM\s+hot store permissions\s+the user is read-only/);
    expect(reader.stdout).not.toContain('reader-secret');

    const badFlag = greenstream(['check', '--flush-interval', 'soon']);
    expect(badFlag.code).toBe(3);
    expect(badFlag.stdout).toMatch(/PROBLEM\s+flags\s+--flush-interval must be a duration/);
  });

  it('connects to NATS and reports an unreachable one as a problem', async () => {
    const natsUrl = inject('natsUrl');
    const base = [
      'check',
      '--registry',
      join(landing, 'registry.csv'),
      '--hot',
      `chdb:${join(dir, 'chdb-check')}`,
    ];
    const good = greenstream([...base, '--source', natsUrl]);
    expect(good.stdout).toMatch(/ok\s+nats\s+connected/);
    expect(good.stdout).toMatch(/ok\s+jetstream\s+enabled/);
    expect(good.code).toBe(0);
    const down = greenstream([...base, '--source', `nats://127.0.0.1:${await findFreePort()}`]);
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/PROBLEM\s+nats\s/);
  });
});
