/**
 * Helpers for the end-to-end pipeline tests: they drive the real `greenstream` command line (as a child
 * process, so it can be SIGKILLed) against real servers, and compare hot stores through FINAL.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient } from '@clickhouse/client';
import { sql } from '../../codecs/sql.js';
import type { HotTableName } from '../../schemas/clickhouse.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(repoRoot, 'bin', 'greenstream.js');
const sourceFolders = [
  'core',
  'operators',
  'codecs',
  'connectors',
  'schemas',
  'pipelines',
  'cli',
  'console',
  'simulator',
];

/**
 * The tests run the compiled CLI (`bin/` loads `dist/`): compiles when any source is newer than its
 * output. Test files run in parallel processes, so the build is serialized with a lock folder.
 */
export async function ensureBuilt(): Promise<void> {
  if (!(await distIsStale())) return;
  const lock = join(repoRoot, '.tmp', 'build.lock');
  await mkdir(join(repoRoot, '.tmp'), { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for 3 minutes; remove it if stale`);
      await sleep(250);
    }
  }
  try {
    if (!(await distIsStale())) return;
    const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    // Type errors elsewhere still emit JavaScript; the typecheck is a separate step.
    await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: repoRoot }).catch(
      (err: { stdout?: string }) => {
        if (!/error TS/.test(err.stdout ?? '')) throw err;
      },
    );
  } finally {
    await rmdir(lock);
  }
}

async function distIsStale(): Promise<boolean> {
  for (const folder of sourceFolders) {
    for (const file of await tsFiles(join(repoRoot, folder))) {
      const out = join(repoRoot, 'dist', relative(repoRoot, file)).replace(/\.ts$/, '.js');
      const [src, built] = await Promise.all([stat(file), stat(out).catch(() => undefined)]);
      if (built === undefined || built.mtimeMs < src.mtimeMs) return true;
    }
  }
  return false;
}

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await tsFiles(full)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `greenstream <args>` to its end. */
export async function runCli(args: readonly string[], options: CliOptions = {}) {
  const worker = startCli(args, options);
  return worker.done;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly done: Promise<CliResult>;
  /** The JSON log lines (stderr) seen so far. */
  readonly logs: ReadonlyArray<Record<string, unknown>>;
  /** Resolves once `count` log lines with `msg` have been seen (or the process ended: then false). */
  waitForLog(msg: string, count: number): Promise<boolean>;
}

/** Starts `greenstream <args>` and follows its JSON log on stderr. */
export interface CliOptions {
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
}

export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const started = performance.now();
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stdout = '';
  let stderr = '';
  const waiters: { msg: string; count: number; resolve: (ok: boolean) => void }[] = [];
  const check = (ended: boolean) => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      const seen = logs.filter((l) => l.msg === w.msg).length;
      if (seen >= w.count || ended) {
        waiters.splice(i, 1);
        w.resolve(seen >= w.count);
      }
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr += `${line}\n`;
    if (line.startsWith('{')) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line: kept in stderr only.
      }
      check(false);
    }
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      check(true);
      resolve({ code, signal, stdout, stderr, ms: Math.round(performance.now() - started) });
    });
  });
  return {
    child,
    done,
    logs,
    waitForLog: (msg, count) =>
      new Promise<boolean>((resolve) => {
        waiters.push({ msg, count, resolve });
        check(child.exitCode !== null || child.signalCode !== null);
      }),
  };
}

/** Fails with the command's output when it did not exit 0. */
export function expectSuccess(result: CliResult, what: string): CliResult {
  if (result.code !== 0) {
    throw new Error(
      `${what} exited with ${result.code ?? result.signal}:\n--- stderr ---\n${result.stderr.slice(-4000)}\n--- stdout ---\n${result.stdout.slice(-2000)}`,
    );
  }
  return result;
}

/** The last JSON object the command printed on stdout (`run` prints its totals there). */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** Totals `greenstream run` prints at exit. */
export interface RunTotalsOutput {
  recordsIn: number;
  readings: number;
  measured: number;
  quarantined: number;
  deadLettered: number;
  faults: number;
  alerts: number;
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so kill points can be reproduced. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type ClickHouseQuery = (query: string) => Promise<string>;

/** Plain-text queries against a ClickHouse server (TabSeparated answers). */
export function clickhouseQuery(url: string): { query: ClickHouseQuery; close: () => Promise<void> } {
  const client = createClient({ url });
  return {
    query: async (query) => {
      const result = await client.query({ query, format: 'TabSeparated' });
      return result.text();
    },
    close: () => client.close(),
  };
}

/**
 * The columns a run's content is compared on: everything but wall-clock stamps (`processed_at`,
 * `quarantined_at`), which differ between two runs by design.
 */
export const comparedColumns: Partial<Record<HotTableName, readonly string[]>> = {
  readings: [
    'meter_id',
    'ts',
    'kw',
    'raw_value',
    'raw_unit',
    'status',
    'flags',
    'quality_score',
    'quality_tier',
    'grade',
    'peak_class',
    'season',
    'record_id',
    'source',
    'pipeline_version',
  ],
  faults: ['meter_id', 'fault_type', 'window_start', 'window_end', 'detected_at', 'evidence'],
  alerts: ['kind', 'severity', 'meter_id', 'ts', 'message'],
  quarantine: ['meter_id', 'ts', 'raw', 'reasons', 'source'],
  hourly_consumption: [
    'meter_id',
    'neighborhood',
    'hour',
    'avg_kw',
    'min_kw',
    'max_kw',
    'stddev_kw',
    'count',
  ],
  daily_peaks: ['day', 'hour', 'total_kw', 'rank'],
};

/** The sorting key of each compared table: FINAL keeps one row per key. */
export const tableKeys: Partial<Record<HotTableName, readonly string[]>> = {
  readings: ['meter_id', 'ts'],
  faults: ['meter_id', 'fault_type', 'window_start'],
  alerts: ['kind', 'meter_id', 'ts', 'severity', 'message'],
  quarantine: ['source', 'raw'],
  hourly_consumption: ['meter_id', 'hour'],
  daily_peaks: ['day', 'rank'],
};

/**
 * Alerts about the worker rather than the data (raised in processing time from consumer lag, checkpoint
 * averages and sink failures): two runs raise them at different moments by design.
 */
export const processingTimeAlertKinds = ['backlog', 'quality_degradation', 'transformation_failure'];

function comparedRows(table: HotTableName) {
  return table === 'alerts' ? sql` WHERE kind NOT IN (${sql.list(processingTimeAlertKinds)})` : sql.raw('');
}

/** The rows of a table as seen through FINAL, one TabSeparated line each, sorted. */
export async function tableContent(query: ClickHouseQuery, database: string, table: HotTableName) {
  const columns = comparedColumns[table]!;
  const where = comparedRows(table);
  const text = await query(
    sql`SELECT ${sql.join(columns.map((c) => sql.ident(c)))} FROM ${sql.ident(database, table)} FINAL${where} ORDER BY ${sql.join(columns.map((c) => sql.ident(c)))}`
      .text,
  );
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

export interface TableCheck {
  readonly table: HotTableName;
  /** Rows through FINAL (alerts: without the processing-time ones). */
  readonly rows: number;
  /** Distinct sorting keys over all stored rows (merged or not): equal to `rows` when nothing is doubled. */
  readonly distinctKeys: number;
}

export async function tableCheck(
  query: ClickHouseQuery,
  database: string,
  table: HotTableName,
): Promise<TableCheck> {
  const key = sql.join(tableKeys[table]!.map((c) => sql.ident(c)));
  const where = comparedRows(table);
  const rows = Number(await query(sql`SELECT count() FROM ${sql.ident(database, table)} FINAL${where}`.text));
  const distinctKeys = Number(
    await query(
      sql`SELECT count() FROM (SELECT DISTINCT ${key} FROM ${sql.ident(database, table)}${where})`.text,
    ),
  );
  return { table, rows, distinctKeys };
}

/** Lines in one sorted list and not the other, a few of each, for a readable failure. */
export function contentDiff(a: readonly string[], b: readonly string[], show = 5) {
  const inA = new Set(a);
  const inB = new Set(b);
  return {
    onlyInA: a.filter((line) => !inB.has(line)).slice(0, show),
    onlyInB: b.filter((line) => !inA.has(line)).slice(0, show),
  };
}

export const comparedTables = Object.keys(comparedColumns) as HotTableName[];
