import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ImportSummary, importFiles, importProfile } from '../../cli/import.js';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';

/**
 * `greenstream import` over every published sample file (`../shared/data`, beside the repository in CI)
 * plus a truncated Green Button feed, checked per data stream against figures computed here from the raw
 * files by a deliberately naive parser of each format (not the codecs under test).
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DATA = join(REPO, '..', 'shared', 'data');

interface StreamFigures {
  n: number;
  sumKw: number;
  firstStart: number;
}

/** NEM12 by hand: 200 → stream, 300 → a day (a later one replaces), 400 `N` → missing; active energy only. */
function nem12Figures(text: string): { dead: boolean; streams: Map<string, StreamFigures> } {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const streams = new Map<string, StreamFigures>();
  if (lines.length === 0 || !lines[0]!.startsWith('100,NEM12') || !lines.some((l) => l.startsWith('300,'))) {
    return { dead: true, streams };
  }
  const days = new Map<string, { id: string; start: number; len: number; kw: (number | null)[] }>();
  let id = '';
  let factor = 0;
  let len = 30;
  let day: { kw: (number | null)[] } | undefined;
  for (const line of lines) {
    const f = line.split(',');
    if (f[0] === '200') {
      id = `${f[1]}-${f[4]}`;
      factor = ({ KWH: 1, WH: 0.001, MWH: 1000 } as Record<string, number>)[f[7]!.toUpperCase()] ?? 0;
      len = Number(f[8]);
    } else if (f[0] === '300') {
      day = undefined;
      const n = 1440 / len;
      const quality = f[2 + n];
      if (factor === 0 || quality === undefined || !/^[AESFNV]/.test(quality)) continue;
      const date = f[1]!;
      const start = Date.UTC(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8)) - 10 * 3_600_000;
      const kw = f
        .slice(2, 2 + n)
        .map((v) => (quality.startsWith('N') ? null : (Number(v) * factor * 60) / len));
      day = { kw };
      days.delete(`${id}|${date}`);
      days.set(`${id}|${date}`, { id, start, len, kw });
    } else if (f[0] === '400' && day !== undefined) {
      if (f[3]!.startsWith('N')) for (let i = Number(f[1]); i <= Number(f[2]); i++) day.kw[i - 1] = null;
    }
  }
  for (const d of days.values()) {
    const s = streams.get(d.id) ?? { n: 0, sumKw: 0, firstStart: Number.POSITIVE_INFINITY };
    d.kw.forEach((kw, i) => {
      if (kw === null) return;
      s.n++;
      s.sumKw += kw;
      s.firstStart = Math.min(s.firstStart, d.start + i * d.len * 60_000);
    });
    streams.set(d.id, s);
  }
  return { dead: false, streams };
}

/** Green Button by regular expressions: Wh × 10^multiplier over each reading's duration. */
function greenButtonFigures(text: string): Map<string, StreamFigures> {
  const usagePoint = /rel="self" href="[^"]*\/resource\/(RetailCustomer\/\d+\/UsagePoint\/\d+)"/.exec(
    text,
  )![1]!;
  expect(/<uom>(\d+)<\/uom>/.exec(text)![1]).toBe('72');
  const multiplier = Number(/<powerOfTenMultiplier>(-?\d+)</.exec(text)![1]);
  const s: StreamFigures = { n: 0, sumKw: 0, firstStart: Number.POSITIVE_INFINITY };
  const reading =
    /<IntervalReading>[\s\S]*?<duration>(\d+)<\/duration>\s*<start>(\d+)<\/start>[\s\S]*?<value>(-?\d+)<\/value>/g;
  for (const m of text.matchAll(reading)) {
    const hours = Number(m[1]) / 3600;
    s.n++;
    s.sumKw += (Number(m[3]) * 10 ** multiplier) / 1000 / hours;
    s.firstStart = Math.min(s.firstStart, Number(m[2]) * 1000);
  }
  return new Map([[usagePoint, s]]);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

describe('greenstream import of the published NEM12 and Green Button samples', () => {
  let dir: string;
  let summary: ImportSummary;
  let hot: HotStore;
  const truncated = () => join(dir, 'in', 'Coastal_truncated.xml');
  const expected = new Map<string, StreamFigures>();
  const expectedDead: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-import-'));
    const files = (await filesUnder(DATA)).filter((f) => /\.(csv|xml)$/i.test(f));
    for (const f of files) {
      const text = await readFile(f, 'utf8');
      if (f.endsWith('.xml')) {
        for (const [id, s] of greenButtonFigures(text)) expected.set(id, s);
        continue;
      }
      const nem = nem12Figures(text);
      if (nem.dead) expectedDead.push(f);
      for (const [id, s] of nem.streams) expected.set(id, s);
    }
    const coastal = await readFile(
      join(DATA, 'greenbutton', 'Coastal_Multi_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_5.xml'),
      'utf8',
    );
    await mkdir(join(dir, 'in'));
    await writeFile(truncated(), coastal.slice(0, Math.floor(coastal.length / 2)));
    expectedDead.push(truncated());
    // The registry knows one meter: it wins over what the file says of it.
    await writeFile(
      join(dir, 'registry.csv'),
      'meter_id,region,neighborhood,meter_type,vacant,max_kw\nRetailCustomer/7/UsagePoint/1,West,Desert,commercial,false,500\n',
    );
    summary = await importFiles({
      inputs: [DATA, truncated()],
      registryPath: join(dir, 'registry.csv'),
      hot: { kind: 'chdb', path: join(dir, 'chdb') },
      coldDir: join(dir, 'lake'),
      checkpointPath: join(dir, 'checkpoint.json'),
      deadLetterDir: join(dir, 'dead-letter'),
      profile: importProfile(undefined),
      workerId: 'import',
    });
    hot = openHotStore({ kind: 'chdb', path: join(dir, 'chdb') });
  }, 240_000);

  afterAll(async () => {
    await hot?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const rows = <T>(text: string) => hot.query<T>(sql.raw(text));

  it('stores, per data stream, the valued intervals, their kW sum and first UTC start the raw files give', async () => {
    const stored = await rows<{ meter_id: string; n: string | number; s: number; first: string | number }>(
      `SELECT meter_id, countIf(status = 'measured' AND isNotNull(kw)) AS n,
              sumIf(assumeNotNull(kw), status = 'measured' AND isNotNull(kw)) AS s,
              toUnixTimestamp(minIf(ts, status = 'measured' AND isNotNull(kw))) AS first
       FROM greenstream.readings FINAL GROUP BY meter_id ORDER BY meter_id`,
    );
    const byId = new Map(stored.map((r) => [r.meter_id, r]));
    expect([...byId.keys()].sort()).toEqual([...expected.keys()].sort());
    expect(expected.size).toBeGreaterThan(200);
    for (const [id, e] of expected) {
      const got = byId.get(id)!;
      expect({ id, n: Number(got.n) }).toEqual({ id, n: e.n });
      // kW is stored to 4 decimals: the sum may differ by half a unit of the last decimal per value.
      expect(Math.abs(got.s - e.sumKw), id).toBeLessThanOrEqual(e.n * 0.00005 + 1e-6);
      expect({ id, first: Number(got.first) * 1000 }).toEqual({ id, first: e.firstStart });
    }
    expect(summary.streams).toBe(expected.size);
  });

  it('converts energy to power and keeps the raw value and unit', async () => {
    const [r] = await rows<{ kw: number; raw_value: string; raw_unit: string; flags: string[] }>(
      `SELECT kw, raw_value, raw_unit, flags FROM greenstream.readings FINAL
       WHERE meter_id = 'NEM1201002-E1' AND ts = toDateTime('2005-03-14 14:00:00', 'UTC')`,
    );
    expect(r).toMatchObject({ kw: 600, raw_value: '300.000', raw_unit: 'KWH' });
    expect(r!.flags).toContain('energy_converted');
    const [gb] = await rows<{ kw: number; raw_value: string; raw_unit: string }>(
      `SELECT kw, raw_value, raw_unit FROM greenstream.readings FINAL
       WHERE meter_id = 'RetailCustomer/5/UsagePoint/1' AND ts = toDateTime('2011-01-01 08:00:00', 'UTC')`,
    );
    expect(gb).toMatchObject({ kw: 0.45, raw_value: '450', raw_unit: 'Wh' });
  });

  it('keeps the source quality of the V-day files: substituted intervals flagged, actual ones not', async () => {
    const flagged = await rows<{
      meter_id: string;
      substituted: string | number;
      estimated: string | number;
    }>(
      `SELECT meter_id, countIf(has(flags, 'source_substituted')) AS substituted,
              countIf(has(flags, 'source_estimated')) AS estimated
       FROM greenstream.readings FINAL
       WHERE meter_id IN ('NEM1208150-E1', 'NEM1203042-E1', 'NEM1210189-E1') AND status = 'measured'
       GROUP BY meter_id ORDER BY meter_id`,
    );
    expect(flagged.map((r) => [r.meter_id, Number(r.substituted), Number(r.estimated)])).toEqual([
      ['NEM1203042-E1', 0, 0], // V days whose 400 records are all A
      ['NEM1208150-E1', 26 + 48, 0], // S14 for intervals 23–48, then F14/F15/F18 all day
      ['NEM1210189-E1', 28, 0], // F51 for intervals 21–48 of 2 March
    ]);
    const first = await rows<{ flags: string[] }>(
      `SELECT flags FROM greenstream.readings FINAL
       WHERE meter_id = 'NEM1208150-E1' AND ts = toDateTime('2005-03-15 01:00:00', 'UTC')`,
    );
    expect(first[0]!.flags).toContain('source_substituted');
  });

  it('dead-letters the undecodable files whole and quarantines bad records, each naming file and record', async () => {
    const dead = summary.deadLetteredFiles.map((d) => d.path).sort();
    expect(dead).toEqual([...expectedDead].sort());
    for (const d of summary.deadLetteredFiles) expect(d.reason.length).toBeGreaterThan(20);
    expect(summary.deadLetteredFiles.find((d) => d.path === truncated())!.reason).toContain(
      'not well-formed XML',
    );
    const copy = JSON.parse(
      await readFile(join(dir, 'dead-letter', 'Coastal_truncated.xml.reason.json'), 'utf8'),
    ) as { reason: string };
    expect(copy.reason).toContain('truncated');
    const quarantined = await rows<{ source: string; reasons: string[] }>(
      `SELECT source, reasons FROM greenstream.quarantine FINAL WHERE source LIKE '%invalid%' ORDER BY source`,
    );
    const invalid = join(DATA, 'nem12', 'invalid');
    expect(quarantined.map((q) => relative(invalid, q.source))).toEqual([
      'Example_NEM12_15min_200_30min_300.csv#3',
      'Example_NEM12_incomplete_interval.csv#3',
      'Example_NEM12_incomplete_interval.csv#6',
      'Example_NEM12_incomplete_interval.csv#7',
    ]);
    expect(quarantined[0]!.reasons[0]).toContain('needs 96');
    expect(quarantined[2]!.reasons[0]).toContain('reactive');
  });

  it('registers the meters the registry lacks from the files, and lets the registry win where it knows one', async () => {
    const meters = await rows<{ meter_id: string; meter_type: string; max_kw: number | null }>(
      'SELECT meter_id, meter_type, max_kw FROM greenstream.meters FINAL ORDER BY meter_id',
    );
    expect(meters).toHaveLength(expected.size);
    const desert = meters.find((m) => m.meter_id === 'RetailCustomer/7/UsagePoint/1');
    expect(desert).toEqual({
      meter_id: 'RetailCustomer/7/UsagePoint/1',
      meter_type: 'commercial',
      max_kw: 500,
    });
    expect(meters.filter((m) => m.meter_type === 'unknown')).toHaveLength(expected.size - 1);
    expect(summary.registered.map((m) => m.meterId)).not.toContain('RetailCustomer/7/UsagePoint/1');
    const coastal = summary.registered.find((m) => m.meterId === 'RetailCustomer/5/UsagePoint/1')!;
    expect(coastal.intervalMinutes).toBe(60);
    expect(JSON.parse(coastal.origin!).localTime).toEqual({
      tzOffsetSeconds: -28800,
      dstOffsetSeconds: 3600,
      dstStartRule: '360E2000',
      dstEndRule: 'B40E2000',
    });
    // No residential limit for unknown meters: 600 kW half-hours of NEM1201002 are stored, not quarantined.
    const overLimit = await rows<{ n: string | number }>(
      "SELECT count() AS n FROM greenstream.quarantine FINAL WHERE has(reasons, 'out_of_range')",
    );
    expect(Number(overLimit[0]!.n)).toBe(0);
  });

  it('balances: records in = stored + quarantined, in the stores as in the summary', async () => {
    const t = summary.totals;
    expect(summary.balanced).toBe(true);
    expect(t.recordsIn).toBe(t.measured + t.quarantined);
    expect(t.deadLettered).toBe(expectedDead.length);
    const [counts] = await rows<{ measured: string | number; quarantined: string | number }>(
      `SELECT (SELECT count() FROM greenstream.readings FINAL WHERE status = 'measured') AS measured,
              (SELECT count() FROM greenstream.quarantine FINAL) AS quarantined`,
    );
    expect(Number(counts!.measured)).toBe(t.measured);
    expect(Number(counts!.quarantined)).toBe(t.quarantined);
    const valued = [...expected.values()].reduce((sum, s) => sum + s.n, 0);
    expect(t.measured).toBeGreaterThanOrEqual(valued);
  });
});

describe('the README command: greenstream import ../shared/data/nem12', () => {
  it('prints its summary', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gs-import-cli-'));
    try {
      const args = [
        join(REPO, 'bin', 'greenstream.js'),
        'import',
        '../shared/data/nem12',
        '--hot',
        `chdb:${join(dir, 'chdb')}`,
        '--cold',
        join(dir, 'lake'),
        '--checkpoint',
        join(dir, 'checkpoint.json'),
        '--dead-letter',
        join(dir, 'dead-letter'),
      ];
      const r = spawnSync(process.execPath, args, {
        cwd: REPO,
        encoding: 'utf8',
        env: { ...process.env, CLICKHOUSE_URL: '' },
        timeout: 180_000,
      });
      expect(r.stderr).not.toMatch(/Error/);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^imported 11 file\(s\) in [\d.]+ s: 8 decoded, 3 dead-lettered$/m);
      expect(r.stdout).toMatch(/^balance: +(\d+) = (\d+) \+ (\d+) ✓/m);
      expect(r.stdout).toContain('registered from the files (208 meter(s) not in the registry)');
      expect(r.stdout).toContain('Example_NEM12_missing_header.csv: NEM12 file lacks its 100,NEM12 header');
      // The checkpoint records the files done: a second run imports nothing again.
      const again = spawnSync(process.execPath, args, {
        cwd: REPO,
        encoding: 'utf8',
        env: { ...process.env, CLICKHOUSE_URL: '' },
        timeout: 180_000,
      });
      expect(again.status).toBe(0);
      expect(again.stdout).toMatch(
        /^imported 11 file\(s\) in [\d.]+ s: 0 decoded, 0 dead-lettered, 11 skipped/m,
      );
      // Totals are the checkpoint's, carried over: the balance still holds.
      const balance = /^balance: .*$/m.exec(r.stdout)![0];
      expect(again.stdout).toContain(balance);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
