import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LakeInputError,
  LakeWriteError,
  openParquetLake,
  type ParquetLake,
} from '../../connectors/parquet-lake.js';
import { readingArrowSchema, recordBatchFromRows } from '../../schemas/arrow.js';
import { type Reading, readingColumns } from '../../schemas/reading.js';
import {
  HOSTILE_METER_ID,
  makeHourly,
  makeQuarantine,
  makeReadings,
  readingAsLakeRow,
} from './parquet-fixtures.js';

const JAN_31_2300 = Date.UTC(2024, 0, 31, 23);
/** 20 meters × 8 quarter hours from 23:00 on 31 January: 80 readings in January, 80 in February. */
const twoMonths = (): Reading[] => makeReadings({ start: JAN_31_2300, meters: 20, intervals: 8 });

const byRecordId = (a: { record_id?: unknown }, b: { record_id?: unknown }): number =>
  String(a.record_id) < String(b.record_id) ? -1 : String(a.record_id) > String(b.record_id) ? 1 : 0;

describe('Parquet lake', () => {
  const dirs: string[] = [];
  const lakes: ParquetLake[] = [];
  let dir: string;
  let lake: ParquetLake;

  const openLake = async (options: Omit<Parameters<typeof openParquetLake>[0], 'dir'> = {}) => {
    const opened = await openParquetLake({ dir, ...options });
    lakes.push(opened);
    return opened;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'greenstream-lake-'));
    dirs.push(dir);
    lake = await openLake();
  });

  afterEach(async () => {
    await Promise.all(lakes.splice(0).map((l) => l.close()));
  });

  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('refuses to write through a symbolic link planted as a lake child, and writes nothing outside', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'greenstream-outside-'));
    dirs.push(outside);
    await mkdir(join(dir, 'readings'), { recursive: true });
    await symlink(outside, join(dir, 'readings', 'year=2024'));
    const failure = await lake.writeBatch('readings', twoMonths(), 'ckpt-0001').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LakeWriteError);
    expect(((failure as Error).cause as Error).message).toMatch(/symbolic link/);
    expect(await readdir(outside)).toEqual([]);
  });

  it('writes readings spanning two months into one file per month partition', async () => {
    const readings = twoMonths();
    const result = await lake.writeBatch('readings', readings, 'ckpt-0001');

    expect(result.rows).toBe(160);
    expect(result.partitions.map(({ year, month, rows }) => ({ year, month, rows }))).toEqual([
      { year: 2024, month: 1, rows: 80 },
      { year: 2024, month: 2, rows: 80 },
    ]);
    expect(result.files.map((f) => relative(dir, f))).toEqual([
      'readings/year=2024/month=01/part-ckpt-0001.parquet',
      'readings/year=2024/month=02/part-ckpt-0001.parquet',
    ]);
    expect(await lake.listFiles('readings')).toEqual(result.files);
    for (const file of result.files) expect((await stat(file)).size).toBeGreaterThan(0);

    const counts = await lake.query(
      'SELECT year, month, count(*) AS n, min(ts) AS first, max(ts) AS last FROM readings GROUP BY ALL ORDER BY ALL',
    );
    expect(counts).toEqual([
      {
        year: 2024,
        month: 1,
        n: 80n,
        first: new Date(JAN_31_2300),
        last: new Date(Date.UTC(2024, 0, 31, 23, 45)),
      },
      {
        year: 2024,
        month: 2,
        n: 80n,
        first: new Date(Date.UTC(2024, 1, 1)),
        last: new Date(Date.UTC(2024, 1, 1, 0, 45)),
      },
    ]);
    // Nothing is left in the temporary folder once the batch is published.
    expect(await readdir(join(dir, '.tmp'))).toEqual([]);
  });

  it('reads back every value as written: strings, NULLs, flag arrays and millisecond timestamps', async () => {
    const readings = twoMonths();
    await lake.writeBatch('readings', readings, 'ckpt-0001');

    const stored = await lake.query('SELECT * EXCLUDE (year, month) FROM readings');
    expect(stored.sort(byRecordId)).toEqual(readings.map(readingAsLakeRow).sort(byRecordId));
    // The fixture does hold what this test claims to cover.
    expect(readings.some((r) => r.kw === null)).toBe(true);
    expect(readings.some((r) => r.flags.length === 0)).toBe(true);
    expect(readings.some((r) => r.flags.length === 2)).toBe(true);
    expect(readings.some((r) => r.processedAt % 1000 !== 0)).toBe(true);
  });

  it('binds query parameters, so a hostile meter id is only data', async () => {
    await lake.writeBatch('readings', twoMonths(), 'ckpt-0001');
    const rows = await lake.query(
      'SELECT count(*) AS n, min(meter_id) AS id FROM readings WHERE meter_id = $meter',
      {
        meter: HOSTILE_METER_ID,
      },
    );
    expect(rows).toEqual([{ n: 8n, id: HOSTILE_METER_ID }]);
  });

  it('stores times as UTC instants, Snappy-compressed, without the partition columns, sorted by meter and time', async () => {
    const { files } = await lake.writeBatch('readings', twoMonths(), 'ckpt-0001');
    const file = files[0] as string;

    const codecs = await lake.query('SELECT DISTINCT compression FROM parquet_metadata($file)', { file });
    expect(codecs).toEqual([{ compression: 'SNAPPY' }]);

    const schema = await lake.query(
      'SELECT name, logical_type FROM parquet_schema($file) WHERE name IN ($a, $b, $c, $d)',
      { file, a: 'ts', b: 'processed_at', c: 'year', d: 'month' },
    );
    expect(schema.map((c) => c.name).sort()).toEqual(['processed_at', 'ts']);
    for (const column of schema) expect(String(column.logical_type)).toContain('isAdjustedToUTC=1');

    const order = await lake.query('SELECT meter_id, ts FROM read_parquet($file)', { file });
    const keys = order.map((r) => `${r.meter_id}\u0000${(r.ts as Date).toISOString()}`);
    expect(keys).toEqual([...keys].sort());
  });

  it('writes an Arrow RecordBatch exactly as it writes the same rows', async () => {
    const readings = twoMonths();
    await lake.writeBatch('readings', readings, 'from-rows');
    const batch = recordBatchFromRows(readingColumns, readings, readingArrowSchema);
    const result = await lake.writeBatch('readings', batch, 'from-arrow');
    expect(result.rows).toBe(160);

    // Compared through DuckDB, file against file, so every column and type must agree.
    const differences = await lake.query(
      `SELECT count(*) AS n FROM (
         (FROM read_parquet($rows) EXCEPT ALL FROM read_parquet($arrow))
         UNION ALL
         (FROM read_parquet($arrow) EXCEPT ALL FROM read_parquet($rows)))`,
      {
        rows: join(dir, 'readings', '**', 'part-from-rows.parquet'),
        arrow: join(dir, 'readings', '**', 'part-from-arrow.parquet'),
      },
    );
    expect(differences).toEqual([{ n: 0n }]);
  });

  it('replaces the files of a replayed checkpoint instead of adding copies', async () => {
    const readings = twoMonths();
    const first = await lake.writeBatch('readings', readings, 'ckpt-0007');
    const replayed = readings.map((r) => ({ ...r, pipelineVersion: '0.1.1' }));
    const second = await lake.writeBatch('readings', replayed, 'ckpt-0007');

    expect(second.files).toEqual(first.files);
    expect(await lake.listFiles('readings')).toEqual(first.files);
    const rows = await lake.query(
      'SELECT count(*) AS n, count(DISTINCT record_id) AS ids, min(pipeline_version) AS version FROM readings',
    );
    expect(rows).toEqual([{ n: 160n, ids: 160n, version: '0.1.1' }]);

    // Another checkpoint adds files beside, never over, the first one's.
    const later = makeReadings({ start: Date.UTC(2024, 1, 1, 2), meters: 20, intervals: 4 });
    const third = await lake.writeBatch('readings', later, 'ckpt-0008');
    expect(third.files.map((f) => relative(dir, f))).toEqual([
      'readings/year=2024/month=02/part-ckpt-0008.parquet',
    ]);
    expect(await lake.listFiles('readings')).toHaveLength(3);
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 240n }]);
  });

  it('shows readers nothing of a batch whose temporary files are written but not renamed', async () => {
    await lake.writeBatch('readings', twoMonths(), 'ckpt-0001');
    const reader = await openLake();
    const before = await lake.listFiles('readings');
    let seenDuringCrashWindow: unknown;

    const failing = await openLake({
      afterTemporaryWrite: async (temporaryFiles) => {
        // The crash window: the new data is complete on disk, only the renames are missing.
        const inspector = await DuckDBInstance.create(':memory:');
        const connection = await inspector.connect();
        const counts = [];
        for (const file of temporaryFiles) {
          const reader = await connection.runAndReadAll('SELECT count(*) AS n FROM read_parquet($file)', {
            file,
          });
          counts.push(reader.getRowObjectsJS()[0]?.n);
        }
        connection.closeSync();
        inspector.closeSync();
        seenDuringCrashWindow = {
          temporaryFiles: temporaryFiles.map((f) => relative(dir, f)),
          counts,
          visible: await reader.query('SELECT count(*) AS n FROM readings'),
          files: await reader.listFiles('readings'),
        };
        throw new Error('simulated crash before rename');
      },
    });
    const more = makeReadings({ start: Date.UTC(2024, 2, 31, 23), meters: 10, intervals: 8 });
    const attempt = failing.writeBatch('readings', more, 'ckpt-0002');

    await expect(attempt).rejects.toBeInstanceOf(LakeWriteError);
    await expect(attempt).rejects.toMatchObject({
      context: { kind: 'readings', checkpointId: 'ckpt-0002' },
      cause: { message: 'simulated crash before rename' },
    });
    expect(seenDuringCrashWindow).toEqual({
      temporaryFiles: [
        expect.stringMatching(/^\.tmp\/readings\.ckpt-0002\.2024-3\.\d+\.\d+\.partial$/),
        expect.stringMatching(/^\.tmp\/readings\.ckpt-0002\.2024-4\.\d+\.\d+\.partial$/),
      ],
      counts: [40n, 40n],
      visible: [{ n: 160n }],
      files: before,
    });
    // The failed writer removed its temporary files; readers still see only the first batch.
    expect(await readdir(join(dir, '.tmp'))).toEqual([]);
    expect(await reader.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 160n }]);
    expect(await lake.listFiles('readings')).toEqual(before);
  });

  it('survives a writer killed between temporary write and rename: nothing visible, leftovers swept', async () => {
    const child = promisify(execFile)(
      join(process.cwd(), 'node_modules/.bin/vite-node'),
      [fileURLToPath(new URL('./parquet-lake-crash.fixture.ts', import.meta.url)), dir],
      { cwd: process.cwd(), timeout: 60_000 },
    );
    await expect(child).rejects.toMatchObject({ signal: 'SIGKILL' });

    const leftovers = JSON.parse(await readFile(join(dir, 'crashed-with.json'), 'utf8')) as string[];
    expect(leftovers).toHaveLength(2);
    for (const file of leftovers) expect(existsSync(file)).toBe(true);
    expect(await lake.listFiles('readings')).toEqual([]);
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 0n }]);

    // A lake opened with the default age keeps young leftovers (another writer might own them) …
    await openLake();
    for (const file of leftovers) expect(existsSync(file)).toBe(true);
    // … and sweeps old ones; the replayed checkpoint then publishes normally.
    const recovered = await openLake({ removeTemporaryFilesOlderThanMs: 0 });
    for (const file of leftovers) expect(existsSync(file)).toBe(false);
    const replay = makeReadings({ start: JAN_31_2300, meters: 5, intervals: 8 });
    await recovered.writeBatch('readings', replay, 'ckpt-crashed');
    expect(await recovered.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 40n }]);
  });

  it('partitions quarantined records by their time, or by when they were quarantined when it is unknown', async () => {
    const start = Date.UTC(2024, 2, 31, 23, 30);
    const records = makeQuarantine(start, 9);
    const result = await lake.writeBatch('quarantine', records, 'ckpt-q1');
    // ts is NULL for i = 0, 3, 6 (quarantined at 00:30 on 1 April); the others fall from 23:45 to 01:15.
    expect(result.partitions.map(({ year, month, rows }) => ({ year, month, rows }))).toEqual([
      { year: 2024, month: 3, rows: 1 },
      { year: 2024, month: 4, rows: 8 },
    ]);
    const stored = await lake.query('SELECT * EXCLUDE (year, month) FROM quarantine ORDER BY quarantined_at');
    expect(stored).toEqual(
      records.map((r) => ({
        meter_id: r.meterId,
        ts: r.ts === null ? null : new Date(r.ts),
        raw: r.raw,
        reasons: r.reasons,
        source: r.source,
        quarantined_at: new Date(r.quarantinedAt),
      })),
    );
  });

  it('writes hourly aggregates beside the readings', async () => {
    const hourly = makeHourly(Date.UTC(2024, 4, 31, 22), 3, 4);
    const result = await lake.writeBatch('hourly', hourly, 'ckpt-h1');
    expect(result.files.map((f) => relative(dir, f))).toEqual([
      'hourly/year=2024/month=05/part-ckpt-h1.parquet',
      'hourly/year=2024/month=06/part-ckpt-h1.parquet',
    ]);
    const rows = await lake.query(
      'SELECT month, count(*) AS n, sum(count) AS readings, max(max_kw) AS max_kw FROM hourly GROUP BY ALL ORDER BY ALL',
    );
    expect(rows).toEqual([
      { month: 5, n: 6n, readings: 24n, max_kw: 4.75 },
      { month: 6, n: 6n, readings: 24n, max_kw: 6.75 },
    ]);
  });

  it('answers queries on an empty lake with the tables’ columns and no rows', async () => {
    expect(await lake.query('SELECT count(*) AS n FROM readings')).toEqual([{ n: 0n }]);
    const columns = await lake.query(`SELECT column_name FROM (DESCRIBE quarantine)`);
    expect(columns.map((c) => c.column_name)).toEqual([
      'meter_id',
      'ts',
      'raw',
      'reasons',
      'source',
      'quarantined_at',
      'year',
      'month',
    ]);
    // Files written by another process appear without reopening.
    const writer = await openLake();
    await writer.writeBatch('hourly', makeHourly(Date.UTC(2024, 0, 1), 2, 2), 'ckpt-h1');
    expect(await lake.query('SELECT count(*) AS n FROM hourly')).toEqual([{ n: 4n }]);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const readings = twoMonths();
    for (const checkpointId of ['', '../escape', '.hidden', 'a/b', 'x'.repeat(129)]) {
      await expect(lake.writeBatch('readings', readings, checkpointId)).rejects.toBeInstanceOf(
        LakeInputError,
      );
    }
    const broken = readings.map((r, i) => (i === 97 ? ({ ...r, kw: 'NaN' } as unknown as Reading) : r));
    await expect(lake.writeBatch('readings', broken, 'ckpt-bad')).rejects.toMatchObject({
      name: 'LakeInputError',
      context: { kind: 'readings', checkpointId: 'ckpt-bad', column: 'kw', row: 97 },
    });
    const noTime = readings.map((r, i) => (i === 3 ? { ...r, ts: Number.NaN } : r));
    await expect(lake.writeBatch('readings', noTime, 'ckpt-bad')).rejects.toMatchObject({
      name: 'LakeInputError',
      context: { column: 'ts', row: 3 },
    });
    expect(await lake.listFiles('readings')).toEqual([]);
    expect(await readdir(join(dir, '.tmp'))).toEqual([]);
    // The lake is still usable after refusing input.
    expect((await lake.writeBatch('readings', readings, 'ckpt-good')).rows).toBe(160);
    expect(await lake.writeBatch('readings', [], 'ckpt-empty')).toMatchObject({ rows: 0, files: [] });
  });

  it('measures the throughput of 1 M readings from Reading[] to Parquet files on disk', async () => {
    const meters = 1000;
    const readings = makeReadings({ start: Date.UTC(2024, 0, 28), meters, intervals: 1000 });
    expect(readings).toHaveLength(1_000_000);

    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    const result = await lake.writeBatch('readings', readings, 'ckpt-bulk');
    const cpu = process.cpuUsage(cpuBefore);
    const seconds = (performance.now() - started) / 1000;

    let bytes = 0;
    for (const file of result.files) bytes += (await stat(file)).size;
    console.log(
      JSON.stringify({
        benchmark: 'parquet-lake.writeBatch(readings)',
        rows: result.rows,
        seconds: Number(seconds.toFixed(3)),
        rowsPerSecond: Math.round(result.rows / seconds),
        // CPU time of this process (JS thread and DuckDB's threads): steadier than wall time on a
        // shared machine.
        cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
        files: result.files.length,
        megabytes: Number((bytes / 1e6).toFixed(1)),
      }),
    );
    expect(result.rows).toBe(1_000_000);
    expect(result.partitions.map((p) => p.month)).toEqual([1, 2]);
    const rows = await lake.query('SELECT count(*) AS n, count(DISTINCT meter_id) AS meters FROM readings');
    expect(rows).toEqual([{ n: 1_000_000n, meters: BigInt(meters) }]);
  }, 180_000);
});
