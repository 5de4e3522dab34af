/**
 * Baseline (c): the stores alone. The graph's outputs for the same data are produced first (untimed),
 * then written in batches of the pipeline's write size, as the sinks write them: `HotStore.insertAll` of
 * every table, and separately the lake's three Parquet tables; only the writes are timed, one after the
 * other so neither shares the CPU with the other.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openHotStore } from '../../connectors/clickhouse.js';
import { openParquetLake } from '../../connectors/parquet-lake.js';
import type {
  Alert,
  DailyPeak,
  FaultEvent,
  HourlyConsumption,
  QuarantineRecord,
  Reading,
} from '../../schemas/reading.js';
import type { TaskContext } from '../child.js';
import { cpuMsSince, type HotSpec, peakRssMb } from '../protocol.js';
import { hotTarget, type SimSpec } from './common.js';
import { openGraph, pushBatch, simulatedHours } from './feed.js';

export interface StoresOnlyArgs {
  readonly sim: SimSpec;
  readonly hot: HotSpec;
  readonly database: string;
  readonly workDir: string;
  /** Rows per write, as the pipeline writes them (`--flush-rows`). */
  readonly flushRows: number;
}

export interface StoresOnlyFigures {
  readonly readingsRows: number;
  readonly totalRows: number;
  readonly batches: number;
  readonly hotInsertMs: number;
  readonly hotRowsPerSecond: number;
  readonly hotCpuMs: number;
  readonly lakeWriteMs: number;
  readonly lakeRowsPerSecond: number;
  readonly lakeCpuMs: number;
  readonly peakRssMb: number;
}

export async function clickhouseOnlyTask(
  args: StoresOnlyArgs,
  context: TaskContext,
): Promise<StoresOnlyFigures> {
  const { registry, hours } = simulatedHours(args.sim);
  const hot = openHotStore(hotTarget(args.hot, join(args.workDir, 'chdb'), args.database));
  const lake = await openParquetLake({ dir: join(args.workDir, 'lake') });
  try {
    await hot.migrate();
    await hot.insert('meters', [...registry.values()]);
    const buf = {
      readings: [] as Reading[],
      quarantine: [] as QuarantineRecord[],
      faults: [] as FaultEvent[],
      alerts: [] as Alert[],
      hourly: [] as HourlyConsumption[],
      peaks: [] as DailyPeak[],
    };
    const add =
      <T>(into: T[]) =>
      (b: readonly T[]) => {
        for (const x of b) into.push(x);
      };
    const { input, finish } = openGraph(registry, {
      readings: add(buf.readings),
      quarantine: add(buf.quarantine),
      faults: add(buf.faults),
      alerts: add(buf.alerts),
      hourly: add(buf.hourly),
      dailyPeaks: add(buf.peaks),
    });
    let hotMs = 0;
    let hotCpu = 0;
    let lakeMs = 0;
    let lakeCpu = 0;
    let readingsRows = 0;
    let lakeRows = 0;
    let totalRows = 0;
    let batches = 0;
    const flush = async (): Promise<void> => {
      batches += 1;
      const id = `bench-${String(batches).padStart(10, '0')}`;
      const rows =
        buf.readings.length +
        buf.quarantine.length +
        buf.faults.length +
        buf.alerts.length +
        buf.hourly.length +
        buf.peaks.length;
      readingsRows += buf.readings.length;
      lakeRows += buf.readings.length + buf.hourly.length + buf.quarantine.length;
      totalRows += rows;
      let cpu0 = process.cpuUsage();
      let t = performance.now();
      await hot.insertAll({
        readings: buf.readings,
        quarantine: buf.quarantine,
        faults: buf.faults,
        alerts: buf.alerts,
        hourly_consumption: buf.hourly,
        daily_peaks: buf.peaks,
      });
      hotMs += performance.now() - t;
      hotCpu += cpuMsSince(cpu0);
      cpu0 = process.cpuUsage();
      t = performance.now();
      await lake.writeBatch('readings', buf.readings, id);
      await lake.writeBatch('hourly', buf.hourly, id);
      await lake.writeBatch('quarantine', buf.quarantine, id);
      lakeMs += performance.now() - t;
      lakeCpu += cpuMsSince(cpu0);
      for (const list of Object.values(buf)) list.length = 0;
      if (batches % 5 === 0) context.progress(`stores: ${batches} batches`);
    };
    for (const batch of hours()) {
      pushBatch(input, batch.records);
      if (buf.readings.length + buf.quarantine.length + buf.hourly.length >= args.flushRows) await flush();
    }
    finish();
    await flush();
    return {
      readingsRows,
      totalRows,
      batches,
      hotInsertMs: Math.round(hotMs),
      hotRowsPerSecond: Math.round(totalRows / (hotMs / 1000)),
      hotCpuMs: hotCpu,
      lakeWriteMs: Math.round(lakeMs),
      lakeRowsPerSecond: Math.round(lakeRows / (lakeMs / 1000)),
      lakeCpuMs: lakeCpu,
      peakRssMb: peakRssMb(),
    };
  } finally {
    await lake.close();
    await hot.close();
    await rm(args.workDir, { recursive: true, force: true });
  }
}
