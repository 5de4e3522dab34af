/**
 * Ground truth for measuring detection. Every deliberate injection is an `injected` label: a detector
 * should find it (recall). Some injections unavoidably look like other kinds too (50 h of zeros have
 * no variance, so they are also "stuck"; a 25 kW overload reading is also a 20× rate-of-change spike
 * and a > 4σ outlier). Those are `side_effect` labels, found by scanning the final data with each rule
 * (with margins and every reasonable reading of the rule): a detector may or may not report them, so
 * they count neither as misses nor as false positives. Anything a detector reports that matches no
 * label at all is a false positive.
 */
import type { LabelKind } from './kinds.js';
import { labelKinds } from './kinds.js';

export type LabelRole = 'injected' | 'side_effect';

export interface SimulationLabel {
  /** The registered meter (or, for `unknown_meter`, the unregistered id written). */
  meterId: string;
  kind: LabelKind;
  role: LabelRole;
  /** Interval start of the first affected reading, `YYYY-MM-DDTHH:MM:SSZ`. */
  start: string;
  /** Interval start of the last affected reading (inclusive). */
  end: string;
  /** Readings (or lines, or missing intervals for gaps) concerned. */
  count: number;
  /** Side effects: the kinds injected on this meter that cause it; empty when none (natural data). */
  causes?: LabelKind[];
  /** Interval starts of every affected reading, for record-level kinds. */
  readings?: string[];
  /** The exact CSV lines written, for kinds whose line itself is the anomaly. */
  lines?: string[];
  details?: Record<string, string | number | boolean>;
}

export interface KindCount {
  labels: number;
  meters: number;
  count: number;
}

export interface LabelSummary {
  injected: Partial<Record<LabelKind, KindCount>>;
  sideEffects: Partial<Record<LabelKind, KindCount>>;
  /** Kinds not injected, with why (e.g. a zero fault needs 54 h of simulated time). */
  skipped: Partial<Record<LabelKind, string>>;
  /** Kinds injected on fewer meters than asked, with how many were asked. */
  shortfall: Partial<Record<LabelKind, { requested: number; injected: number }>>;
}

export interface LabelsFile {
  format: 'greenstream-simulator-labels/1';
  seed: number;
  meters: number;
  days: number;
  /** First interval start. */
  start: string;
  /** Last interval start. */
  end: string;
  intervalMinutes: number;
  /** Limits the data was built around: clean data stays below them, injected overloads above. */
  limits: { residentialKw: number; commercialKw: number };
  summary: LabelSummary;
  labels: SimulationLabel[];
}

function tally(labels: readonly SimulationLabel[], role: LabelRole): Partial<Record<LabelKind, KindCount>> {
  const counts: Partial<Record<LabelKind, KindCount>> = {};
  const meters = new Map<LabelKind, Set<string>>();
  for (const label of labels) {
    if (label.role !== role) continue;
    const entry = counts[label.kind] ?? { labels: 0, meters: 0, count: 0 };
    entry.labels += 1;
    entry.count += label.count;
    counts[label.kind] = entry;
    let set = meters.get(label.kind);
    if (!set) {
      set = new Set();
      meters.set(label.kind, set);
    }
    set.add(label.meterId);
  }
  for (const [kind, set] of meters) {
    const entry = counts[kind];
    if (entry) entry.meters = set.size;
  }
  return counts;
}

export function summarizeLabels(
  labels: readonly SimulationLabel[],
  skipped: LabelSummary['skipped'],
  shortfall: LabelSummary['shortfall'],
): LabelSummary {
  return {
    injected: tally(labels, 'injected'),
    sideEffects: tally(labels, 'side_effect'),
    skipped,
    shortfall,
  };
}

const kindOrder = new Map(labelKinds.map((kind, i) => [kind, i]));

/** Injected first, then by kind, meter and start: a stable order for the file. */
export function compareLabels(a: SimulationLabel, b: SimulationLabel): number {
  if (a.role !== b.role) return a.role === 'injected' ? -1 : 1;
  const byKind = (kindOrder.get(a.kind) ?? 0) - (kindOrder.get(b.kind) ?? 0);
  if (byKind !== 0) return byKind;
  if (a.meterId !== b.meterId) return a.meterId < b.meterId ? -1 : 1;
  return a.start < b.start ? -1 : a.start > b.start ? 1 : 0;
}

export interface Detection {
  meterId: string;
  kind: LabelKind;
}

export interface KindScore {
  /** Meters with an injected label of this kind. */
  expected: number;
  /** Distinct meters reported. */
  detected: number;
  truePositives: number;
  /** Reported meters with no label of this kind at all. */
  falsePositives: number;
  falseNegatives: number;
  /** Reported meters that only carry a side-effect label of this kind (neither right nor wrong). */
  tolerated: number;
  /** 1 when nothing scoreable was reported. */
  precision: number;
  /** 1 when nothing of this kind was injected. */
  recall: number;
  falsePositiveMeters: string[];
  missedMeters: string[];
}

/**
 * Scores meter-level detections (one per meter and kind; repeats collapse) against the labels,
 * treating side-effect labels as tolerated.
 */
export function scoreDetections(
  labels: readonly SimulationLabel[],
  detections: readonly Detection[],
  kinds: readonly LabelKind[],
): Partial<Record<LabelKind, KindScore>> {
  const scores: Partial<Record<LabelKind, KindScore>> = {};
  for (const kind of kinds) {
    const expected = new Set<string>();
    const tolerated = new Set<string>();
    for (const label of labels) {
      if (label.kind !== kind) continue;
      (label.role === 'injected' ? expected : tolerated).add(label.meterId);
    }
    const detected = new Set(detections.filter((d) => d.kind === kind).map((d) => d.meterId));
    let truePositives = 0;
    let toleratedHits = 0;
    const falsePositiveMeters: string[] = [];
    for (const meter of detected) {
      if (expected.has(meter)) truePositives += 1;
      else if (tolerated.has(meter)) toleratedHits += 1;
      else falsePositiveMeters.push(meter);
    }
    const missedMeters = [...expected].filter((m) => !detected.has(m));
    const scored = truePositives + falsePositiveMeters.length;
    scores[kind] = {
      expected: expected.size,
      detected: detected.size,
      truePositives,
      falsePositives: falsePositiveMeters.length,
      falseNegatives: missedMeters.length,
      tolerated: toleratedHits,
      precision: scored === 0 ? 1 : truePositives / scored,
      recall: expected.size === 0 ? 1 : truePositives / expected.size,
      falsePositiveMeters: falsePositiveMeters.sort(),
      missedMeters: missedMeters.sort(),
    };
  }
  return scores;
}
