/**
 * `node --expose-gc dist/bench/lake-seal.js [--meters 10000] [--rounds 2] [--memory-mib 384] [--base <dist>]`:
 * the lake's seal alone, as the job does it: the graph's outputs for a simulated day are produced first
 * (untimed), spooled in writes of 100,000 readings (with the hourly and quarantine rows in proportion)
 * and cut into parts of `--cold-rows` rows (the job's 200,000), each part written as the job writes it
 * (`spool.write` of readings, hourly, quarantine) by a lake with the worker's DuckDB budget (`--memory-mib`,
 * default a quarter of 1.5 GiB). Only the writes are timed: wall and process CPU (DuckDB's threads
 * included; the loop only waits), the most resident memory over the RSS before each write (sampled every
 * 10 ms) and DuckDB's own peak (`lake.memory()`). The files' SHA-256 is printed per build, so two builds
 * that write the same bytes show it. With `--base`, that build's lake does the same in alternating rounds.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { LakeKind } from '../schemas/parquet.js';
import { dayRows } from './tasks/feed.js';

interface Build {
  readonly name: string;
  readonly lake: typeof import('../connectors/parquet-lake.js');
}

/** One round's figures for a build. */
interface Round {
  wallMs: number;
  cpuMs: number;
  /** Most RSS over the RSS when the write began, MiB, over the round's writes. */
  rssRiseMib: number;
  /** DuckDB's most `usedBytes` seen, MiB. */
  duckdbMib: number;
  /** SHA-256 over every file written, in write order. */
  digest: string;
}

const WRITE_READINGS = 100_000;
const MiB = 1024 * 1024;

async function load(name: string, dist: string): Promise<Build> {
  return { name, lake: await import(pathToFileURL(join(dist, 'connectors/parquet-lake.js')).href) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      meters: { type: 'string', default: '10000' },
      rounds: { type: 'string', default: '2' },
      'memory-mib': { type: 'string', default: '384' },
      'cold-rows': { type: 'string', default: '200000' },
      base: { type: 'string' },
    },
  });
  const meters = Number(values.meters);
  const rounds = Number(values.rounds);
  const memoryLimitBytes = Number(values['memory-mib']) * MiB;
  const coldRows = Number(values['cold-rows']);
  const here = resolve(new URL('..', import.meta.url).pathname);
  const builds = [await load('this', here)];
  if (values.base !== undefined) builds.push(await load('base', resolve(values.base)));

  const day = dayRows(meters);
  const { readings, hourly, quarantine } = day;
  console.log(`rows: ${readings.length} readings, ${hourly.length} hourly, ${quarantine.length} quarantine`);
  // The writes of the day: a slice of readings with the hourly and quarantine rows made alongside it.
  const writes = Math.ceil(readings.length / WRITE_READINGS);
  const sliceOf = <T>(rows: readonly T[], w: number): readonly T[] =>
    rows.slice(Math.floor((rows.length * w) / writes), Math.floor((rows.length * (w + 1)) / writes));

  const dir = mkdtempSync(join(tmpdir(), 'gs-lake-seal-'));
  const results = new Map<string, Round[]>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const build of round % 2 === 0 ? builds : [...builds].reverse()) {
        const lakeDir = join(dir, `${build.name}-${round}`);
        const lake = await build.lake.openParquetLake({ dir: lakeDir, memoryLimitBytes });
        const figures: Round = { wallMs: 0, cpuMs: 0, rssRiseMib: 0, duckdbMib: 0, digest: '' };
        const hash = createHash('sha256');
        try {
          let part = 0;
          const open = () => ({
            readings: lake.spool('readings', 'bench'),
            hourly: lake.spool('hourly', 'bench'),
            quarantine: lake.spool('quarantine', 'bench'),
          });
          let spools = open();
          const seal = async () => {
            const id = `bench-${String(part++).padStart(6, '0')}`;
            (globalThis as { gc?: () => void }).gc?.();
            const rssBefore = process.memoryUsage.rss();
            let rssMost = rssBefore;
            let duckdbMost = 0;
            let probing = false;
            const timer = setInterval(() => {
              rssMost = Math.max(rssMost, process.memoryUsage.rss());
              if (probing) return;
              probing = true;
              lake
                .memory()
                .then((m) => {
                  duckdbMost = Math.max(duckdbMost, m.usedBytes);
                })
                .catch(() => undefined)
                .finally(() => {
                  probing = false;
                });
            }, 10);
            const cpu = process.cpuUsage();
            const t = performance.now();
            const files: string[] = [];
            for (const kind of ['readings', 'hourly', 'quarantine'] as const satisfies LakeKind[]) {
              files.push(...(await spools[kind].write(id)).files);
            }
            figures.wallMs += performance.now() - t;
            const used = process.cpuUsage(cpu);
            figures.cpuMs += (used.user + used.system) / 1000;
            clearInterval(timer);
            rssMost = Math.max(rssMost, process.memoryUsage.rss());
            figures.rssRiseMib = Math.max(figures.rssRiseMib, (rssMost - rssBefore) / MiB);
            figures.duckdbMib = Math.max(figures.duckdbMib, duckdbMost / MiB);
            for (const file of files) hash.update(readFileSync(file));
            spools = open();
          };
          for (let w = 0; w < writes; w++) {
            spools.readings.append(sliceOf(readings, w));
            spools.hourly.append(sliceOf(hourly, w));
            spools.quarantine.append(sliceOf(quarantine, w));
            if (spools.readings.rows + spools.hourly.rows + spools.quarantine.rows >= coldRows) await seal();
          }
          if (spools.readings.rows + spools.hourly.rows + spools.quarantine.rows > 0) await seal();
          figures.digest = hash.digest('hex').slice(0, 16);
        } finally {
          await lake.close();
          rmSync(lakeDir, { recursive: true, force: true });
        }
        const list = results.get(build.name) ?? [];
        list.push(figures);
        results.set(build.name, list);
        console.log(
          `${build.name} round ${round}: seal wall ${Math.round(figures.wallMs)} ms, CPU ${Math.round(figures.cpuMs)} ms, ` +
            `RSS rise ${Math.round(figures.rssRiseMib)} MiB, DuckDB ${Math.round(figures.duckdbMib)} MiB, files ${figures.digest}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
  for (const [name, list] of results) {
    console.log(
      `${name}: median seal wall ${Math.round(median(list.map((r) => r.wallMs)))} ms, CPU ${Math.round(median(list.map((r) => r.cpuMs)))} ms, ` +
        `RSS rise ${Math.round(median(list.map((r) => r.rssRiseMib)))} MiB, DuckDB ${Math.round(median(list.map((r) => r.duckdbMib)))} MiB`,
    );
  }
}

await main();
