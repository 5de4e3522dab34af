/** The meter-quality graph over batches held in memory, outputs collected: for tests and the graph-alone benchmark. */
import { BehaviorSubject, Subject } from 'rxjs';
import { dataEvent, type FlowEvent, SideInput, StateStore } from '../core/index.js';
import type { Lineage, MeterRegistry } from '../operators/outputs.js';
import type { PeakExclusion } from '../operators/peak-exclusions.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import type {
  Alert,
  DailyPeak,
  FaultEvent,
  HourlyConsumption,
  QuarantineRecord,
  RawReading,
  Reading,
} from '../schemas/reading.js';
import { type MeterQualityOptions, meterQualityGraph } from './meter-quality.js';

export interface CollectedOutputs {
  readings: Reading[];
  quarantine: QuarantineRecord[];
  faults: FaultEvent[];
  alerts: Alert[];
  hourly: HourlyConsumption[];
  dailyPeaks: DailyPeak[];
  peakExclusions: PeakExclusion[];
}

/**
 * Runs the meter-quality graph over batches held in memory and collects every output: the graph without
 * sources, sinks or checkpoints, for tests and for measuring the operators alone.
 */
export function runGraphInMemory(
  batches: Iterable<readonly RawReading[]>,
  registry: MeterRegistry,
  profile: RuleProfile,
  options: InMemoryOptions = {},
): CollectedOutputs {
  const run = startGraph(registry, profile, options);
  for (const batch of batches) run.push(batch);
  return run.finish();
}

/**
 * `runGraphInMemory` that hands the event loop back every `yieldEvery` batches (default 24): a long run
 * on one thread otherwise starves everything else in the process, such as a test runner's heartbeat.
 */
export async function runGraphInMemoryAsync(
  batches: Iterable<readonly RawReading[]>,
  registry: MeterRegistry,
  profile: RuleProfile,
  options: InMemoryOptions & { readonly yieldEvery?: number } = {},
): Promise<CollectedOutputs> {
  const run = startGraph(registry, profile, options);
  const every = options.yieldEvery ?? 24;
  let n = 0;
  for (const batch of batches) {
    run.push(batch);
    if (++n % every === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return run.finish();
}

export interface InMemoryOptions {
  readonly replay?: boolean;
  readonly lineage?: Lineage;
  readonly exclusions?: MeterQualityOptions['exclusions'];
}

function startGraph(
  registry: MeterRegistry,
  profile: RuleProfile,
  options: InMemoryOptions,
): { push(batch: readonly RawReading[]): void; finish(): CollectedOutputs } {
  const out: CollectedOutputs = {
    readings: [],
    quarantine: [],
    faults: [],
    alerts: [],
    hourly: [],
    dailyPeaks: [],
    peakExclusions: [],
  };
  const interval = profile.gaps.defaultIntervalMs;
  const { connect } = meterQualityGraph({
    profile,
    registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry)),
    store: new StateStore(),
    lineage: options.lineage ?? { pipelineVersion: 'in-memory', processedAt: () => 0 },
    replay: options.replay ?? false,
    finalWatermark: (max) => max + interval,
    ...(options.exclusions === undefined ? {} : { exclusions: options.exclusions }),
  });
  const input = new Subject<FlowEvent<RawReading>>();
  let failure: unknown;
  const push =
    <T>(into: T[]) =>
    (b: readonly T[]) => {
      for (const x of b) into.push(x);
    };
  connect(input, {
    readings: push(out.readings),
    quarantine: push(out.quarantine),
    faults: push(out.faults),
    alerts: push(out.alerts),
    hourly: push(out.hourly),
    dailyPeaks: push(out.dailyPeaks),
    peakExclusions: push(out.peakExclusions),
  }).subscribe({ error: (err: unknown) => (failure = err) });
  return {
    push(batch) {
      if (failure === undefined) input.next(dataEvent(batch));
    },
    finish() {
      input.complete();
      if (failure !== undefined) throw failure;
      return out;
    },
  };
}
