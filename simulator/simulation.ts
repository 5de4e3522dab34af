/**
 * The simulator's entry points: an in-memory simulation that yields the hourly CSV files (for
 * publishing to a stream) and `simulate`, which writes the landing folder.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MeterInfo } from '../schemas/reading.js';
import type { Dataset, PendingLabel } from './dataset.js';
import { gatewayStyles, type HourFile, LineRenderer, renderHours } from './emit.js';
import { assignMeters, injectAll, type MeterAssignment } from './inject.js';
import type { LabelKind } from './kinds.js';
import {
  compareLabels,
  type KindCount,
  type LabelsFile,
  type SimulationLabel,
  summarizeLabels,
} from './labels.js';
import {
  isoSeconds,
  type ResolvedOptions,
  resolveOptions,
  type SimulateOptions,
  type SimulationOptions,
  SimulationOptionsError,
  SLOT_MINUTES,
  SLOT_MS,
} from './options.js';
import { buildTemperatures } from './profiles.js';
import { buildRegistry, registryCsv } from './registry.js';
import { generateLoad } from './series.js';
import { addSideEffects } from './sideEffects.js';

export interface Simulation {
  readonly options: ResolvedOptions;
  readonly registry: readonly MeterInfo[];
  readonly labels: LabelsFile;
  registryCsv(): string;
  /** Every gateway-hour file in time order; each call starts again from the first hour. */
  hours(): Generator<HourFile>;
}

export interface SimulationSummary {
  out: string | null;
  meters: number;
  days: number;
  seed: number;
  start: string;
  end: string;
  gateways: number;
  /** Hourly reading files. */
  files: number;
  /** Data lines in the reading files (readings, duplicates, unknown meters, malformed lines). */
  lines: number;
  /** Bytes of the reading files. */
  bytes: number;
  /** meters × intervals: what a perfect fleet would have sent. */
  expectedReadings: number;
  injected: Partial<Record<LabelKind, KindCount>>;
  sideEffects: Partial<Record<LabelKind, KindCount>>;
  skipped: Partial<Record<LabelKind, string>>;
}

function finalizeLabels(data: Dataset, renderer: LineRenderer, assignment: MeterAssignment): LabelsFile {
  const labels: SimulationLabel[] = data.labels.map((pending: PendingLabel) => {
    const { lineSlots, extraLines, ...label } = pending;
    if (lineSlots) {
      const meterIndex = Number(label.meterId.slice(4)) - 1;
      label.lines = lineSlots.map((s) => renderer.line(meterIndex, s) ?? '');
    }
    if (extraLines) label.lines = extraLines.readings.map((r) => renderer.extraLine(r, extraLines.gateway));
    return label;
  });
  labels.sort(compareLabels);
  const { options } = data;
  return {
    format: 'greenstream-simulator-labels/1',
    seed: options.seed,
    meters: options.meters,
    days: options.days,
    start: isoSeconds(options.startMs),
    end: isoSeconds(options.startMs + (options.slots - 1) * SLOT_MS),
    intervalMinutes: SLOT_MINUTES,
    limits: { residentialKw: options.residentialLimitKw, commercialKw: options.commercialLimitKw },
    summary: summarizeLabels(labels, assignment.skipped, assignment.shortfall),
    labels,
  };
}

export function createSimulation(options: SimulationOptions): Simulation {
  const resolved = resolveOptions(options);
  const registry = buildRegistry(resolved);
  const assignment = assignMeters(resolved, registry);
  const temperatures = buildTemperatures(resolved, registry.regions.length);
  const values = generateLoad(resolved, registry, temperatures, assignment.inverted);
  const data: Dataset = {
    options: resolved,
    registry,
    values,
    flags: new Uint8Array(values.length),
    overrides: new Map(),
    extras: new Map(),
    labels: [],
  };
  injectAll(data, assignment);
  addSideEffects(data);
  const renderer = new LineRenderer(data, gatewayStyles(resolved, registry.gateways));
  const labels = finalizeLabels(data, renderer, assignment);
  const infos = registry.meters.map((m) => m.info);
  return {
    options: resolved,
    registry: infos,
    labels,
    registryCsv: () => registryCsv(infos),
    hours: () => renderHours(data, renderer),
  };
}

/** The hourly files without writing them (e.g. to publish each to a stream). */
export function generateHours(options: SimulationOptions): Generator<HourFile> {
  return createSimulation(options).hours();
}

/** Only the registry: cheap, and identical to the one `createSimulation` builds for the same options. */
export function generateRegistry(options: SimulationOptions): MeterInfo[] {
  return buildRegistry(resolveOptions(options)).meters.map((m) => m.info);
}

export function generateLabels(options: SimulationOptions): LabelsFile {
  return createSimulation(options).labels;
}

const outputs = ['raw', 'registry.csv', 'labels.json'];

function prepareOutput(out: string, overwrite: boolean): void {
  if (typeof out !== 'string' || out.length === 0) {
    throw new SimulationOptionsError('out', out, 'must be a folder path');
  }
  mkdirSync(out, { recursive: true });
  const present = outputs.filter((name) => existsSync(join(out, name)));
  if (present.length === 0) return;
  if (!overwrite) {
    throw new SimulationOptionsError(
      'out',
      out,
      `already holds ${present.join(', ')} from an earlier run; choose another folder or overwrite`,
    );
  }
  for (const name of present) rmSync(join(out, name), { recursive: true, force: true });
}

/** Writes registry.csv, labels.json and raw/YYYY/MM/DD/HH/gw-XXXX.csv into `options.out`. */
export async function simulate(options: SimulateOptions): Promise<SimulationSummary> {
  const simulation = createSimulation(options);
  prepareOutput(options.out, options.overwrite ?? false);
  const out = options.out;
  writeFileSync(join(out, 'registry.csv'), simulation.registryCsv());
  let files = 0;
  let lines = 0;
  let bytes = 0;
  let folder = '';
  for (const file of simulation.hours()) {
    const path = join(out, file.path);
    const parent = dirname(path);
    if (parent !== folder) {
      mkdirSync(parent, { recursive: true });
      folder = parent;
    }
    const content = Buffer.from(file.csv, 'utf8');
    writeFileSync(path, content);
    files += 1;
    lines += file.lines;
    bytes += content.length;
  }
  // Written last: a folder with labels.json is a complete run.
  writeFileSync(join(out, 'labels.json'), `${JSON.stringify(simulation.labels, null, 1)}\n`);
  return summaryOf(simulation, { out, files, lines, bytes });
}

export function summaryOf(
  simulation: Simulation,
  written: { out: string | null; files: number; lines: number; bytes: number },
): SimulationSummary {
  const { options, labels } = simulation;
  return {
    out: written.out,
    meters: options.meters,
    days: options.days,
    seed: options.seed,
    start: labels.start,
    end: labels.end,
    gateways: Math.ceil(options.meters / options.gatewaySize),
    files: written.files,
    lines: written.lines,
    bytes: written.bytes,
    expectedReadings: options.meters * options.slots,
    injected: labels.summary.injected,
    sideEffects: labels.summary.sideEffects,
    skipped: labels.summary.skipped,
  };
}
