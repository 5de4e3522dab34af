/**
 * `node --expose-gc dist/bench/encode-server.js [--meters N] [--rounds N]`: the JS cost of the ClickHouse
 * server's insert bodies alone, as CPU time, TabSeparated against RowBinary. The graph's outputs for a
 * simulated day are produced first (untimed); then, in each round and for each format in turn (the order
 * alternating), the readings, hourly and quarantine rows are encoded the way the server driver stages
 * them: every 100,000 rows one body (`piecesOf`: TabSeparated text made into one buffer, RowBinary pieces
 * kept as they come).
 */
import { parseArgs } from 'node:util';
import { type InsertFormat, rowWriter } from '../codecs/clickhouse-encode.js';
import { rowBinaryWriter } from '../codecs/clickhouse-rowbinary.js';
import { piecesOf } from '../connectors/clickhouse-driver.js';
import { type Column, hourlyColumns, quarantineColumns, readingColumns } from '../schemas/reading.js';
import { dayRows } from './tasks/feed.js';

const WRITE_ROWS = 100_000;

type Format = Extract<InsertFormat, 'TabSeparated'> | 'RowBinary';
const FORMATS: readonly Format[] = ['TabSeparated', 'RowBinary'];
const TABLES = ['readings', 'hourly', 'quarantine'] as const;

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

/** Encodes `rows` as the server driver stages them; returns the bytes. */
function stage<Row>(columns: readonly Column<Row>[], rows: readonly Row[], format: Format): number {
  let bytes = 0;
  const write = format === 'TabSeparated' ? rowWriter(columns, 'TabSeparated') : rowBinaryWriter(columns);
  for (let from = 0; from < rows.length; from += WRITE_ROWS) {
    const to = Math.min(rows.length, from + WRITE_ROWS);
    for (const piece of piecesOf((sink) => write(rows, from, to, sink))) bytes += piece.byteLength;
  }
  return bytes;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      meters: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '5' },
    },
  });
  const meters = Number(values.meters);
  const rounds = Number(values.rounds);
  const { readings, hourly, quarantine } = dayRows(meters);
  console.log(`rows: ${readings.length} readings, ${hourly.length} hourly, ${quarantine.length} quarantine`);

  const figures = new Map<string, number[]>();
  const bytes = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    for (const format of round % 2 === 0 ? FORMATS : [...FORMATS].reverse()) {
      for (const table of TABLES) {
        (globalThis as { gc?: () => void }).gc?.();
        const t = process.cpuUsage();
        const size =
          table === 'readings'
            ? stage(readingColumns, readings, format)
            : table === 'hourly'
              ? stage(hourlyColumns, hourly, format)
              : stage(quarantineColumns, quarantine, format);
        const ms = cpuMs(t);
        const key = `${format} ${table}`;
        figures.set(key, [...(figures.get(key) ?? []), ms]);
        bytes.set(key, size);
      }
    }
  }
  const fmt = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    // On a shared machine the least disturbed round (the minimum) says most.
    return `min ${Math.round(sorted[0] as number)} ms, median ${Math.round(sorted[sorted.length >> 1] as number)} ms [${xs.map(Math.round).join(', ')}]`;
  };
  for (const [key, xs] of figures) {
    console.log(`${key}: ${fmt(xs)}, ${((bytes.get(key) ?? 0) / 1e6).toFixed(1)} MB`);
  }
}

await main();
