/**
 * The hot store and the Parquet lake as the meter-quality job's epoch sinks, written idempotently per
 * checkpoint epoch with a quality-log row per epoch; rows a store cannot encode are set aside as
 * quarantine rows.
 */

import { RowEncodingError, rowEncoder } from '../codecs/clickhouse-encode.js';
import { wellFormed } from '../codecs/unicode.js';
import type { HotStore, HotStoreBatch } from '../connectors/clickhouse.js';
import { insertModelRows } from '../connectors/model-tables.js';
import type { LakeSpool, LakeSpoolMark, ParquetLake } from '../connectors/parquet-lake.js';
import { type HotTableName, hotTables } from '../schemas/clickhouse.js';
import { epochPartId } from '../schemas/parquet.js';
import type {
  Alert,
  HourlyConsumption,
  QualityLogEntry,
  QuarantineRecord,
  Reading,
} from '../schemas/reading.js';
import type { OutputBatch, PipelineSinks } from './runner.js';

export interface StoreSinksOptions {
  readonly hot: HotStore;
  readonly lake?: ParquetLake;
  /** Names the source in the quality log. */
  readonly sourceName: string;
  /** Worker id in Parquet file names, so workers sharing a lake never overwrite each other. */
  readonly workerId: string;
  /**
   * The lake writes its files once this many rows are spooled, and at each checkpoint (default
   * 200,000): files far larger than the hot store's inserts, whatever their cadence. Spooled rows wait
   * in files (see `ParquetLake.spool`), not in the heap.
   */
  readonly coldRows?: number;
  /** Called with the alerts of each committed batch (e.g. to publish them on NATS). */
  readonly publishAlerts?: (alerts: readonly Alert[]) => Promise<void>;
  readonly now: () => number;
}

/** Checkpoint ids sort as text in checkpoint order. */
export function checkpointId(workerId: string, seq: number): string {
  return `${workerId}-${String(seq).padStart(10, '0')}`;
}

/** The quality-log figures of one epoch so far. */
interface EpochLog {
  epoch: number;
  recordsIn: number;
  stored: number;
  quarantined: number;
  deadLettered: number;
  readings: number;
  scoreSum: number;
}

/**
 * The hot store and the lake as the runner's sinks. Every table is written idempotently, so an epoch
 * replayed after a crash rewrites what the killed worker wrote instead of adding to it:
 * - ClickHouse: ReplacingMergeTree keys (record ids, meter + hour …); the quality log keeps one row per
 *   epoch (`batch_id` = the checkpoint id), rewritten with the epoch's running figures at every write,
 *   so however a replay cuts the epoch into writes, the last row holds the whole epoch;
 * - the peak exclusion report goes to the hot store only (`peak_exclusions`, keyed by day, hour, region
 *   and reason); the lake has no copy of it;
 * - the lake: rows are spooled across writes (after the hot store's, so that rows it refused are left
 *   out) and written as one file per table when `coldRows` are spooled and when the epoch ends
 *   (`seal`), named by epoch and part; a restarted worker first removes the files of epochs after its
 *   checkpoint and its spool files (`rollback`), since a replay may cut them differently.
 */
/** Lake rows spooled before a file set is written, when `StoreSinksOptions.coldRows` is not given. */
export const DEFAULT_COLD_ROWS = 200_000;

export function storeSinks(options: StoreSinksOptions): PipelineSinks {
  const { hot, lake } = options;
  let log: EpochLog | undefined;
  const coldRows = options.coldRows ?? DEFAULT_COLD_ROWS;
  let cold: ColdSpools | undefined;
  /** The spools of `epoch`'s part `part`, opened on first use. */
  const spools = (epoch: number, part: number): ColdSpools => {
    const owner = options.workerId;
    return {
      epoch,
      part,
      readings: (lake as ParquetLake).spool('readings', owner),
      hourly: (lake as ParquetLake).spool('hourly', owner),
      quarantine: (lake as ParquetLake).spool('quarantine', owner),
    };
  };
  /** Writes the spooled lake rows as one part of their epoch; the spools are taken at once. */
  const writeCold = async (): Promise<void> => {
    const taken = cold;
    if (taken === undefined) return;
    cold = spools(taken.epoch, taken.part + 1);
    if (rowsOf(taken) === 0) {
      await discardCold(taken);
      return;
    }
    const id = epochPartId(options.workerId, taken.epoch, taken.part);
    try {
      await taken.readings.write(id);
      await taken.hourly.write(id);
      await taken.quarantine.write(id);
    } finally {
      await discardCold(taken);
    }
  };
  /**
   * A part cut at `coldRows` is written while the job goes on (DuckDB converts it in its own threads);
   * the next write or the seal waits for it, and fails if it failed.
   */
  let partWrite: Promise<void> | undefined;
  const partWritten = async (): Promise<void> => {
    const pending = partWrite;
    partWrite = undefined;
    await pending;
  };
  return {
    async rollback(committed: number) {
      await partWritten().catch(() => undefined);
      // Files of checkpoints after the last committed one come from a worker killed mid-checkpoint; the
      // replay may cut its checkpoints differently, so they are removed rather than trusted to be rewritten.
      await lake?.removeEpochsAfter(options.workerId, committed);
      // The rows it had spooled for an epoch it never wrote come again with the replay.
      await lake?.removeSpools(options.workerId);
    },
    async write(batch: OutputBatch) {
      // The hot store's first insert is encoded and handed to its engine at once; the lake rows are
      // spooled while the engine parses it.
      const hotWrite = writeHot(hot, batch, options.now(), (readings, quarantined) =>
        entryOf(batch, readings, quarantined),
      );
      let stale: ColdSpools | undefined;
      let marks: ColdMarks | undefined;
      let lakeFailure: unknown;
      if (lake !== undefined) {
        if (cold === undefined || cold.epoch !== batch.checkpoint) {
          // An epoch never sealed (a write of it failed before the checkpoint): its rows come again.
          stale = cold;
          cold = spools(batch.checkpoint, 0);
        }
        marks = markCold(cold);
        try {
          appendCold(cold, batch.readings, batch.hourly, batch.quarantine);
        } catch (error) {
          lakeFailure = error;
        }
      }
      let setAside: SetAside | null;
      try {
        setAside = await hotWrite;
      } catch (error) {
        // The batch is not written: none of it stays spooled.
        if (cold !== undefined && marks !== undefined && lakeFailure === undefined) rewindCold(cold, marks);
        throw error;
      } finally {
        if (stale !== undefined) await discardCold(stale);
      }
      if (lakeFailure !== undefined) throw lakeFailure;
      if (lake !== undefined && cold !== undefined && marks !== undefined) {
        if (setAside !== null) {
          // Rows the hot store refused went there as quarantine rows; the lake follows, so both
          // stores hold the same rows.
          const refused = new Set<unknown>(setAside.refused);
          rewindCold(cold, marks);
          appendCold(
            cold,
            without(batch.readings, refused),
            without(batch.hourly, refused),
            without([...batch.quarantine, ...setAside.quarantine], refused),
          );
        }
        await partWritten();
        if (rowsOf(cold) >= coldRows) {
          partWrite = writeCold();
          // Awaited by the next write or the seal; until then a failure must not go unhandled.
          partWrite.catch(() => undefined);
        }
      }
      if (batch.alerts.length > 0) await options.publishAlerts?.(batch.alerts);
    },
    async seal(checkpoint: number) {
      await partWritten();
      if (cold === undefined || cold.epoch !== checkpoint) return;
      await writeCold();
    },
  };

  /** The quality-log row of `batch`'s epoch, with `batch` counted in (called once per write). */
  function entryOf(batch: OutputBatch, readings: readonly Reading[], quarantined: number): QualityLogEntry {
    if (log === undefined || log.epoch !== batch.checkpoint || batch.flush === 0) {
      log = {
        epoch: batch.checkpoint,
        recordsIn: 0,
        stored: 0,
        quarantined: 0,
        deadLettered: 0,
        readings: 0,
        scoreSum: 0,
      };
    }
    log.recordsIn += batch.recordsIn;
    log.quarantined += quarantined;
    log.deadLettered += batch.deadLettered;
    log.readings += readings.length;
    for (const r of readings) {
      if (r.status === 'measured') log.stored++;
      log.scoreSum += r.qualityScore;
    }
    return {
      batchId: checkpointId(options.workerId, batch.checkpoint),
      source: options.sourceName,
      recordsIn: log.recordsIn,
      stored: log.stored,
      quarantined: log.quarantined,
      deadLettered: log.deadLettered,
      avgScore: log.readings === 0 ? 0 : Math.round((log.scoreSum / log.readings) * 100) / 100,
      loggedAt: options.now(),
    };
  }
}

/** Rows the hot store could not encode, and the quarantine rows written for them instead. */
interface SetAside {
  readonly refused: unknown[];
  readonly quarantine: QuarantineRecord[];
}

/** The derived tables, in the order they are written; the quarantine and the quality log follow. */
const DERIVED_TABLES = ['readings', 'faults', 'alerts', 'hourly_consumption', 'daily_peaks'] as const;

/**
 * Writes a batch's rows to the hot store. A row the encoder refuses (a time outside DateTime's range, a
 * non-finite number …) is found, taken out of its table and written to the quarantine table with the
 * reason, and the rest of the table is written: one bad row must not stop the worker, which would meet
 * it again on every restart. Returns what was set aside, or null when nothing was.
 */
async function writeHot(
  hot: HotStore,
  batch: OutputBatch,
  quarantinedAt: number,
  entryFor: (readings: readonly Reading[], quarantined: number) => QualityLogEntry,
): Promise<SetAside | null> {
  const tables: HotStoreBatch = {
    readings: batch.readings,
    faults: batch.faults,
    alerts: batch.alerts,
    hourly_consumption: batch.hourly,
    daily_peaks: batch.dailyPeaks,
  };
  let setAside: SetAside | null = null;
  const aside = (): SetAside => {
    setAside ??= { refused: [], quarantine: [] };
    return setAside;
  };
  const written: Partial<Record<HotTableName, readonly unknown[]>> = {};
  for (const table of DERIVED_TABLES) {
    const rows = (tables[table] ?? []) as readonly unknown[];
    written[table] = await insertEncodable(hot, table, rows, (bad, why) => {
      const a = aside();
      a.refused.push(bad);
      a.quarantine.push(quarantineOfRefused(table, bad, why, quarantinedAt));
    });
  }
  // The exclusion report is small (per day, hour, region and reason) and computed, never refused.
  if (batch.peakExclusions !== undefined && batch.peakExclusions.length > 0)
    await insertModelRows(hot, 'peak_exclusions', batch.peakExclusions);
  const quarantine: QuarantineRecord[] = [
    ...batch.quarantine,
    ...((setAside as SetAside | null)?.quarantine ?? []),
  ];
  const repairs: QuarantineRecord[] = [];
  await insertEncodable(hot, 'quarantine', quarantine, (bad, why) => {
    // A quarantine row itself refused (its `ts` in 2200, say): kept without the time, text made
    // well-formed, which leaves the encoder nothing to refuse.
    aside().refused.push(bad);
    const q = bad as QuarantineRecord;
    repairs.push({
      ...q,
      ts: null,
      meterId: wellFormed(q.meterId),
      raw: wellFormed(q.raw),
      source: wellFormed(q.source),
      reasons: [...q.reasons.map(wellFormed), `unencodable:${why}`],
    });
  });
  if (repairs.length > 0) {
    await hot.insert('quarantine', repairs);
    aside().quarantine.push(...repairs);
  }
  const readings = (written.readings ?? []) as readonly Reading[];
  // Only readings count as records: a refused alert or aggregate is quarantined but was never a record in.
  const refusedReadings = batch.readings.length - readings.length;
  await hot.insert('quality_log', [entryFor(readings, batch.quarantine.length + refusedReadings)]);
  return setAside;
}

/**
 * Inserts `rows`; when the encoder refuses rows, each refused row goes to `refuse` with the reason and
 * the others are inserted. Returns the rows inserted.
 */
async function insertEncodable<K extends HotTableName>(
  hot: HotStore,
  table: K,
  rows: readonly unknown[],
  refuse: (row: unknown, why: string) => void,
): Promise<readonly unknown[]> {
  if (rows.length === 0) return rows;
  try {
    await hot.insert(table, rows as never);
    return rows;
  } catch (error) {
    if (!isEncodingFailure(error)) throw error;
  }
  const encode = encoderOf(table);
  const kept: unknown[] = [];
  for (let i = 0; i < rows.length; i++) {
    try {
      encode(rows, i, i + 1);
      kept.push(rows[i]);
    } catch (error) {
      if (!(error instanceof RowEncodingError)) throw error;
      refuse(rows[i], `${table}.${error.column}: ${error.message.replace(/^Row \d+, /, '')}`);
    }
  }
  if (kept.length > 0) await hot.insert(table, kept as never);
  return kept;
}

const encoders = new Map<HotTableName, (rows: readonly unknown[], from: number, to: number) => string>();

function encoderOf(table: HotTableName): (rows: readonly unknown[], from: number, to: number) => string {
  let encode = encoders.get(table);
  if (encode === undefined) {
    encode = rowEncoder(hotTables[table].columns as never, 'TabSeparated') as (
      rows: readonly unknown[],
      from: number,
      to: number,
    ) => string;
    encoders.set(table, encode);
  }
  return encode;
}

function isEncodingFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof RowEncodingError) return true;
  }
  return false;
}

/** The quarantine row standing for a derived row the hot store could not encode. */
function quarantineOfRefused(
  table: HotTableName,
  row: unknown,
  why: string,
  quarantinedAt: number,
): QuarantineRecord {
  const r = row as { meterId?: unknown; ts?: unknown; source?: unknown };
  const ts = typeof r.ts === 'number' && r.ts >= 0 && r.ts < 2 ** 32 * 1000 ? r.ts : null;
  return {
    meterId: typeof r.meterId === 'string' ? wellFormed(r.meterId) : '',
    ts,
    raw: wellFormed(safeJson(row)),
    reasons: [`unencodable:${why}`],
    source: typeof r.source === 'string' ? wellFormed(r.source) : `sink:${table}`,
    quarantinedAt,
  };
}

function safeJson(row: unknown): string {
  try {
    return (
      JSON.stringify(row, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) ?? ''
    );
  } catch {
    return String(row);
  }
}

/** `rows` without the refused ones; `rows` itself when nothing was refused. */
function without<T>(rows: readonly T[], refused: ReadonlySet<unknown> | null): readonly T[] {
  return refused === null ? rows : rows.filter((r) => !refused.has(r));
}

/** The lake spools of one epoch's part `part`. */
interface ColdSpools {
  readonly epoch: number;
  readonly part: number;
  readonly readings: LakeSpool<'readings'>;
  readonly hourly: LakeSpool<'hourly'>;
  readonly quarantine: LakeSpool<'quarantine'>;
}

type ColdMarks = readonly [LakeSpoolMark, LakeSpoolMark, LakeSpoolMark];

function markCold(cold: ColdSpools): ColdMarks {
  return [cold.readings.mark(), cold.hourly.mark(), cold.quarantine.mark()];
}

function rewindCold(cold: ColdSpools, marks: ColdMarks): void {
  cold.readings.rewind(marks[0]);
  cold.hourly.rewind(marks[1]);
  cold.quarantine.rewind(marks[2]);
}

/** Spools one write's rows; a row the lake refuses takes that write's rows back out of every table. */
function appendCold(
  cold: ColdSpools,
  readings: readonly Reading[],
  hourly: readonly HourlyConsumption[],
  quarantine: readonly QuarantineRecord[],
): void {
  const marks = markCold(cold);
  try {
    cold.readings.append(readings);
    cold.hourly.append(hourly);
    cold.quarantine.append(quarantine);
  } catch (error) {
    rewindCold(cold, marks);
    throw error;
  }
}

async function discardCold(cold: ColdSpools): Promise<void> {
  await Promise.all([cold.readings.discard(), cold.hourly.discard(), cold.quarantine.discard()]);
}

function rowsOf(cold: ColdSpools): number {
  return cold.readings.rows + cold.hourly.rows + cold.quarantine.rows;
}
