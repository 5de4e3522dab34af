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

/**
 * The hot store and the lake as the runner's sinks. Every table is written idempotently (ReplacingMergeTree
 * keys in ClickHouse, deterministic file names per checkpoint in the lake), so a checkpoint replayed after a
 * crash rewrites what the killed worker wrote instead of adding to it.
 */
export function storeSinks(options: StoreSinksOptions): PipelineSinks {
  const { hot, lake } = options;
  return {
    async rollback(committed: number) {
      if (lake === undefined) return;
      // Files of checkpoints after the last committed one come from a worker killed mid-checkpoint; the
      // replay may cut its checkpoints differently, so they are removed rather than trusted to be rewritten.
      const prefix = `part-${options.workerId}-`;
      for (const kind of ['readings', 'hourly', 'quarantine'] as const) {
        for (const file of await lake.listFiles(kind)) {
          const name = basename(file);
          if (!name.startsWith(prefix)) continue;
          const seq = Number(name.slice(prefix.length, name.indexOf('.parquet')));
          if (seq > committed) await unlink(file);
        }
      }
    },
    async write(batch: OutputBatch) {
      const id = checkpointId(options.workerId, batch.checkpoint);
      let scoreSum = 0;
      let measured = 0;
      for (const r of batch.readings) {
        if (r.status === 'measured') measured++;
        scoreSum += r.qualityScore;
      }
      const log: QualityLogEntry = {
        batchId: id,
        source: options.sourceName,
        recordsIn: batch.recordsIn,
        stored: measured,
        quarantined: batch.quarantine.length,
        deadLettered: batch.deadLettered,
        avgScore:
          batch.readings.length === 0 ? 0 : Math.round((scoreSum / batch.readings.length) * 100) / 100,
        loggedAt: options.now(),
      };
      const hotWrite = hot.insertAll({
        readings: batch.readings,
        quarantine: batch.quarantine,
        faults: batch.faults,
        alerts: batch.alerts,
        hourly_consumption: batch.hourly,
        daily_peaks: batch.dailyPeaks,
        quality_log: [log],
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
