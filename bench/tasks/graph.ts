/**
 * The graph alone, no I/O: decoded hour batches of the simulated fleet pushed through the meter-quality
 * graph, outputs counted and dropped. The ceiling the end-to-end figure is compared with.
 */
import type { TaskContext } from '../child.js';
import { cpuMsSince, peakRssMb, round } from '../protocol.js';
import type { SimSpec } from './common.js';
import { openGraph, pushBatch, simulatedHours } from './feed.js';

export interface GraphArgs {
  readonly sim: SimSpec;
  readonly stageTiming: boolean;
}

export interface GraphFigures {
  readonly records: number;
  readonly readingsOut: number;
  readonly decodeMs: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly readingsPerSecond: number;
  readonly readingsPerCpuSecond: number;
  readonly peakRssMb: number;
  readonly stages: Record<string, number>;
}

export async function graphTask(args: GraphArgs, context: TaskContext): Promise<GraphFigures> {
  const { registry, hours } = simulatedHours(args.sim);
  let readingsOut = 0;
  const ignore = (): void => {};
  const { input, graph, finish } = openGraph(
    registry,
    {
      readings: (b) => {
        readingsOut += b.length;
      },
      quarantine: ignore,
      faults: ignore,
      alerts: ignore,
      hourly: ignore,
      dailyPeaks: ignore,
    },
    { stageTiming: args.stageTiming },
  );
  let records = 0;
  let decodeMs = 0;
  let wallMs = 0;
  let cpuMs = 0;
  let hour = 0;
  for (const batch of hours()) {
    decodeMs += batch.decodeMs;
    records += batch.records.length;
    const cpu0 = process.cpuUsage();
    const t = performance.now();
    pushBatch(input, batch.records);
    wallMs += performance.now() - t;
    cpuMs += cpuMsSince(cpu0);
    if (++hour % 24 === 0) context.progress(`graph: ${hour} hours`);
  }
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  finish();
  wallMs += performance.now() - t;
  cpuMs += cpuMsSince(cpu0);
  return {
    records,
    readingsOut,
    decodeMs: Math.round(decodeMs),
    wallMs: Math.round(wallMs),
    cpuMs,
    readingsPerSecond: Math.round(records / (wallMs / 1000)),
    readingsPerCpuSecond: Math.round(records / (cpuMs / 1000)),
    peakRssMb: peakRssMb(),
    stages: Object.fromEntries(
      Object.entries(graph.stageTimes())
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, round(v)]),
    ),
  };
}
