/**
 * `node --expose-gc dist/bench/encode-rows.js [--meters N] [--rounds N] [--base <dist of another build>]`:
 * the JS cost of writing rows to the stores alone, as CPU time: the graph's outputs for a simulated day
 * are produced first (untimed), then encoded again and again the way the sinks encode them: the lake
 * spool's `append` of readings, hourly and quarantine rows (files in a temporary folder, discarded;
 * each table's time shown as well as their sum), the chDB insert body (an Arrow IPC stream of every
 * 100,000 rows, handed to a sink that drops it), and the ClickHouse server's (TabSeparated text, the
 * same way).
 * With `--base`, the same rows go through that build's encoders too, in alternating rounds, so that two
 * builds are compared in one process on one machine load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { dayRows } from './tasks/feed.js';

interface Build {
  readonly name: string;
  readonly lake: typeof import('../connectors/parquet-lake.js');
  readonly encode: typeof import('../codecs/clickhouse-encode.js');
  readonly reading: typeof import('../schemas/reading.js');
}

const WRITE_ROWS = 100_000;

/** CPU ms of each round, per part. */
interface Figures {
  readonly lakeReadings: number[];
  readonly lakeHourly: number[];
  readonly lakeQuarantine: number[];
  readonly arrow: number[];
  readonly tsv: number[];
}

function emptyFigures(): Figures {
  return { lakeReadings: [], lakeHourly: [], lakeQuarantine: [], arrow: [], tsv: [] };
}

async function load(name: string, dist: string): Promise<Build> {
  const at = (path: string) => pathToFileURL(join(dist, path)).href;
  return {
    name,
    lake: await import(at('connectors/parquet-lake.js')),
    encode: await import(at('codecs/clickhouse-encode.js')),
    reading: await import(at('schemas/reading.js')),
  };
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      meters: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '5' },
      base: { type: 'string' },
    },
  });
  const meters = Number(values.meters);
  const rounds = Number(values.rounds);
  const here = resolve(new URL('..', import.meta.url).pathname);
  const builds = [await load('this', here)];
  if (values.base !== undefined) builds.push(await load('base', resolve(values.base)));

  const { readings, hourly, quarantine } = dayRows(meters);
  console.log(`rows: ${readings.length} readings, ${hourly.length} hourly, ${quarantine.length} quarantine`);

  const dir = mkdtempSync(join(tmpdir(), 'gs-encode-'));
  const results = new Map<string, Figures>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const build of round % 2 === 0 ? builds : [...builds].reverse()) {
        const figures = results.get(build.name) ?? emptyFigures();
        results.set(build.name, figures);
        const lake = await build.lake.openParquetLake({ dir: join(dir, build.name) });
        try {
          const spools = [
            lake.spool('readings', 'bench'),
            lake.spool('hourly', 'bench'),
            lake.spool('quarantine', 'bench'),
          ];
          (globalThis as { gc?: () => void }).gc?.();
          let t = process.cpuUsage();
          for (let from = 0; from < readings.length; from += WRITE_ROWS) {
            (spools[0] as ReturnType<typeof lake.spool<'readings'>>).append(
              readings.slice(from, from + WRITE_ROWS),
            );
          }
          figures.lakeReadings.push(cpuMs(t));
          t = process.cpuUsage();
          (spools[1] as ReturnType<typeof lake.spool<'hourly'>>).append(hourly);
          figures.lakeHourly.push(cpuMs(t));
          t = process.cpuUsage();
          (spools[2] as ReturnType<typeof lake.spool<'quarantine'>>).append(quarantine);
          figures.lakeQuarantine.push(cpuMs(t));
          for (const spool of spools) await spool.discard();
          (globalThis as { gc?: () => void }).gc?.();
          t = process.cpuUsage();
          const write = build.encode.rowWriter(build.reading.readingColumns, 'ArrowStream');
          let bytes = 0;
          for (let from = 0; from < readings.length; from += WRITE_ROWS) {
            write(readings, from, Math.min(readings.length, from + WRITE_ROWS), (piece) => {
              bytes += piece.length;
            });
          }
          figures.arrow.push(cpuMs(t));
          (globalThis as { gc?: () => void }).gc?.();
          t = process.cpuUsage();
          const tsv = build.encode.rowWriter(build.reading.readingColumns, 'TabSeparated');
          for (let from = 0; from < readings.length; from += WRITE_ROWS) {
            tsv(readings, from, Math.min(readings.length, from + WRITE_ROWS), (piece) => {
              bytes += piece.length;
            });
          }
          figures.tsv.push(cpuMs(t));
          if (bytes === 0) throw new Error('no bytes');
        } finally {
          await lake.close();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const fmt = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    // On a shared machine the least disturbed round (the minimum) says most.
    return `min ${Math.round(sorted[0] as number)} ms, median ${Math.round(sorted[sorted.length >> 1] as number)} ms [${xs.map(Math.round).join(', ')}]`;
  };
  for (const [name, figures] of results) {
    const lake = figures.lakeReadings.map(
      (ms, i) => ms + (figures.lakeHourly[i] as number) + (figures.lakeQuarantine[i] as number),
    );
    console.log(`${name}: lake spool ${fmt(lake)}`);
    console.log(`${name}:   readings ${fmt(figures.lakeReadings)}`);
    console.log(`${name}:   hourly ${fmt(figures.lakeHourly)}`);
    console.log(`${name}:   quarantine ${fmt(figures.lakeQuarantine)}`);
    console.log(`${name}: chDB Arrow ${fmt(figures.arrow)}`);
    console.log(`${name}: server TabSeparated ${fmt(figures.tsv)}`);
  }
}

await main();
