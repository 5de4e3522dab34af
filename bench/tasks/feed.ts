/**
 * Feeding the graph without a source: the simulated fleet's files decoded hour by hour (all gateways of
 * an hour in one batch, as a pull of the stream would bring them), pushed into `meterQualityGraph` with
 * outputs handed to a callback instead of being collected, so a 50,000-meter day fits in memory; and the
 * stages before the per-meter rules alone (`stagesBeforeRules`), the input of the rules' own benches.
 */
import { BehaviorSubject, pipe, Subject } from 'rxjs';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import {
  assignWatermarks,
  awaitSideInputs,
  dataEvent,
  type FlowEvent,
  type PipelineGraph,
  SideInput,
  StateStore,
  type Transform,
} from '../../core/index.js';
import { dedupeReadings } from '../../operators/dedupe-readings.js';
import { METER_KEYS } from '../../operators/meter-key.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { parseReading } from '../../operators/parse-reading.js';
import { quarantineImplausibleTime } from '../../operators/quarantine-implausible-time.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { type RuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';
import { standardizeUnits } from '../../operators/standardize-units.js';
import { validateMeasurements } from '../../operators/validate-measurements.js';
import { validateReading } from '../../operators/validate-reading.js';
import { type MeterQualitySink, meterQualityGraph } from '../../pipelines/meter-quality.js';
import type { HourlyConsumption, QuarantineRecord, RawReading, Reading } from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';
import type { SimSpec } from './common.js';

const HOUR = 3_600_000;

export interface HourBatch {
  readonly records: RawReading[];
  /** Decoding time of the hour's files, ms. */
  readonly decodeMs: number;
}

/** The registry and an iterator of decoded hour batches of the simulation. */
export function simulatedHours(sim: SimSpec): { registry: MeterRegistry; hours: () => Generator<HourBatch> } {
  const simulation = createSimulation(sim);
  const { registry } = parseRegistryCsv(simulation.registryCsv());
  function* hours(): Generator<HourBatch> {
    let folder = '';
    let records: RawReading[] = [];
    let decodeMs = 0;
    for (const file of simulation.hours()) {
      const f = file.path.slice(0, file.path.lastIndexOf('/'));
      if (f !== folder && records.length > 0) {
        yield { records, decodeMs };
        records = [];
        decodeMs = 0;
      }
      folder = f;
      const bytes = Buffer.from(file.csv);
      const t = performance.now();
      const decoded = decodeReadings(bytes, {
        source: file.path,
        receivedAt: landingReceivedAt(file.path) ?? 0,
        contentType: 'text/csv',
        lineRefs: true,
      });
      if (decoded.ok) for (const r of decoded.readings) records.push(r);
      decodeMs += performance.now() - t;
    }
    if (records.length > 0) yield { records, decodeMs };
  }
  return { registry, hours };
}

/** The graph wired to `sink`, its input, and its graph (for stage timing). */
export function openGraph(
  registry: MeterRegistry,
  sink: MeterQualitySink,
  options: { readonly stageTiming?: boolean } = {},
): { input: Subject<FlowEvent<RawReading>>; graph: PipelineGraph; finish: () => void } {
  const profile = resolveRuleProfile();
  const interval = profile.gaps.defaultIntervalMs;
  let processedAt = 0;
  const { graph, connect } = meterQualityGraph({
    profile,
    registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry)),
    store: new StateStore(),
    lineage: { pipelineVersion: 'bench', processedAt: () => processedAt },
    replay: false,
    finalWatermark: (max) => max + interval,
  });
  if (options.stageTiming === true) graph.enableTiming();
  const input = new Subject<FlowEvent<RawReading>>();
  let failure: unknown;
  connect(input, sink).subscribe({ error: (err: unknown) => (failure = err) });
  const push = input.next.bind(input);
  const wrapped = new Subject<FlowEvent<RawReading>>();
  wrapped.subscribe({
    next: (e) => {
      processedAt = Date.now();
      push(e);
      if (failure !== undefined) throw failure;
    },
    complete: () => input.complete(),
  });
  return {
    input: wrapped,
    graph,
    finish: () => {
      wrapped.complete();
      if (failure !== undefined) throw failure;
    },
  };
}

export function pushBatch(input: Subject<FlowEvent<RawReading>>, records: readonly RawReading[]): void {
  input.next(dataEvent(records));
}

/** The stored rows of a simulated day (readings, hourly, quarantine), made by the graph, for the encoder benches. */
export interface DayRows {
  readonly readings: Reading[];
  readonly hourly: HourlyConsumption[];
  readonly quarantine: QuarantineRecord[];
}

/** Runs the graph over a simulated day of `meters` meters and keeps the rows the stores would receive. */
export function dayRows(meters: number): DayRows {
  const { registry, hours } = simulatedHours({ meters, days: 1, start: '2024-03-11', seed: 1 });
  const rows: DayRows = { readings: [], hourly: [], quarantine: [] };
  const add =
    <T>(into: T[]) =>
    (batch: readonly T[]) => {
      for (const row of batch) into.push(row);
    };
  const ignore = () => undefined;
  const { input, finish } = openGraph(registry, {
    readings: add(rows.readings),
    quarantine: add(rows.quarantine),
    hourly: add(rows.hourly),
    faults: ignore,
    alerts: ignore,
    dailyPeaks: ignore,
  });
  for (const batch of hours()) pushBatch(input, batch.records);
  finish();
  return rows;
}

/** The graph's stages before the per-meter chain, as the graph runs them (their tagged outputs left in). */
export function stagesBeforeRules(
  store: StateStore,
  side: SideInput<MeterRegistry>,
  profile: RuleProfile,
): Transform<RawReading, Reading> {
  const lineage = { pipelineVersion: 'bench', processedAt: () => 0 };
  return pipe(
    awaitSideInputs<RawReading>(side),
    parseReading(lineage, store.denseKeys(METER_KEYS)),
    validateMeasurements(profile.measurements, lineage),
    standardizeUnits(profile.units, side),
    validateReading(side, profile.validation, { replay: false }),
    quarantineImplausibleTime(store, profile.validation, undefined, { replay: false }),
    assignWatermarks<Reading>({
      name: 'assignWatermarks',
      store,
      eventTime: (r) => r.ts,
      maxOutOfOrdernessMs: profile.maxOutOfOrdernessMs,
    }),
    dedupeReadings(store, { horizonMs: profile.maxOutOfOrdernessMs + 2 * HOUR }),
  );
}
