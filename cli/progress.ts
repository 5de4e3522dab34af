import type { ReadingSource } from '../pipelines/runner.js';

export interface ProgressOptions {
  readonly label: string;
  /** What the source's pending count counts; default `messages`. */
  readonly unit?: string;
  /** Terminal: a redrawn bar. Otherwise: a plain line every `lineEveryMs`. */
  readonly tty: boolean;
  readonly write: (text: string) => void;
  readonly intervalMs?: number;
  readonly lineEveryMs?: number;
  readonly now?: () => number;
}

/** Formats one progress report: share done, counts, rate and the time left at that rate. */
export function formatProgress(
  label: string,
  done: number,
  total: number,
  elapsedMs: number,
  width = 30,
  unit = 'messages',
): { bar: string; line: string } {
  const share = total <= 0 ? 1 : Math.min(1, done / total);
  const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0;
  const etaS =
    share > 0 && share < 1
      ? Math.round(((elapsedMs / share) * (1 - share)) / 1000)
      : share >= 1
        ? 0
        : undefined;
  const eta = etaS === undefined ? '?' : `${Math.floor(etaS / 60)}:${String(etaS % 60).padStart(2, '0')}`;
  const pct = `${(share * 100).toFixed(1)}%`;
  const filled = Math.round(share * width);
  const counts = `${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} ${unit}`;
  return {
    bar: `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct} ${counts} ${Math.round(rate)}/s ETA ${eta}`,
    line: `${label} progress ${pct} (${counts}, ${Math.round(rate)} ${unit}/s, ETA ${eta})`,
  };
}

/**
 * Reports how far a bounded source (a replay) has come, from its pending count: a bar with an ETA on a
 * terminal, plain lines otherwise. Returns a function that prints the last report and stops.
 */
export function startProgress(source: ReadingSource, options: ProgressOptions): () => Promise<void> {
  const now = options.now ?? Date.now;
  const started = now();
  let total: number | undefined;
  let lastLine = 0;
  const report = async (final: boolean): Promise<void> => {
    const pending = await source.pending?.().catch(() => undefined);
    if (pending === undefined) return;
    total ??= pending;
    const done = Math.max(0, total - pending);
    const { bar, line } = formatProgress(options.label, done, total, now() - started, 30, options.unit);
    if (options.tty) options.write(`\r${bar}${final ? '\n' : ''}`);
    else if (final || now() - lastLine >= (options.lineEveryMs ?? 5_000)) {
      lastLine = now();
      options.write(`${line}\n`);
    }
  };
  void report(false);
  const timer = setInterval(() => void report(false), options.intervalMs ?? 1_000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await report(true);
  };
}
