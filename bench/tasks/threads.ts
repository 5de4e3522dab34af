/**
 * `greenstream run --threads N` as an operator starts it: the day's landing files published into the
 * production stream by `greenstream publish`, then drained by the command line (JetStream → chDB + lake,
 * `--until-idle`) once per thread count, from outside: wall time, the process's CPU time (every thread)
 * and its peak resident set read from /proc while it runs.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TaskContext } from '../child.js';
import { round } from '../protocol.js';

export interface ThreadsArgs {
  readonly natsUrl: string;
  readonly landingDir: string;
  readonly registryPath: string;
  readonly workDir: string;
  /** Thread counts, one drain each (the same stream, each under its own worker id). */
  readonly threads: readonly number[];
}

export interface ThreadsRun {
  readonly threads: number;
  readonly exitCode: number | null;
  readonly wallMs: number;
  /** User + system time of the process, every thread (from /proc, sampled every 250 ms). */
  readonly cpuMs: number;
  readonly peakRssMb: number;
  readonly recordsIn: number;
  readonly readings: number;
  readonly readingsPerSecond: number;
}

export interface ThreadsFigures {
  readonly publishMs: number;
  readonly runs: readonly ThreadsRun[];
}

const BIN = fileURLToPath(new URL('../../../bin/greenstream.js', import.meta.url));
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

interface Finished {
  readonly code: number | null;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly peakRssMb: number;
  readonly logs: readonly Record<string, unknown>[];
}

/** Runs the command line, sampling its CPU time and peak RSS until it exits. */
function runCli(args: readonly string[], cwd: string): Promise<Finished> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let cpuMs = 0;
  let peakRssMb = 0;
  const sample = () => {
    try {
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
      const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
      peakRssMb = Math.max(peakRssMb, Math.round(kb / 1024));
    } catch {
      // exited between two samples
    }
  };
  const timer = setInterval(sample, 250);
  const logs: Record<string, unknown>[] = [];
  let tail = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (tail + chunk).split('\n');
    tail = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, wallMs: performance.now() - started, cpuMs, peakRssMb, logs });
    });
  });
}

/** The run's totals: its `stopped` line, else the sum of each thread's last checkpoint. */
function totalsOf(logs: readonly Record<string, unknown>[]): { recordsIn: number; readings: number } {
  const stopped = logs.findLast((l) => l.msg === 'stopped');
  if (stopped !== undefined)
    return { recordsIn: Number(stopped.recordsIn), readings: Number(stopped.readings) };
  const last = new Map<string, Record<string, unknown>>();
  for (const l of logs) if (l.msg === 'checkpoint') last.set(String(l.thread ?? ''), l);
  let recordsIn = 0;
  let readings = 0;
  for (const l of last.values()) {
    recordsIn += Number(l.recordsIn);
    readings += Number(l.readings);
  }
  return { recordsIn, readings };
}

export async function threadsTask(args: ThreadsArgs, context: TaskContext): Promise<ThreadsFigures> {
  mkdirSync(args.workDir, { recursive: true });
  context.progress('greenstream publish …');
  const published = await runCli(['publish', args.landingDir, '--nats', args.natsUrl], args.workDir);
  if (published.code !== 0) throw new Error(`greenstream publish exited with ${published.code}`);
  const runs: ThreadsRun[] = [];
  for (const threads of args.threads) {
    context.progress(`greenstream run --threads ${threads} …`);
    const dir = join(args.workDir, `threads-${threads}`);
    const run = await runCli(
      [
        'run',
        '--source',
        args.natsUrl,
        '--registry',
        args.registryPath,
        '--hot',
        `chdb:${join(dir, 'chdb')}`,
        '--cold',
        join(dir, 'lake'),
        '--worker',
        `bench_threads_${threads}`,
        '--threads',
        String(threads),
        '--until-idle',
      ],
      args.workDir,
    );
    const totals = totalsOf(run.logs);
    runs.push({
      threads,
      exitCode: run.code,
      wallMs: Math.round(run.wallMs),
      cpuMs: Math.round(run.cpuMs),
      peakRssMb: run.peakRssMb,
      ...totals,
      readingsPerSecond: Math.round(totals.readings / (run.wallMs / 1000)),
    });
    context.progress(
      `--threads ${threads}: ${round(run.wallMs / 1000, 1)} s, CPU ${round(run.cpuMs / 1000, 1)} s, peak RSS ${run.peakRssMb} MB, exit ${run.code}`,
    );
  }
  return { publishMs: Math.round(published.wallMs), runs };
}
