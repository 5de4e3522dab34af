/**
 * The worker's memory budget reaches the engines it embeds: chDB runs every statement under its share
 * (`max_memory_usage`), DuckDB under its own (`memory_limit`, the seal spilling beyond it), and a
 * budget too small for an engine gives a typed error or the engine's floor, never lost rows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore, SinkUnavailableError } from '../../connectors/clickhouse.js';
import {
  LAKE_THREADS_UNDER_BUDGET,
  LakeInputError,
  openParquetLake,
  type ParquetLake,
} from '../../connectors/parquet-lake.js';
import { ConfigurationError } from '../../core/index.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runMeterQualityJob } from '../../pipelines/job.js';
import {
  DEFAULT_MEMORY_BUDGET_BYTES,
  ENGINE_FLOORS_BYTES,
  engineMemory,
  MemoryBudgetError,
} from '../../pipelines/memory-budget.js';
import { simulate } from '../../simulator/index.js';
import { chdbDataDir, makeReadings as makeHotReadings } from '../connectors/clickhouse-fixtures.js';
import { makeReadings } from '../connectors/parquet-fixtures.js';

const MiB = 1024 * 1024;

describe('engineMemory', () => {
  it('gives chDB and DuckDB a quarter of the budget each, 1.5 GiB by default', () => {
    expect(engineMemory()).toEqual({
      budgetBytes: DEFAULT_MEMORY_BUDGET_BYTES,
      chdbBytes: 384 * MiB,
      duckdbBytes: 384 * MiB,
    });
    expect(engineMemory(4096 * MiB)).toMatchObject({ chdbBytes: 1024 * MiB, duckdbBytes: 1024 * MiB });
  });

  it('gives an engine its floor when its share of a small budget is below it', () => {
    expect(engineMemory(512 * MiB)).toMatchObject({ chdbBytes: 128 * MiB, duckdbBytes: 192 * MiB });
    expect(engineMemory(64 * MiB)).toEqual({
      budgetBytes: 64 * MiB,
      chdbBytes: ENGINE_FLOORS_BYTES.chdb,
      duckdbBytes: ENGINE_FLOORS_BYTES.duckdb,
    });
  });

  it('refuses a budget that is no size with a typed, non-retryable configuration error', () => {
    for (const bad of [0, 10 * MiB, Number.NaN, 1.5e9 + 0.5, Number.POSITIVE_INFINITY, -1]) {
      let thrown: unknown;
      try {
        engineMemory(bad);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(MemoryBudgetError);
      expect(thrown).toBeInstanceOf(ConfigurationError);
      expect((thrown as MemoryBudgetError).retryable).toBe(false);
    }
  });
});

describe('DuckDB under its share', () => {
  let root: string;
  const lakes: ParquetLake[] = [];
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'gs-engine-memory-'));
  });
  afterAll(async () => {
    for (const lake of lakes) await lake.close();
    await rm(root, { recursive: true, force: true });
  });

  it('reports the limit and writes under the floor exactly the rows of an unbounded lake', async () => {
    const bounded = await openParquetLake({
      dir: join(root, 'bounded'),
      memoryLimitBytes: ENGINE_FLOORS_BYTES.duckdb,
    });
    const free = await openParquetLake({ dir: join(root, 'free') });
    lakes.push(bounded, free);
    const memory = await bounded.memory();
    expect(memory.memoryLimit).toBe('192.0 MiB');
    // Under a budget one thread sorts a seal (each thread's sort holds memory of its own).
    expect(memory.threads).toBe(LAKE_THREADS_UNDER_BUDGET);
    expect(memory.allocatorBackgroundThreads).toBe(true);
    const unbounded = await free.memory();
    expect(unbounded.memoryLimit).not.toBe('192.0 MiB');
    expect(unbounded.allocatorBackgroundThreads).toBe(false);
    // A seal's worth of rows (the job's 200,000), sorted under the limit: DuckDB spills, not fails.
    const readings = makeReadings({ start: Date.UTC(2024, 2, 11), meters: 2000, intervals: 100 }).reverse();
    for (const lake of [bounded, free]) {
      const spool = lake.spool('readings', 'w1');
      spool.append(readings);
      await spool.write('ckpt-1');
    }
    const [boundedFile] = await bounded.listFiles('readings');
    const [freeFile] = await free.listFiles('readings');
    const [difference] = await free.query(
      `SELECT (SELECT count(*) FROM (SELECT * FROM read_parquet($a) EXCEPT ALL SELECT * FROM read_parquet($b)))
            + (SELECT count(*) FROM (SELECT * FROM read_parquet($b) EXCEPT ALL SELECT * FROM read_parquet($a))) AS n,
              (SELECT count(*) FROM read_parquet($a)) AS rows`,
      { a: boundedFile as string, b: freeFile as string },
    );
    expect(difference).toEqual({ n: 0n, rows: 200_000n });
    // Same order too: both files hold the rows in the table's sort order.
    const firstRows = `SELECT meter_id, ts FROM read_parquet($f) LIMIT 5 OFFSET 99998`;
    expect(await free.query(firstRows, { f: boundedFile as string })).toEqual(
      await free.query(firstRows, { f: freeFile as string }),
    );
  }, 60_000);

  it('refuses a limit below what DuckDB can work in', async () => {
    await expect(openParquetLake({ dir: join(root, 'tiny'), memoryLimitBytes: MiB })).rejects.toBeInstanceOf(
      LakeInputError,
    );
  });
});

// chDB binds one data directory per process: the file's tests share it.
let dataDir: ReturnType<typeof chdbDataDir>;
beforeAll(() => {
  dataDir = chdbDataDir();
});
afterAll(() => {
  dataDir.remove();
});

describe('chDB under its share', () => {
  const stores: HotStore[] = [];
  afterAll(async () => {
    for (const store of stores) await store.close();
  });

  it('runs queries and inserts under max_memory_usage; an insert over it fails typed and retryable, nothing lost', async () => {
    const database = `gs_memory_${process.pid}`;
    const bounded = openHotStore(
      { kind: 'chdb', path: dataDir.path, database },
      { embeddedMemoryBytes: ENGINE_FLOORS_BYTES.chdb },
    );
    stores.push(bounded);
    await bounded.migrate();
    const [setting] = await bounded.query<{ v: string }>(sql`SELECT getSetting('max_memory_usage') AS v`);
    expect(Number(setting?.v)).toBe(ENGINE_FLOORS_BYTES.chdb);
    await bounded.insert('readings', makeHotReadings(5000, { meters: 50 }));
    const stored = async (): Promise<number> => {
      const [row] = await bounded.query<{ n: string }>(
        sql`SELECT count() AS n FROM ${bounded.relation('readings')} FINAL`,
      );
      return Number(row?.n);
    };
    const before = await stored();
    expect(before).toBeGreaterThan(0);

    // The same data directory with a limit no insert fits in: the write fails as a transient sink
    // failure (the job keeps its batch unacknowledged and stops with status 75), and what was stored stays.
    const starved = openHotStore(
      { kind: 'chdb', path: dataDir.path, database },
      { embeddedMemoryBytes: 1024, retry: { retries: 0 } },
    );
    stores.push(starved);
    const more = makeHotReadings(5000, { meters: 60 });
    const failure = await starved.insert('readings', more).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SinkUnavailableError);
    expect(failure).toMatchObject({ retryable: true, context: { clickhouseCode: 241 } });
    expect(await stored()).toBe(before);
  }, 60_000);
});

describe('a worker on a budget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-worker-memory-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the job over a copy of the landing folder; returns what the engines reported and the outputs. */
  async function run(label: string, budgetBytes: number | undefined) {
    const landing = join(dir, `landing-${label}`);
    await simulate({ out: landing, meters: 20, days: 2, start: '2024-03-11', seed: 7 });
    const seen: { chdb?: number; duckdb?: string } = {};
    const database = `gs_budget_${label}_${process.pid}`;
    const { hot, lake, totals } = await runMeterQualityJob({
      source: { kind: 'files', root: landing },
      registryPath: join(landing, 'registry.csv'),
      hot: { kind: 'chdb', path: dataDir.path, database },
      coldDir: join(dir, `lake-${label}`),
      checkpointPath: join(dir, `${label}-checkpoint.json`),
      untilIdle: true,
      replay: false,
      profile: resolveRuleProfile({}),
      workerId: label,
      ...(budgetBytes === undefined ? {} : { memory: engineMemory(budgetBytes) }),
      observer: {
        stores: (store, opened) => {
          // Read while the run goes on: the settings the statements and the seals run under.
          void store.query<{ v: string }>(sql`SELECT getSetting('max_memory_usage') AS v`).then((rows) => {
            seen.chdb = Number(rows[0]?.v);
          });
          void opened?.memory().then((m) => {
            seen.duckdb = m.memoryLimit;
          });
        },
      },
    });
    try {
      const hourly = await hot.query<Record<string, unknown>>(
        sql`SELECT meter_id, toUInt32(hour) AS hour, avg_kw FROM ${hot.relation('hourly_consumption')} FINAL ORDER BY meter_id, hour`,
      );
      const [lakeRows] = (await lake?.query('SELECT count(*) AS n FROM readings')) ?? [];
      return { seen, totals, hourly, lakeRows };
    } finally {
      await lake?.close();
      await hot.close();
    }
  }

  it('runs its engines under their shares, and a budget at the floors gives the same outputs as the default', async () => {
    const floor = await run('floor', 64 * MiB);
    const standard = await run('default', undefined);
    expect(floor.seen).toEqual({ chdb: ENGINE_FLOORS_BYTES.chdb, duckdb: '192.0 MiB' });
    expect(standard.seen).toEqual({ chdb: 384 * MiB, duckdb: '384.0 MiB' });
    expect(floor.totals.recordsIn).toBeGreaterThan(0);
    expect(floor.totals).toEqual(standard.totals);
    expect(floor.hourly.length).toBeGreaterThan(0);
    expect(floor.hourly).toEqual(standard.hourly);
    expect(floor.lakeRows).toEqual(standard.lakeRows);
  }, 120_000);
});
