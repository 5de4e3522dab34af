import { unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { HotStore } from '../connectors/clickhouse.js';
import type { ParquetLake } from '../connectors/parquet-lake.js';
import type { Alert, QualityLogEntry } from '../schemas/reading.js';
import type { OutputBatch, PipelineSinks } from './runner.js';

export interface StoreSinksOptions {
  readonly hot: HotStore;
  readonly lake?: ParquetLake;
  /** Names the source in the quality log. */
  readonly sourceName: string;
  /** Worker id in Parquet file names, so workers sharing a lake never overwrite each other. */
  readonly workerId: string;
  /** Called with the alerts of each committed batch (e.g. to publish them on NATS). */
  readonly publishAlerts?: (alerts: readonly Alert[]) => Promise<void>;
  readonly now: () => number;
}

/** Checkpoint ids sort as text in checkpoint order. */
export function checkpointId(workerId: string, seq: number): string {
  return `${workerId}-${String(seq).padStart(10, '0')}`;
}

/** One write of outputs: the epoch's checkpoint id and the write's place in it; sorts in write order. */
export function flushId(workerId: string, seq: number, flush: number): string {
  return `${checkpointId(workerId, seq)}-${String(flush).padStart(6, '0')}`;
}

/** The epoch (checkpoint number) of a lake file written by `workerId`, or undefined for another's. */
export function epochOfLakeFile(workerId: string, fileName: string): number | undefined {
  const prefix = `part-${workerId}-`;
  if (!fileName.startsWith(prefix)) return undefined;
  const digits = /^(\d{10})[-.]/.exec(fileName.slice(prefix.length));
  return digits === null ? undefined : Number(digits[1]);
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
 * - the lake: one file per table and write, named by epoch and write; a restarted worker first removes
 *   the files of epochs after its checkpoint (`rollback`), since a replay may cut them differently.
 */
export function storeSinks(options: StoreSinksOptions): PipelineSinks {
  const { hot, lake } = options;
  let log: EpochLog | undefined;
  return {
    async rollback(committed: number) {
      if (lake === undefined) return;
      // Files of checkpoints after the last committed one come from a worker killed mid-checkpoint; the
      // replay may cut its checkpoints differently, so they are removed rather than trusted to be rewritten.
      for (const kind of ['readings', 'hourly', 'quarantine'] as const) {
        for (const file of await lake.listFiles(kind)) {
          const epoch = epochOfLakeFile(options.workerId, basename(file));
          if (epoch !== undefined && epoch > committed) await unlink(file);
        }
      }
    },
    async write(batch: OutputBatch) {
      const id = flushId(options.workerId, batch.checkpoint, batch.flush);
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
      const lakeWrite =
        lake === undefined
          ? Promise.resolve()
          : (async () => {
              await lake.writeBatch('readings', batch.readings, id);
              await lake.writeBatch('hourly', batch.hourly, id);
              await lake.writeBatch('quarantine', batch.quarantine, id);
            })();
      await Promise.all([hotWrite, lakeWrite]);
      if (batch.alerts.length > 0) await options.publishAlerts?.(batch.alerts);
    },
  };
}
