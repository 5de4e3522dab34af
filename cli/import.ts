/**
 * `greenstream import <files or folders…>`: a bounded backfill of files in any of the four formats
 * (readings CSV / JSON, NEM12, Green Button) through the meter-quality graph into the hot store and the
 * lake, registering the meters the registry does not know from the files' own metadata, then a summary.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BehaviorSubject } from 'rxjs';
import type { FileMeter } from '../codecs/types.js';
import type { HotStoreTarget } from '../connectors/clickhouse.js';
import type { MeterRegistry } from '../operators/outputs.js';
import { type RuleProfile, resolveRuleProfile } from '../operators/rule-profile.js';
import { fileCheckpointStore } from '../pipelines/checkpoints.js';
import {
  type ImportFile,
  type ImportFileReport,
  ImportInputError,
  importSource,
  listImportFiles,
} from '../pipelines/import-source.js';
import { loadRegistry, runMeterQualityJob } from '../pipelines/job.js';
import type { RunTotals } from '../pipelines/runner.js';
import type { MeterInfo, MeterType } from '../schemas/reading.js';
import { tuneHeapForStreaming } from './heap.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget } from './options.js';
import { startProgress } from './progress.js';

/**
 * Utility files hold years of history, which the live rule `clock_reset` (nothing before 2010) would
 * reject: an import without `--profile` accepts readings from 2000 on. A profile that sets
 * `validation.earliestValid` keeps its own.
 */
export const IMPORT_EARLIEST_VALID = '2000-01-01T00:00:00Z';

export const importTable = optionTable({
  command: 'import',
  synopsis: [
    'Usage: greenstream import <files or folders…> [options]',
    '  Reads readings CSV/JSON, NEM12 (.csv) and Green Button (.xml) files, folders searched recursively,',
    '  through the same graph into the same stores as `run`, as a backfill (backdated readings not',
    '  flagged); meters missing from the registry are registered from the files (type unknown unless',
    '  --meter-type, no physical limit) and written to the meters table. Prints a summary.',
  ],
  positionals: true,
  options: [
    {
      name: 'registry',
      type: 'string',
      arg: 'file',
      env: 'GS_IMPORT_REGISTRY',
      defaultText: 'none',
      help: 'meter registry CSV; it wins over the files for meters it knows',
    },
    {
      name: 'meter-type',
      type: 'string',
      arg: 'type',
      choices: ['unknown', 'residential', 'commercial'],
      default: 'unknown',
      help: 'type of meters registered from files',
    },
    ...hotStoreOptions(),
    { name: 'cold', type: 'string', arg: 'dir', default: './data/lake', help: 'Parquet lake root' },
    { name: 'no-cold', type: 'boolean', help: 'do not write the Parquet lake' },
    {
      name: 'checkpoint',
      type: 'string',
      arg: 'file',
      env: 'GS_IMPORT_CHECKPOINT',
      default: './data/import-checkpoint.json',
      help: 'checkpoint file: a rerun skips the files it already imported; delete it to import them again',
    },
    {
      name: 'dead-letter',
      type: 'string',
      arg: 'dir',
      default: './data/dead-letter',
      help: 'where undecodable files are copied with a .reason.json',
    },
    {
      name: 'profile',
      type: 'string',
      arg: 'json',
      help: `rule profile overrides; validation.earliestValid defaults to ${IMPORT_EARLIEST_VALID} here`,
    },
    {
      name: 'worker',
      type: 'string',
      arg: 'id',
      env: 'GS_IMPORT_WORKER',
      default: 'import',
      help: 'names the lake files',
    },
    { name: 'json', type: 'boolean', help: 'print the summary as JSON' },
  ],
});

export const importUsage = optionsHelp(importTable);

export interface ImportConfig {
  readonly inputs: readonly string[];
  readonly registryPath?: string;
  readonly meterType?: MeterType;
  readonly hot: HotStoreTarget;
  readonly coldDir?: string;
  readonly checkpointPath: string;
  readonly deadLetterDir: string;
  readonly profile: RuleProfile;
  readonly workerId: string;
  /** A progress bar (terminal) or lines, on stderr. */
  readonly progress?: boolean;
  readonly signal?: AbortSignal;
}

export interface ImportSummary {
  readonly files: number;
  readonly filesDecoded: number;
  /** Files a previous run of the same checkpoint already imported: skipped. */
  readonly filesSkipped: number;
  readonly deadLetteredFiles: readonly { readonly path: string; readonly reason: string }[];
  /** Data streams (meter ids) with readings in the files. */
  readonly streams: number;
  readonly registered: readonly MeterInfo[];
  readonly totals: RunTotals;
  readonly balanced: boolean;
  readonly elapsedMs: number;
  /** Readings decoded from the files per second of the whole import. */
  readonly readingsPerSecond: number;
  readonly reports: readonly ImportFileReport[];
}

export async function importFiles(config: ImportConfig): Promise<ImportSummary> {
  const started = performance.now();
  // The dead-letter copies of an earlier import are not input, even when a folder named holds them.
  const files = await listImportFiles(config.inputs, { exclude: config.deadLetterDir });
  const known: MeterRegistry =
    config.registryPath === undefined ? new Map() : await loadRegistry(config.registryPath);
  const registry = new BehaviorSubject<MeterRegistry>(known);
  const registered: MeterInfo[] = [];
  const reports: ImportFileReport[] = [];
  const streams = new Set<string>();
  const meterType = config.meterType ?? 'unknown';
  const register = (meters: readonly FileMeter[], file: ImportFile): void => {
    const current = registry.value;
    let next: Map<string, MeterInfo> | undefined;
    for (const m of meters) {
      if (current.has(m.meterId) || next?.has(m.meterId)) continue;
      next ??= new Map(current);
      const info: MeterInfo = {
        meterId: m.meterId,
        region: m.group,
        // Each its own neighborhood: the streams of one NMI (import, export) are no neighbors to compare.
        neighborhood: m.meterId,
        meterType,
        vacant: false,
        maxKw: null,
        intervalMinutes: m.intervalMinutes,
        origin: JSON.stringify({
          format: m.format,
          file: file.path,
          unit: m.unit,
          ...(m.localTime === undefined ? {} : { localTime: m.localTime }),
        }),
      };
      next.set(m.meterId, info);
      registered.push(info);
    }
    if (next !== undefined) registry.next(next);
  };
  const source = importSource({
    files,
    deadLetterDir: config.deadLetterDir,
    receivedAt: Date.now(),
    now: Date.now,
    onMeters: register,
    onFile: (report) => {
      reports.push(report);
      for (const id of report.meterIds) streams.add(id);
    },
  });
  const stopProgress =
    config.progress === true
      ? startProgress(source, {
          label: 'import',
          unit: 'files',
          tty: process.stderr.isTTY === true,
          write: (text) => process.stderr.write(text),
        })
      : undefined;
  let totals: RunTotals;
  try {
    const {
      totals: t,
      hot,
      lake,
    } = await runMeterQualityJob({
      source: { kind: 'custom', source, checkpoints: fileCheckpointStore(config.checkpointPath) },
      registryPath: config.registryPath ?? '',
      registry,
      hot: config.hot,
      ...(config.coldDir === undefined ? {} : { coldDir: config.coldDir }),
      checkpointPath: config.checkpointPath,
      untilIdle: true,
      replay: true,
      profile: config.profile,
      workerId: config.workerId,
      ...(config.signal === undefined ? {} : { signal: config.signal }),
    });
    totals = t;
    try {
      if (registered.length > 0) await hot.insert('meters', registered);
    } finally {
      await lake?.close();
      await hot.close();
    }
  } finally {
    await stopProgress?.();
  }
  const elapsedMs = performance.now() - started;
  const deadLetteredFiles = reports.flatMap((r) =>
    r.deadLetter === undefined ? [] : [{ path: r.path, reason: r.deadLetter }],
  );
  const decodedReadings = reports.reduce((sum, r) => sum + r.readings, 0);
  return {
    files: files.length,
    filesDecoded: reports.length - deadLetteredFiles.length,
    filesSkipped: files.length - reports.length,
    deadLetteredFiles,
    streams: streams.size,
    registered,
    totals,
    balanced: totals.recordsIn === totals.measured + totals.quarantined,
    elapsedMs,
    readingsPerSecond: elapsedMs > 0 ? (decodedReadings / elapsedMs) * 1000 : 0,
    reports,
  };
}

/** The summary as printed: counts, the balance, the registered meters and the dead-lettered files. */
export function formatImportSummary(s: ImportSummary, maxListed = 20): string {
  const t = s.totals;
  const out = [
    `imported ${s.files} file(s) in ${(s.elapsedMs / 1000).toFixed(1)} s: ${s.filesDecoded} decoded, ${s.deadLetteredFiles.length} dead-lettered${
      s.filesSkipped > 0 ? `, ${s.filesSkipped} skipped (imported before, see --checkpoint)` : ''
    }`,
    `streams:        ${s.streams}`,
    `records in:     ${t.recordsIn}`,
    `stored:         ${t.measured} received readings (+${t.readings - t.measured} interpolated/missing interval rows)`,
    `quarantined:    ${t.quarantined}`,
    `dead-lettered:  ${t.deadLettered} file(s)`,
    `balance:        ${t.recordsIn} = ${t.measured} + ${t.quarantined} ${s.balanced ? '✓' : '✗ MISMATCH'} (records in = stored + quarantined; dead-lettered files hold no records)`,
    `rate:           ${Math.round(s.readingsPerSecond)} readings/s`,
  ];
  if (s.registered.length > 0) {
    out.push('', `registered from the files (${s.registered.length} meter(s) not in the registry):`);
    for (const m of s.registered.slice(0, maxListed)) {
      const origin = JSON.parse(m.origin ?? '{}') as { format?: string; unit?: string; localTime?: unknown };
      const local = origin.localTime === undefined ? '' : ` local time ${JSON.stringify(origin.localTime)}`;
      out.push(
        `  ${m.meterId}  ${origin.format ?? ''} ${m.intervalMinutes ?? '?'} min ${origin.unit ?? ''} ${m.meterType}${local}`,
      );
    }
    if (s.registered.length > maxListed) {
      out.push(`  … and ${s.registered.length - maxListed} more (SELECT * FROM greenstream.meters FINAL)`);
    }
  }
  if (s.deadLetteredFiles.length > 0) {
    out.push('', 'dead-lettered files:');
    for (const d of s.deadLetteredFiles) out.push(`  ${d.path}: ${d.reason}`);
  }
  return `${out.join('\n')}\n`;
}

/** The profile of an import: `--profile` over the defaults, `validation.earliestValid` 2000 unless it sets one. */
export function importProfile(path: string | undefined): RuleProfile {
  if (path === undefined) return resolveRuleProfile({ validation: { earliestValid: IMPORT_EARLIEST_VALID } });
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read rule profile ${path}: ${(err as Error).message}`);
  }
  const validation = (parsed as { validation?: Record<string, unknown> } | null)?.validation;
  if (typeof parsed === 'object' && parsed !== null && validation?.earliestValid === undefined) {
    parsed = { ...parsed, validation: { ...validation, earliestValid: IMPORT_EARLIEST_VALID } };
  }
  return resolveRuleProfile(parsed);
}

export const importCommand: Command = {
  name: 'import',
  summary: 'backfill NEM12, Green Button, CSV and JSON files through the graph, registering their meters',
  usage: importUsage,
  run: async (argv) => {
    tuneHeapForStreaming();
    const { values, positionals } = parseOptions(importTable, argv);
    const text = (name: string) => values[name] as string | undefined;
    if (positionals.length === 0) throw new UsageError('name at least one file or folder to import');
    const meterType = values['meter-type'] as MeterType;
    const worker = values.worker as string;
    if (!/^[A-Za-z0-9_]+$/.test(worker)) throw new UsageError('--worker may hold letters, digits and _ only');
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let summary: ImportSummary;
    try {
      summary = await importFiles({
        inputs: positionals,
        ...(text('registry') === undefined ? {} : { registryPath: resolve(text('registry')!) }),
        meterType,
        hot: parseHotTarget(text('hot'), process.env, text('database')),
        ...(values['no-cold'] === true ? {} : { coldDir: resolve(text('cold')!) }),
        checkpointPath: resolve(text('checkpoint')!),
        deadLetterDir: resolve(text('dead-letter')!),
        profile: importProfile(text('profile')),
        workerId: worker,
        progress: !values.json,
        signal: abort.signal,
      });
    } catch (err) {
      if (err instanceof ImportInputError) throw new UsageError(err.message);
      throw err;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    if (values.json) {
      const { reports: _reports, ...rest } = summary;
      process.stdout.write(`${JSON.stringify(rest)}\n`);
    } else process.stdout.write(formatImportSummary(summary));
    return summary.balanced ? 0 : 1;
  },
};
