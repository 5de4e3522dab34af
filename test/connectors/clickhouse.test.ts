import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RowEncodingError, rowEncoder, rowWriter } from '../../codecs/clickhouse-encode.js';
import { sql } from '../../codecs/sql.js';
import {
  type HotStore,
  type HotStoreEvent,
  type HotStoreTarget,
  openHotStore,
  SinkRejectedError,
} from '../../connectors/clickhouse.js';
import {
  capabilitiesOf,
  createTableDdl,
  decodeStoredRow,
  type HotTableName,
  type HotTableRows,
  type HotTableSpec,
  hotSchemaMarkdown,
  hotStoreMigrations,
  hotTableNames,
  hotTables,
  latestViewName,
  SEED_RETENTION_DAYS,
  storedRow,
} from '../../schemas/clickhouse.js';
import { modelTables, modelViews, reportTables } from '../../schemas/models.js';
import { type ReadingFlag, readingColumns } from '../../schemas/reading.js';
import { chdbDataDir, makeReadings, sampleRows, testDatabase } from './clickhouse-fixtures.js';

describe('hot schema', () => {
  it.each(hotTableNames)(
    '%s: keys, partition, version and retention columns exist with usable types',
    (name) => {
      const spec = hotTables[name] as HotTableSpec<unknown>;
      const typeOf = new Map(spec.columns.map((c) => [c.name, c.type]));
      expect(new Set(typeOf.keys()).size).toBe(spec.columns.length);
      for (const key of spec.sortingKey) {
        expect(typeOf.get(key), `${name}.${key}`).toBeDefined();
        // 18.16 refuses Nullable columns in a sorting key.
        expect(typeOf.get(key)).not.toMatch(/^Nullable/);
      }
      // ReplacingMergeTree only collapses duplicates within a partition.
      if (spec.monthlyPartitionOf) expect(spec.sortingKey).toContain(spec.monthlyPartitionOf);
      if (spec.versionColumn) expect(typeOf.get(spec.versionColumn)).toBe('DateTime');
      if (spec.retentionColumn) expect(typeOf.get(spec.retentionColumn)).toBe('DateTime');
    },
  );

  it('maps LowCardinality to String where the engine lacks it, and adds TTL only where it has it', () => {
    const legacy = {
      database: 'greenstream',
      capabilities: capabilitiesOf('18.16.1'),
      retentionDays: SEED_RETENTION_DAYS,
    };
    const modern = { ...legacy, capabilities: capabilitiesOf('26.7.2.1') };
    expect(createTableDdl('readings', legacy).text).not.toMatch(/LowCardinality|TTL/);
    expect(createTableDdl('readings', modern).text).toMatch(/`status` LowCardinality\(String\)/);
    expect(createTableDdl('readings', modern).text).toMatch(/TTL `processed_at` \+ INTERVAL 730 DAY$/);
    expect(createTableDdl('alerts', modern).text).not.toMatch(/TTL/);
    expect(() => createTableDdl('readings', { ...modern, retentionDays: { readings: 0.5 } })).toThrow(
      RangeError,
    );
    expect(() => capabilitiesOf('unknown')).toThrow();
  });

  it('documents every table and column in the README table', () => {
    const markdown = hotSchemaMarkdown();
    for (const name of hotTableNames) {
      expect(markdown).toContain(`### \`greenstream.${name}\``);
      for (const column of hotTables[name].columns) expect(markdown).toContain(`| \`${column.name}\` |`);
    }
    expect(markdown).toContain('| `status` | `LowCardinality(String)` (`String` on 18.16) |');
    expect(markdown).toContain('stream:&lt;name&gt;:&lt;seq&gt;');
  });
});

describe('row encoder', () => {
  const [reading] = makeReadings(1);
  const tricky = {
    ...reading!,
    meterId: 'a\tb\\N\nc',
    kw: null,
    flags: ["it's", 'x\ty'] as unknown as ReadingFlag[],
    processedAt: Date.UTC(2026, 0, 1, 0, 0, 1, 999),
  };

  it('writes TabSeparated with escaped separators, \\N for NULL, UTC date-times and quoted arrays', () => {
    const line = rowEncoder(readingColumns, 'TabSeparated')([tricky]);
    const fields = line.slice(0, -1).split('\t');
    expect(line.endsWith('\n')).toBe(true);
    expect(fields).toHaveLength(readingColumns.length);
    expect(fields[0]).toBe('a\\tb\\\\N\\nc');
    expect(fields[1]).toBe(new Date(tricky.ts).toISOString().slice(0, 19).replace('T', ' '));
    expect(fields[2]).toBe('\\N');
    expect(fields[6]).toBe("['it\\'s','x\\ty']");
    // Milliseconds are cut, not rounded; text, because ClickHouse 26 reads short digit runs as a pattern.
    expect(fields[14]).toBe('2026-01-01 00:00:01');
  });

  it('writes JSONEachRow with the same values', () => {
    const line = rowEncoder(readingColumns, 'JSONEachRow')([tricky]);
    expect(JSON.parse(line)).toMatchObject({
      meter_id: tricky.meterId,
      kw: null,
      flags: tricky.flags,
      processed_at: 1767225601,
    });
  });

  it('names the row and column it cannot encode', () => {
    const rows = [tricky, { ...tricky, qualityScore: -1 }];
    for (const format of ['TabSeparated', 'JSONEachRow'] as const) {
      expect(() => rowEncoder(readingColumns, format)(rows)).toThrow(
        expect.objectContaining({ name: 'RowEncodingError', rowIndex: 1, column: 'quality_score' }),
      );
    }
  });
});

const ENGINES = [
  ['clickhouse-server 18.16', 'server'],
  ['chDB 26.x', 'chdb'],
] as const;

describe.each(ENGINES)('hot store on %s', (_name, engine) => {
  // Made in beforeAll, not at collection: a filtered run skips the hooks and would leak it.
  let dataDir: ReturnType<typeof chdbDataDir> | undefined;
  const opened: HotStore[] = [];
  const databases: string[] = [];

  function target(database: string): HotStoreTarget {
    databases.push(database);
    return engine === 'server'
      ? { kind: 'server', url: inject('clickhouseUrl'), database }
      : { kind: 'chdb', path: dataDir!.path, database };
  }

  function open(label: string, options: Parameters<typeof openHotStore>[1] = {}): HotStore {
    const store = openHotStore(target(testDatabase(label)), options);
    opened.push(store);
    return store;
  }

  let store: HotStore;

  beforeAll(async () => {
    dataDir = engine === 'chdb' ? chdbDataDir() : undefined;
    store = open('main');
    await store.migrate();
  });

  afterAll(async () => {
    for (const database of databases) {
      await store?.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
    }
    // chDB binds one data directory per process and releases it with the last connection.
    for (const s of opened.reverse()) await s.close();
    dataDir?.remove();
  });

  it('detects the engine version and picks portable types', async () => {
    const caps = await store.capabilities();
    if (engine === 'server') {
      expect(caps.version).toBe(inject('clickhouseServerVersion'));
      expect(caps).toMatchObject({ major: 18, lowCardinality: false, ttl: false });
    } else {
      expect(caps.major).toBeGreaterThanOrEqual(26);
      expect(caps).toMatchObject({ lowCardinality: true, ttl: true });
    }
    const [status] = await store.query<{ type: string }>(
      sql`SELECT type FROM system.columns WHERE database = ${store.database} AND table = 'readings' AND name = 'status'`,
    );
    expect(status?.type).toBe(engine === 'server' ? 'String' : 'LowCardinality(String)');
    const [ts] = await store.query<{ type: string }>(
      sql`SELECT type FROM system.columns WHERE database = ${store.database} AND table = 'quarantine' AND name = 'ts'`,
    );
    expect(ts?.type).toBe("Nullable(DateTime('UTC'))");
  });

  it('migrates idempotently: a second run applies nothing and changes nothing', async () => {
    const fresh = open('migrate');
    const events: HotStoreEvent[] = [];
    const withEvents = openHotStore(target(fresh.database), { onEvent: (e) => events.push(e) });
    opened.push(withEvents);
    const first = await withEvents.migrate();
    // Every migration in order; other tables than the core ones (review_log …) come from later versions.
    const versions = hotStoreMigrations.map((m) => m.version);
    expect(versions.slice(0, 2)).toEqual([1, 2]);
    expect(first.applied).toEqual(versions);
    expect(first.alreadyApplied).toEqual([]);
    expect(
      events
        .filter((e) => e.type === 'migration_applied')
        .map((e) => e.type === 'migration_applied' && e.version),
    ).toEqual(versions);

    const relations = async () =>
      (
        await fresh.query<{ name: string; engine: string }>(
          sql`SELECT name, engine FROM system.tables WHERE database = ${fresh.database} ORDER BY name`,
        )
      ).map((t) => `${t.name}:${t.engine}`);
    const before = await relations();
    const second = await fresh.migrate();
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(versions);
    expect(await relations()).toEqual(before);
    expect(before.filter((r) => !r.startsWith('review_log:'))).toEqual(
      [
        ...hotTableNames.map((t) => `${t}:ReplacingMergeTree`),
        ...hotTableNames.map((t) => `${latestViewName(t)}:View`),
        'schema_migrations:ReplacingMergeTree',
        ...[...modelTables, ...reportTables].map((t) => `${t.name}:ReplacingMergeTree`),
        ...modelViews.map((v) => `${v.name}:View`),
      ].sort(),
    );
    const ledger = await fresh.query<{ version: number; name: string }>(
      sql`SELECT version, name FROM ${fresh.relation('schema_migrations')} FINAL ORDER BY version`,
    );
    expect(ledger.map((m) => Number(m.version))).toEqual(versions);
    expect(before).toContain('review_log:ReplacingMergeTree');
  });

  it('reruns an interrupted migration whose ledger entry is missing without failing', async () => {
    const fresh = open('rerun');
    await fresh.migrate();
    await fresh.command(sql`DROP TABLE ${fresh.relation('schema_migrations')}`);
    const rerun = await fresh.migrate();
    expect(rerun.applied).toEqual(hotStoreMigrations.map((m) => m.version));
  });

  it.each(hotTableNames)('round-trips every column of %s', async (table: HotTableName) => {
    const rows = sampleRows()[table];
    await store.insert(table, rows as never);
    const key = sql.join(hotTables[table].sortingKey.map((c) => sql.ident(c)));
    const back = await store.query<Record<string, unknown>>(
      sql`SELECT * FROM ${store.relation(table)} FINAL ORDER BY ${key}`,
    );
    const expected = (rows as HotTableRows[typeof table][]).map((r) => storedRow(table, r as never));
    const actual = back.map((r) => decodeStoredRow(table, r));
    expect(new Set(actual.map((r) => JSON.stringify(r)))).toEqual(
      new Set(expected.map((r) => JSON.stringify(r))),
    );
    expect(actual).toHaveLength(expected.length);
  });

  it('keeps one row per meter and interval when the same readings are inserted again', async () => {
    const dedup = open('dedup');
    await dedup.migrate();
    const readings = makeReadings(3000, { meters: 50 });
    await dedup.insert('readings', readings);
    await dedup.insert('readings', readings);
    await dedup.insert('readings', readings.slice(0, 1000));
    const count = async (q: ReturnType<typeof sql>) => Number((await dedup.query<{ c: string }>(q))[0]?.c);
    expect(await count(sql`SELECT count() AS c FROM ${dedup.relation('readings')} FINAL`)).toBe(3000);
    expect(await count(sql`SELECT count() AS c FROM ${dedup.relation('readings_latest')}`)).toBe(3000);
    expect(
      await count(
        sql`SELECT count() AS c FROM (SELECT meter_id, ts FROM ${dedup.relation('readings')} ORDER BY processed_at DESC LIMIT 1 BY meter_id, ts)`,
      ),
    ).toBe(3000);
  });

  it('lets a later processing of a reading replace the earlier one', async () => {
    const dedup = open('replace');
    await dedup.migrate();
    const [first] = makeReadings(1, { processedAt: Date.UTC(2026, 10, 1) });
    await dedup.insert('readings', [first!]);
    await dedup.insert('readings', [
      { ...first!, kw: 9.875, flags: ['backdated'], processedAt: Date.UTC(2026, 10, 2) },
    ]);
    // An older processing arriving late must not win either.
    await dedup.insert('readings', [{ ...first!, kw: 1, processedAt: Date.UTC(2026, 9, 1) }]);
    const rows = await dedup.query<{ kw: number; flags: string[] }>(
      sql`SELECT kw, flags FROM ${dedup.relation('readings_latest')} WHERE meter_id = ${first!.meterId}`,
    );
    expect(rows).toEqual([{ kw: 9.875, flags: ['backdated'] }]);
  });

  it('splits large inputs into batches and stores all of them', async () => {
    const batched = open('batches', { maxRowsPerInsert: 400 });
    await batched.migrate();
    const summary = await batched.insert('readings', makeReadings(1000));
    expect(summary).toMatchObject({ table: 'readings', rows: 1000, batches: 3 });
    expect(summary.bytes).toBeGreaterThan(1000 * 100);
    const [row] = await batched.query<{ c: string }>(
      sql`SELECT count() AS c FROM ${batched.relation('readings')} FINAL`,
    );
    expect(Number(row?.c)).toBe(1000);
    expect(await batched.insert('readings', [])).toMatchObject({ rows: 0, batches: 0 });
  });

  it('inserts several tables with insertAll, in order', async () => {
    const all = open('all');
    await all.migrate();
    const rows = sampleRows();
    const summaries = await all.insertAll({ meters: rows.meters, alerts: rows.alerts, faults: [] });
    expect(summaries.map((s) => [s.table, s.rows])).toEqual([
      ['meters', 2],
      ['alerts', 2],
    ]);
  });

  it('stores JSONEachRow the same way as TabSeparated', async () => {
    const json = open('json', { format: 'JSONEachRow' });
    await json.migrate();
    const rows = sampleRows();
    for (const table of hotTableNames) await json.insert(table, rows[table] as never);
    for (const table of hotTableNames) {
      const back = await json.query<Record<string, unknown>>(
        sql`SELECT * FROM ${json.relation(table)} FINAL`,
      );
      const actual = new Set(back.map((r) => JSON.stringify(decodeStoredRow(table, r))));
      const expected = new Set((rows[table] as never[]).map((r) => JSON.stringify(storedRow(table, r))));
      expect(actual).toEqual(expected);
    }
  });

  it('stores the same rows of every table from each format the engine reads (ArrowStream on chDB)', async () => {
    const formats =
      engine === 'chdb' ? (['TabSeparated', 'ArrowStream'] as const) : (['TabSeparated'] as const);
    const [reading] = makeReadings(1);
    // Separators, a lone surrogate, NULLs and an array with quotes: what each format encodes its own way.
    const tricky = {
      ...reading!,
      meterId: 'a\tb\\N\nc\ud800',
      kw: null,
      flags: ["it's", 'x\ty'] as unknown as ReadingFlag[],
      processedAt: Date.UTC(2026, 0, 1, 0, 0, 1, 999),
    };
    const contents: string[][] = [];
    for (const format of formats) {
      const one = open(`fmt${contents.length}`, { format });
      await one.migrate();
      const rows = sampleRows();
      for (const table of hotTableNames)
        await one.insert(table, (table === 'readings' ? [...rows.readings, tricky] : rows[table]) as never);
      const content: string[] = [];
      for (const table of hotTableNames) {
        const back = await one.query<Record<string, unknown>>(
          sql`SELECT * FROM ${one.relation(table)} FINAL`,
        );
        expect(back.length).toBeGreaterThan(0);
        for (const r of back) content.push(`${table} ${JSON.stringify(r)}`);
      }
      contents.push(content.sort());
    }
    for (const content of contents.slice(1)) expect(content).toEqual(contents[0]);
  });

  it('stores the same readings from ArrowStream as from TabSeparated when a batch spans many blocks of rows', async () => {
    if (engine !== 'chdb') return;
    const readings = makeReadings(3000, { meters: 50 });
    // Text that is not ASCII, a lone surrogate and a long string in later blocks of the Arrow batch.
    readings[2100] = { ...readings[2100]!, meterId: 'mé', rawUnit: 'k\ud800W' };
    readings[1024] = { ...readings[1024]!, source: 'ü'.repeat(3000) };
    readings[2999] = { ...readings[2999]!, rawValue: 'x'.repeat(70_000) };
    const contents: string[][] = [];
    for (const format of ['TabSeparated', 'ArrowStream'] as const) {
      const one = open(`blocks${contents.length}`, { format });
      await one.migrate();
      await one.insert('readings', readings);
      const back = await one.query<Record<string, unknown>>(
        sql`SELECT * FROM ${one.relation('readings')} FINAL ORDER BY meter_id, ts`,
      );
      expect(back.length).toBe(3000);
      contents.push(back.map((r) => JSON.stringify(r)));
    }
    expect(contents[1]).toEqual(contents[0]);
  });

  it('refuses a row it cannot encode, naming row and column, and sends nothing', async () => {
    // Row 7 sits in the second batch: the first must not be sent either.
    const strict = open('strict', { maxRowsPerInsert: 5 });
    await strict.migrate();
    const readings = makeReadings(10);
    readings[7] = { ...readings[7]!, kw: Number.NaN };
    const error = await strict.insert('readings', readings).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkRejectedError);
    const cause = (error as SinkRejectedError).cause;
    expect(cause).toBeInstanceOf(RowEncodingError);
    expect(cause).toMatchObject({ rowIndex: 7, column: 'kw' });
    const [row] = await strict.query<{ c: string }>(
      sql`SELECT count() AS c FROM ${strict.relation('readings')}`,
    );
    expect(Number(row?.c)).toBe(0);
  });

  it.each([
    ['a time before 1970', { ts: -1 }],
    ['a score above 255', { qualityScore: 256 }],
    ['a fractional score', { qualityScore: 1.5 }],
    ['a non-string flag', { flags: [1] as unknown as [] }],
  ])('refuses %s as a SinkRejectedError', async (_label, patch) => {
    const [reading] = makeReadings(1);
    await expect(store.insert('readings', [{ ...reading!, ...patch }])).rejects.toBeInstanceOf(
      SinkRejectedError,
    );
  });

  it('rejects bad SQL at once, with the ClickHouse code, without retrying', async () => {
    const events: HotStoreEvent[] = [];
    const s = openHotStore(target(store.database), {
      onEvent: (e) => events.push(e),
      retry: { baseDelayMs: 1 },
    });
    opened.push(s);
    const syntax = await s.query(sql`SELEC 1`).catch((e: unknown) => e);
    expect(syntax).toBeInstanceOf(SinkRejectedError);
    expect(syntax).toMatchObject({
      code: 'SINK_REJECTED',
      context: { engine, operation: 'query', attempts: 1, clickhouseCode: 62 },
    });
    const missing = await s
      .query(sql`SELECT * FROM ${sql.ident(store.database, 'no_such_table')}`)
      .catch((e: unknown) => e);
    expect(missing).toMatchObject({ context: { clickhouseCode: 60 } });
    expect(events.filter((e) => e.type === 'retry')).toEqual([]);
  });

  it('adds retention TTLs only where the engine supports them', async () => {
    const retained = open('ttl', { retentionDays: SEED_RETENTION_DAYS });
    await retained.migrate();
    const [ddl] = await retained.query<{ statement: string }>(
      sql`SHOW CREATE TABLE ${retained.relation('readings')}`,
    );
    if (engine === 'server') expect(ddl?.statement).not.toMatch(/TTL/);
    else expect(ddl?.statement).toMatch(/TTL processed_at \+ (INTERVAL 730 DAY|toIntervalDay\(730\))/);
  });

  it('refuses to open a second chDB data directory in the process, or a malformed URL', () => {
    const other = engine === 'chdb' ? { kind: 'chdb' as const, path: `${dataDir!.path}-other` } : null;
    if (other) {
      expect(() => openHotStore(other)).toThrow(SinkRejectedError);
    }
    const secret = 'pa55word';
    let thrown: unknown;
    try {
      openHotStore({ kind: 'server', url: `http://default:${secret}@[not a host` });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SinkRejectedError);
    expect(JSON.stringify([(thrown as Error).message, (thrown as SinkRejectedError).context])).not.toContain(
      secret,
    );
  });

  it('refuses calls once closed', async () => {
    const closing = open('closed');
    await closing.close();
    await closing.close();
    await expect(closing.query(sql`SELECT 1`)).rejects.toBeInstanceOf(SinkRejectedError);
  });

  it('stores a 100k-reading batch (throughput printed for the record)', async () => {
    const big = open('big');
    await big.migrate();
    const readings = makeReadings(100_000);
    const started = performance.now();
    const summary = await big.insert('readings', readings);
    const ms = performance.now() - started;
    console.log(
      `[hot store] ${engine}: 100k readings (${(summary.bytes / 1e6).toFixed(1)} MB body) in ${ms.toFixed(0)} ms = ${Math.round(100_000 / (ms / 1000))} rows/s`,
    );
    const [row] = await big.query<{ c: string; meters: string }>(
      sql`SELECT count() AS c, uniqExact(meter_id) AS meters FROM ${big.relation('readings')} FINAL`,
    );
    expect(Number(row?.c)).toBe(100_000);
    expect(Number(row?.meters)).toBe(500);
  });
});

describe('ArrowStream inserts', () => {
  it('are refused by the server engine (18.16 reads no Arrow) when the store opens', () => {
    const target: HotStoreTarget = { kind: 'server', url: inject('clickhouseUrl'), database: 'gs_arrow' };
    expect(() => openHotStore(target, { format: 'ArrowStream' })).toThrow(SinkRejectedError);
  });

  it('name the row and column they cannot encode, as the text formats do', () => {
    const rows = makeReadings(4);
    rows[2] = { ...rows[2]!, ts: Number.NaN };
    const write = rowWriter(readingColumns, 'ArrowStream');
    expect(() => write(rows, 1, 4, () => {})).toThrow(
      expect.objectContaining({ name: 'RowEncodingError', rowIndex: 2, column: 'ts' }),
    );
    const pieces: unknown[] = [];
    write(rows, 0, 2, (piece) => pieces.push(piece));
    expect(pieces).toHaveLength(1);
    expect(pieces[0]).toBeInstanceOf(Uint8Array);
  });
});
