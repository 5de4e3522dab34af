import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { wellFormed } from '../../codecs/unicode.js';
import {
  LakeInputError,
  openParquetLake,
  PARQUET_ROW_GROUP_ROWS,
  type ParquetLake,
} from '../../connectors/parquet-lake.js';
import type { QuarantineRecord, Reading } from '../../schemas/reading.js';
import { makeHourly, makeQuarantine, makeReadings } from './parquet-fixtures.js';

const JAN_31_2300 = Date.UTC(2024, 0, 31, 23);

/** Strings a CSV spool could mangle: its own delimiters, its NULL marker, control and lone surrogate characters. */
const HOSTILE = [
  '',
  '\\N',
  '"',
  '""',
  'a,b',
  'tab\there',
  'line\nbreak',
  'cr\rlf\r\n',
  'nul\u0000inside',
  'lone \ud800 high',
  'lone \udc00 low',
  'back\\slash',
  ' padded ',
  '[json, "like"]',
  'ü € 𝄞',
  '\u007f\u001b',
];

/** Readings over two months carrying every hostile string, edge numbers and measurements. */
function hostileReadings(): Reading[] {
  const base = makeReadings({ start: JAN_31_2300, meters: 4, intervals: 8 });
  const kws = [
    0,
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    5e-324,
    1.7976931348623157e308,
    0.1 + 0.2,
    null,
    1e21,
    -1.5e-7,
  ];
  return base.map((r, i) => {
    const text = HOSTILE[i % HOSTILE.length] as string;
    return {
      ...r,
      meterId: i % 3 === 0 ? text : r.meterId,
      kw: kws[i % kws.length] as number | null,
      rawValue: text,
      rawUnit: HOSTILE[(i + 5) % HOSTILE.length] as string,
      source: `${text}|${i}`,
      flags: i % 4 === 0 ? [] : (['spike', HOSTILE[i % HOSTILE.length], ''] as Reading['flags']),
      recordId: `rec-${String(i).padStart(3, '0')}`,
      processedAt: r.processedAt + 0.5 * (i % 2),
      ...(i % 2 === 0 ? { measurements: { voltage: 230.1, current: null, humidity: -0 } } : {}),
    };
  });
}

describe('Parquet lake spool', () => {
  const dirs: string[] = [];
  const lakes: ParquetLake[] = [];
  let dir: string;
  let lake: ParquetLake;

  const openLake = async (at: string, options: { removeTemporaryFilesOlderThanMs?: number } = {}) => {
    const opened = await openParquetLake({ dir: at, ...options });
    lakes.push(opened);
    return opened;
  };
  const spoolFiles = async (at = dir) =>
    (await readdir(join(at, '.tmp'))).filter((f) => f.endsWith('.spool.csv')).sort();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'greenstream-spool-'));
    dirs.push(dir);
    lake = await openLake(dir);
  });

  afterEach(async () => {
    await Promise.all(lakes.splice(0).map((l) => l.close()));
  });

  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('stores hostile strings, edge numbers and huge values exactly as a direct write of the same rows', async () => {
    const readings = hostileReadings();
    const huge = 'x'.repeat(3 * 1024 * 1024) + '\u0000"\n,é';
    const quarantine: QuarantineRecord[] = [
      ...makeQuarantine(JAN_31_2300, 9),
      {
        meterId: 'q\ud800',
        ts: null,
        raw: huge,
        reasons: HOSTILE.slice(),
        source: '\\N',
        quarantinedAt: JAN_31_2300,
      },
    ];
    const hourly = makeHourly(JAN_31_2300, 3, 3);
    const other = await openLake(await mkdtemp(join(tmpdir(), 'greenstream-spool-direct-')));
    dirs.push(other.dir);
    await other.writeBatch('readings', readings, 'direct');
    await other.writeBatch('quarantine', quarantine, 'direct');
    await other.writeBatch('hourly', hourly, 'direct');

    // In pieces, as a sink appends its batches.
    const spools = {
      readings: lake.spool('readings', 'w1'),
      quarantine: lake.spool('quarantine', 'w1'),
      hourly: lake.spool('hourly', 'w1'),
    };
    spools.readings.append(readings.slice(0, 7));
    spools.readings.append(readings.slice(7));
    spools.quarantine.append(quarantine);
    spools.hourly.append(hourly);
    expect(spools.readings.rows).toBe(readings.length);
    const written = await spools.readings.write('spooled');
    await spools.quarantine.write('spooled');
    await spools.hourly.write('spooled');
    expect(written.partitions.map((p) => [p.month, p.rows])).toEqual([
      [1, 16],
      [2, 16],
    ]);
    expect(await spoolFiles()).toEqual([]);

    for (const [table, order] of [
      ['readings', 'record_id'],
      ['quarantine', 'quarantined_at, raw'],
      ['hourly', 'meter_id, hour'],
    ] as const) {
      const stored = await lake.query(`SELECT * FROM ${table} ORDER BY ${order}`);
      const expected = await other.query(`SELECT * FROM ${table} ORDER BY ${order}`);
      expect(stored).toEqual(expected);
    }
    const stored = await lake.query('SELECT * FROM readings ORDER BY record_id');
    // The spool did carry what this test claims: exact strings, U+FFFD for lone surrogates, -0, NaN, NULLs.
    expect(stored.map((r) => r.raw_value)).toEqual(readings.map((r) => wellFormed(r.rawValue)));
    expect(stored.map((r) => r.flags)).toEqual(readings.map((r) => r.flags.map(wellFormed)));
    expect(Object.is(stored[1]?.kw, -0)).toBe(true);
    expect(Number.isNaN(stored[2]?.kw)).toBe(true);
    expect(stored[8]?.kw).toBeNull();
    expect(stored[0]?.humidity).toBe(-0);
    expect(Object.is(stored[0]?.humidity, -0)).toBe(true);
    const [big] = await lake.query('SELECT raw, reasons, source FROM quarantine WHERE meter_id = $m', {
      m: 'q\ufffd',
    });
    expect(big).toEqual({ raw: huge, reasons: HOSTILE.map(wellFormed), source: '\\N' });
  }, 60_000);

  it('writes the files of a spool in its sort order, and a replay of the checkpoint replaces them', async () => {
    const readings = makeReadings({ start: JAN_31_2300, meters: 30, intervals: 8 }).reverse();
    for (let attempt = 0; attempt < 2; attempt++) {
      const spool = lake.spool('readings', 'w1');
      spool.append(readings);
      await spool.write('ckpt-1');
    }
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 240n }]);
    const inFile = await lake.query(`SELECT meter_id, ts FROM read_parquet($file)`, {
      file: (await lake.listFiles('readings'))[0] as string,
    });
    const sorted = [...inFile].sort((a, b) =>
      a.meter_id === b.meter_id
        ? Number(a.ts) - Number(b.ts)
        : String(a.meter_id) < String(b.meter_id)
          ? -1
          : 1,
    );
    expect(inFile).toEqual(sorted);
  });

  it('writes row groups of PARQUET_ROW_GROUP_ROWS rows, the rows in sort order as a direct write has them', async () => {
    // Time-major, as parts arrive: the sort moves every row; 2.5 row groups, ~14 MB of spool (many read buffers).
    const readings = makeReadings({
      start: Date.UTC(2024, 0, 10),
      meters: 1024,
      intervals: Math.ceil((PARQUET_ROW_GROUP_ROWS * 2.5) / 1024),
    });
    const spool = lake.spool('readings', 'w1');
    for (let from = 0; from < readings.length; from += 10_000)
      spool.append(readings.slice(from, from + 10_000));
    const [spooled] = (await spool.write('spooled')).files;
    const [direct] = (await lake.writeBatch('readings', readings, 'direct')).files;
    const groups = (file: string | undefined) =>
      lake.query(
        `SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata($file) ORDER BY row_group_id`,
        { file: file as string },
      );
    const rest = readings.length - 2 * PARQUET_ROW_GROUP_ROWS;
    const expected = [PARQUET_ROW_GROUP_ROWS, PARQUET_ROW_GROUP_ROWS, rest].map((n, i) => ({
      row_group_id: BigInt(i),
      row_group_num_rows: BigInt(n),
    }));
    expect(await groups(spooled)).toEqual(expected);
    expect(await groups(direct)).toEqual(expected);
    // Every row of the two files alike, at the same place in the file.
    const unlike = await lake.query(
      `SELECT count(*) AS n FROM (
         (SELECT * FROM read_parquet($a, file_row_number = true)
          EXCEPT ALL SELECT * FROM read_parquet($b, file_row_number = true))
         UNION ALL
         (SELECT * FROM read_parquet($b, file_row_number = true)
          EXCEPT ALL SELECT * FROM read_parquet($a, file_row_number = true)))`,
      { a: spooled as string, b: direct as string },
    );
    expect(unlike).toEqual([{ n: 0n }]);
    const inFile = await lake.query(
      'SELECT meter_id, ts FROM read_parquet($file, file_row_number = true) ORDER BY file_row_number',
      {
        file: spooled as string,
      },
    );
    expect(inFile.map((r) => `${r.meter_id} ${(r.ts as Date).toISOString()}`)).toEqual(
      [...readings]
        .sort((a, b) => (a.meterId === b.meterId ? a.ts - b.ts : a.meterId < b.meterId ? -1 : 1))
        .map((r) => `${r.meterId} ${new Date(r.ts).toISOString()}`),
    );
  }, 60_000);

  it('refuses a call with a bad row as a whole, keeping what earlier calls spooled', async () => {
    const spool = lake.spool('readings', 'w1');
    const good = makeReadings({ start: JAN_31_2300, meters: 5, intervals: 4 });
    spool.append(good);
    // A bad row after rows of a month the spool has not seen yet (February), and past a buffer's worth.
    const next = makeReadings({ start: Date.UTC(2024, 1, 1), meters: 5000, intervals: 2 });
    const bad = [...next, { ...(next[0] as Reading), qualityScore: 300 }];
    expect(() => spool.append(bad)).toThrow(LakeInputError);
    try {
      spool.append(bad);
    } catch (error) {
      expect((error as LakeInputError).context).toMatchObject({ column: 'quality_score', row: next.length });
    }
    expect(() => spool.append([{ ...(good[0] as Reading), kw: '1' as unknown as number }])).toThrow(
      /Expected a number/,
    );
    expect(spool.rows).toBe(20);
    const result = await spool.write('ckpt-1');
    // No February file: every February row was taken back out.
    expect(result.partitions.map((p) => [p.month, p.rows])).toEqual([[1, 20]]);
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 20n }]);
    expect(() => spool.append(good)).toThrow(/written or discarded/);
  });

  it('removes the spool of a killed worker, and only its own, when that worker starts again', async () => {
    const child = promisify(execFile)(
      join(process.cwd(), 'node_modules/.bin/vite-node'),
      [fileURLToPath(new URL('./parquet-lake-spool-crash.fixture.ts', import.meta.url)), dir],
      { cwd: process.cwd(), timeout: 60_000 },
    );
    await expect(child).rejects.toMatchObject({ signal: 'SIGKILL' });
    expect(JSON.parse(await readFile(join(dir, 'spooled.json'), 'utf8'))).toBe(80);
    const killed = await spoolFiles();
    expect(killed).toHaveLength(2);
    expect(killed.every((f) => f.startsWith('readings.w-killed.'))).toBe(true);
    // Another worker's spool, open in this lake, and a worker whose id extends the killed one's.
    const live = lake.spool('readings', 'w-killed');
    live.append(makeReadings({ start: JAN_31_2300, meters: 1, intervals: 1 }));
    const stranger = join(dir, '.tmp', 'readings.w-killed.2.1.2.2024-01.spool.csv');
    await writeFile(stranger, '');

    const removed = await lake.removeSpools('w-killed');
    expect(removed.map((f) => f.slice(join(dir, '.tmp').length + 1)).sort()).toEqual(killed);
    const left = await spoolFiles();
    expect(left).toHaveLength(2);
    expect(left).toContain('readings.w-killed.2.1.2.2024-01.spool.csv');
    await live.write('ckpt-1');
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 1n }]);
    // What no worker comes back for goes once old, like temporary files.
    await openLake(dir, { removeTemporaryFilesOlderThanMs: 0 });
    expect(await spoolFiles()).toEqual([]);
  }, 60_000);

  it('discards a spool without writing anything', async () => {
    const spool = lake.spool('quarantine', 'w1');
    spool.append(makeQuarantine(JAN_31_2300, 20));
    expect(await spoolFiles()).toHaveLength(2);
    await spool.discard();
    expect(await spoolFiles()).toEqual([]);
    expect(await lake.listFiles('quarantine')).toEqual([]);
  });

  it('removes the files of spools never written when the lake closes', async () => {
    const spool = lake.spool('readings', 'w1');
    spool.append(makeReadings({ start: JAN_31_2300, meters: 3, intervals: 8 }));
    expect(await spoolFiles()).toHaveLength(2);
    await lake.close();
    expect(await spoolFiles()).toEqual([]);
    expect(() => spool.append(makeReadings({ start: JAN_31_2300, meters: 1, intervals: 1 }))).toThrow(
      /written or discarded/,
    );
  });
});
