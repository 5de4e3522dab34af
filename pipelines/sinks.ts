/** The hot store and the Parquet lake as the meter-quality job's epoch sinks. */
import type { HotStore } from '../connectors/clickhouse.js';
import type { ParquetLake } from '../connectors/parquet-lake.js';
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
   * The lake writes its files once this many rows are buffered, and at each checkpoint (default
   * 200,000): files far larger than the hot store's inserts, whatever their cadence. Buffered rows are
   * held as objects (~0.5 KB a reading), so this bounds the lake's share of the heap: at 1,000,000 a
   * worker on 5,000 meters peaked at 2.4 GB RSS against 1.4 GB at 200,000.
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
 * - the lake: rows are buffered across writes and written as one file per table when `coldRows` are
 *   buffered and when the epoch ends (`seal`), named by epoch and part; a restarted worker first
 *   removes the files of epochs after its checkpoint (`rollback`), since a replay may cut them
 *   differently.
 */
/** Lake rows buffered before a file set is written, when `StoreSinksOptions.coldRows` is not given. */
export const DEFAULT_COLD_ROWS = 200_000;

export function storeSinks(options: StoreSinksOptions): PipelineSinks {
  const { hot, lake } = options;
  let log: EpochLog | undefined;
  const coldRows = options.coldRows ?? DEFAULT_COLD_ROWS;
  let cold = emptyCold(0);
  /** Writes the buffered lake rows as one part of their epoch; the buffers are taken at once. */
  const writeCold = async (): Promise<void> => {
    const taken = cold;
    cold = emptyCold(taken.epoch, taken.part + 1);
    if (lake === undefined || rowsOf(taken) === 0) return;
    const id = epochPartId(options.workerId, taken.epoch, taken.part);
    await lake.writeBatch('readings', taken.readings, id);
    await lake.writeBatch('hourly', taken.hourly, id);
    await lake.writeBatch('quarantine', taken.quarantine, id);
  };
  return {
    async rollback(committed: number) {
      // Files of checkpoints after the last committed one come from a worker killed mid-checkpoint; the
      // replay may cut its checkpoints differently, so they are removed rather than trusted to be rewritten.
      await lake?.removeEpochsAfter(options.workerId, committed);
    },
    async write(batch: OutputBatch) {
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
      log.quarantined += batch.quarantine.length;
      log.deadLettered += batch.deadLettered;
      log.readings += batch.readings.length;
      for (const r of batch.readings) {
        if (r.status === 'measured') log.stored++;
        log.scoreSum += r.qualityScore;
      }
      const entry: QualityLogEntry = {
        batchId: checkpointId(options.workerId, batch.checkpoint),
        source: options.sourceName,
        recordsIn: log.recordsIn,
        stored: log.stored,
        quarantined: log.quarantined,
        deadLettered: log.deadLettered,
        avgScore: log.readings === 0 ? 0 : Math.round((log.scoreSum / log.readings) * 100) / 100,
        loggedAt: options.now(),
      };
      const hotWrite = hot.insertAll({
        readings: batch.readings,
        quarantine: batch.quarantine,
        faults: batch.faults,
        alerts: batch.alerts,
        hourly_consumption: batch.hourly,
        daily_peaks: batch.dailyPeaks,
        quality_log: [entry],
      });
      let lakeWrite = Promise.resolve();
      if (lake !== undefined) {
        if (cold.epoch !== batch.checkpoint) cold = emptyCold(batch.checkpoint);
        for (const r of batch.readings) cold.readings.push(r);
        for (const r of batch.hourly) cold.hourly.push(r);
        for (const r of batch.quarantine) cold.quarantine.push(r);
        if (rowsOf(cold) >= coldRows) lakeWrite = writeCold();
      }
      await Promise.all([hotWrite, lakeWrite]);
      if (batch.alerts.length > 0) await options.publishAlerts?.(batch.alerts);
    },
    seal(checkpoint: number) {
      if (cold.epoch !== checkpoint) return Promise.resolve();
      return writeCold();
    },
  };
}

/** Lake rows of one epoch waiting to be written as its part `part`. */
interface ColdBuffer {
  readonly epoch: number;
  readonly part: number;
  readonly readings: Reading[];
  readonly hourly: HourlyConsumption[];
  readonly quarantine: QuarantineRecord[];
}

function emptyCold(epoch: number, part = 0): ColdBuffer {
  return { epoch, part, readings: [], hourly: [], quarantine: [] };
}

function rowsOf(cold: ColdBuffer): number {
  return cold.readings.length + cold.hourly.length + cold.quarantine.length;
}
