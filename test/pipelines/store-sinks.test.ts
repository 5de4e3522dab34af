import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { openParquetLake, type ParquetLake } from '../../connectors/parquet-lake.js';
import type { OutputBatch } from '../../pipelines/runner.js';
import { storeSinks } from '../../pipelines/sinks.js';
import { epochOfPartFile as epochOfLakeFile } from '../../schemas/parquet.js';
import type { Reading } from '../../schemas/reading.js';
import { INTERVAL, reading, T0 } from '../operators/fixtures.js';

/** `n` readings of meter `meter` from interval `from` on. */
const readings = (meter: string, from: number, n: number): Reading[] =>
  Array.from({ length: n }, (_, i) =>
    reading({ meterId: meter, ts: T0 + (from + i) * INTERVAL, recordId: `${meter}-${from + i}` }),
  );

const batch = (checkpoint: number, flush: number, rows: Reading[]): OutputBatch => ({
  checkpoint,
  flush,
  readings: rows,
  quarantine: [],
  faults: [],
  alerts: [],
  hourly: [],
  dailyPeaks: [],
  recordsIn: rows.length,
  deadLettered: 0,
});

describe('storeSinks: the hot store and the lake as the runner sinks', () => {
  let dir: string;
  let hot: HotStore;
  let lake: ParquetLake;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-store-sinks-'));
    hot = openHotStore({ kind: 'chdb', path: join(dir, 'chdb') });
    await hot.migrate();
    lake = await openParquetLake({ dir: join(dir, 'lake') });
  }, 60_000);

  afterAll(async () => {
    await lake?.close();
    await hot?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sinksFor = () =>
    storeSinks({ hot, lake, sourceName: 'test', workerId: 'w1', coldRows: 50, now: () => T0 });
  const lakeFiles = async () => (await lake.listFiles('readings')).map((f) => basename(f));
  const count = async (query: string) =>
    Number((await hot.query<{ n: string | number }>(sql.raw(query)))[0]!.n);

  it('writes the lake per epoch and per coldRows, and a restart removes the unfinished epoch', async () => {
    const first = sinksFor();
    await first.rollback(0);
    // Epoch 1: two small writes buffered for the lake, written at the seal as one part.
    await first.write(batch(1, 0, readings('m1', 0, 20)));
    await first.write(batch(1, 1, readings('m1', 20, 20)));
    expect(await lakeFiles()).toEqual([]);
    expect(await count('SELECT count() AS n FROM greenstream.readings FINAL')).toBe(40);
    await first.seal!(1);
    expect((await lakeFiles()).map((f) => epochOfLakeFile('w1', f))).toEqual([1]);
    // Epoch 2: 60 rows reach coldRows (50) and write a part mid-epoch; then the worker dies unsealed.
    await first.write(batch(2, 0, readings('m2', 0, 60)));
    await first.write(batch(2, 1, readings('m2', 60, 10)));
    expect((await lakeFiles()).map((f) => epochOfLakeFile('w1', f))).toEqual([1, 2]);

    // The restarted worker resumes from checkpoint 1 and redoes epoch 2, cut differently.
    const second = sinksFor();
    await second.rollback(1);
    expect((await lakeFiles()).map((f) => epochOfLakeFile('w1', f))).toEqual([1]);
    await second.write(batch(2, 0, readings('m2', 0, 70)));
    await second.seal!(2);
    const rows = await lake.query('SELECT count(*) AS n, count(DISTINCT record_id) AS ids FROM readings');
    expect(rows[0]).toEqual({ n: 110n, ids: 110n });
    // The hot store absorbs the rewritten rows; the quality log keeps one row per epoch, the last one.
    expect(await count('SELECT count() AS n FROM greenstream.readings FINAL')).toBe(110);
    const log = await hot.query<{ batch_id: string; records_in: number | string }>(
      sql.raw('SELECT batch_id, records_in FROM greenstream.quality_log FINAL ORDER BY batch_id'),
    );
    expect(log.map((l) => [l.batch_id, Number(l.records_in)])).toEqual([
      ['w1-0000000001', 40],
      ['w1-0000000002', 70],
    ]);
  }, 60_000);

  it('spools the lake rows of an epoch to files, and a restart removes what a killed worker spooled', async () => {
    // The killed worker had a lake of its own (another process); its successor uses `lake`.
    const killedLake = await openParquetLake({ dir: lake.dir });
    const sinksOn = (on: ParquetLake) =>
      storeSinks({ hot, lake: on, sourceName: 'test', workerId: 'w5', coldRows: 50, now: () => T0 });
    const first = sinksOn(killedLake);
    await first.rollback(0);
    await first.write(batch(1, 0, readings('m3', 0, 20)));
    // Below coldRows: no Parquet file yet, the rows wait in a spool file rather than in the heap.
    expect(await lake.listFiles('readings')).not.toContainEqual(expect.stringContaining('part-w5-'));
    const spooled = async () =>
      (await readdir(join(lake.dir, '.tmp'))).filter((f) => f.startsWith('readings.w5.'));
    expect(await spooled()).toHaveLength(1);

    // `killedLake` stays open: closing it would remove its spool, which a killed process cannot do.
    const second = sinksOn(lake);
    await second.rollback(0);
    expect(await spooled()).toEqual([]);
    await killedLake.close();
    await second.write(batch(1, 0, readings('m3', 0, 20)));
    await second.seal!(1);
    expect(await spooled()).toEqual([]);
    const rows = await lake.query("SELECT count(*) AS n FROM readings WHERE meter_id = 'm3'");
    expect(rows[0]).toEqual({ n: 20n });
  }, 60_000);

  it('leaves nothing of a batch in the lake when the hot store fails to take it', async () => {
    // The real store, with a failure injected in the write's last insert (readings are stored by then).
    const failing: HotStore = {
      ...hot,
      insert: ((table, rows) =>
        table === 'quality_log'
          ? Promise.reject(new Error('injected: the quality log insert failed'))
          : hot.insert(table, rows)) as HotStore['insert'],
    };
    const sinks = storeSinks({
      hot: failing,
      lake,
      sourceName: 'fails',
      workerId: 'w6',
      coldRows: 1_000,
      now: () => T0,
    });
    await sinks.rollback(0);
    await expect(sinks.write(batch(1, 0, readings('m6', 0, 20)))).rejects.toThrow(/injected/);
    await sinks.seal!(1);
    expect(await lake.listFiles('readings')).not.toContainEqual(expect.stringContaining('part-w6-'));
    // A batch that is written still reaches the lake through the same sinks.
    const working = storeSinks({
      hot,
      lake,
      sourceName: 'fails',
      workerId: 'w6',
      coldRows: 1_000,
      now: () => T0,
    });
    await working.write(batch(2, 0, readings('m6', 0, 20)));
    await working.seal!(2);
    const rows = await lake.query("SELECT count(*) AS n FROM readings WHERE meter_id = 'm6'");
    expect(rows[0]).toEqual({ n: 20n });
  }, 60_000);

  it('sets a row the encoder refuses aside as a quarantine row and writes the rest of the batch', async () => {
    const sinks = storeSinks({
      hot,
      lake,
      sourceName: 'refused',
      workerId: 'w9',
      coldRows: 1_000,
      now: () => T0,
    });
    await sinks.rollback(0);
    const rows = readings('bad-ts', 0, 5);
    // A time past DateTime's 2106 and a NaN: the encoder refuses both rows, before anything is sent.
    rows[1] = { ...rows[1]!, ts: Date.UTC(2200, 0, 1), recordId: 'bad-ts-2200' };
    rows[3] = { ...rows[3]!, kw: Number.NaN, recordId: 'bad-ts-nan' };
    const out = batch(1, 0, rows);
    // A quarantine row of its own with a time the encoder refuses and a lone surrogate.
    const poisoned = {
      meterId: 'bad-ts',
      ts: Date.UTC(2200, 0, 1),
      raw: 'bad-ts,2200-01-01T00:00:00Z,1,kW\ud800',
      reasons: ['far_future'],
      source: 'raw/2200/01/01/00/x.csv#2',
      quarantinedAt: T0,
    };
    await sinks.write({ ...out, quarantine: [poisoned], recordsIn: 6 });
    await sinks.seal!(1);
    expect(await count("SELECT count() AS n FROM greenstream.readings FINAL WHERE meter_id = 'bad-ts'")).toBe(
      3,
    );
    const quarantined = await hot.query<{ reasons: string[]; ts: string | null; raw: string }>(
      sql.raw(
        "SELECT reasons, ts, raw FROM greenstream.quarantine FINAL WHERE meter_id = 'bad-ts' ORDER BY raw",
      ),
    );
    expect(quarantined).toHaveLength(3);
    expect(quarantined.map((q) => q.reasons.at(-1))).toEqual([
      'far_future',
      expect.stringMatching(/^unencodable:readings\.kw: .*NaN/),
      expect.stringMatching(/^unencodable:readings\.ts: .*outside the DateTime range/),
    ]);
    // The quarantine row's own 2200 time is kept in raw only, its lone surrogate written as U+FFFD.
    expect(quarantined[0]).toMatchObject({ ts: null, raw: 'bad-ts,2200-01-01T00:00:00Z,1,kW\ufffd' });
    // In = stored + quarantined in the quality log; the lake holds the same rows as the hot store.
    const [log] = await hot.query<{ stored: number | string; quarantined: number | string }>(
      sql.raw("SELECT stored, quarantined FROM greenstream.quality_log FINAL WHERE source = 'refused'"),
    );
    expect([Number(log!.stored), Number(log!.quarantined)]).toEqual([3, 3]);
    const lakeRows = await lake.query("SELECT count(*) AS n FROM readings WHERE meter_id = 'bad-ts'");
    expect(lakeRows[0]).toEqual({ n: 3n });
  }, 60_000);

  it('tells the epoch of its own lake files only', () => {
    expect(epochOfLakeFile('w1', 'part-w1-0000000012-000003.parquet')).toBe(12);
    expect(epochOfLakeFile('w1', 'part-w1-0000000012.parquet')).toBe(12);
    expect(epochOfLakeFile('w1', 'part-w10-0000000012-000000.parquet')).toBeUndefined();
    expect(epochOfLakeFile('w1', 'part-w1_replay1-0000000012-000000.parquet')).toBeUndefined();
  });
});
