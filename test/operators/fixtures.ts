/**
 * Shared builders for operator tests. Defaults describe one clean, measured 1 kW reading of a
 * residential meter at 2024-03-04T00:00:00Z, so a test states only the fields its rule looks at.
 */
import { from, of } from 'rxjs';
import {
  dataEvent,
  deserializeSnapshot,
  type FlowEvent,
  type OutputTag,
  SideInput,
  StateStore,
  type Transform,
} from '../../core/index.js';
import { ALERTS, FAULTS, type Lineage, type MeterRegistry } from '../../operators/outputs.js';
import type {
  Alert,
  FaultEvent,
  MeterInfo,
  QuarantineRecord,
  RawReading,
  Reading,
} from '../../schemas/reading.js';

/** 2024-03-04T00:00:00Z, a Monday: the default event time of every fixture. */
export const T0 = Date.UTC(2024, 2, 4);
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
/** The default reading interval of the seeds. */
export const INTERVAL = 15 * MINUTE;

/** Processing time stamped by `testLineage`: one hour after T0. */
export const PROCESSED_AT = T0 + HOUR;

/** A fixed lineage so processed/quarantined timestamps are predictable. */
export function testLineage(processedAt: number = PROCESSED_AT, pipelineVersion = 'test'): Lineage {
  return { pipelineVersion, processedAt: () => processedAt };
}

export function reading(partial: Partial<Reading> = {}): Reading {
  return {
    meterId: 'MTR-000001',
    ts: T0,
    kw: 1,
    rawValue: '1',
    rawUnit: 'kW',
    status: 'measured',
    warnings: 0,
    qualityScore: 100,
    qualityTier: 'premium',
    grade: 'A',
    peakClass: 'standard',
    season: 'spring',
    recordId: 'test-record',
    source: 'test',
    processedAt: PROCESSED_AT,
    pipelineVersion: 'test',
    ...partial,
    // A fresh array per reading: operators push flags in place.
    flags: partial.flags ? [...partial.flags] : [],
  };
}

/**
 * A sequence of readings of one meter every `intervalMs` from `start`, one per kw value
 * (null gives a NULL reading flagged MISSING_READING).
 */
export function series(
  kws: readonly (number | null)[],
  opts: { meterId?: string; start?: number; intervalMs?: number } = {},
): Reading[] {
  const start = opts.start ?? T0;
  const step = opts.intervalMs ?? INTERVAL;
  return kws.map((kw, i) =>
    reading({
      meterId: opts.meterId ?? 'MTR-000001',
      ts: start + i * step,
      kw,
      rawValue: kw === null ? '' : String(kw),
      flags: kw === null ? ['MISSING_READING'] : [],
    }),
  );
}

export function raw(partial: Partial<RawReading> = {}): RawReading {
  const meterId = partial.meterId ?? 'MTR-000001';
  const timestamp = partial.timestamp ?? '2024-03-04T00:00:00Z';
  const value = partial.value ?? '1';
  const unit = partial.unit ?? 'kW';
  return {
    meterId,
    timestamp,
    value,
    unit,
    raw: partial.raw ?? `${meterId},${timestamp},${value},${unit}`,
    source: partial.source ?? 'test',
    receivedAt: partial.receivedAt ?? T0 + INTERVAL,
  };
}

export function meter(partial: Partial<MeterInfo> = {}): MeterInfo {
  return {
    meterId: 'MTR-000001',
    region: 'north',
    neighborhood: 'N-01',
    meterType: 'residential',
    vacant: false,
    maxKw: null,
    ...partial,
  };
}

/** A registry of the given meters; with no arguments, the one default meter. */
export function registryOf(...meters: Partial<MeterInfo>[]): MeterRegistry {
  const infos = (meters.length === 0 ? [{}] : meters).map(meter);
  return new Map(infos.map((m) => [m.meterId, m]));
}

/** The registry side input over `registryOf(...meters)`, connected so stages can read it at once. */
export function registry(...meters: Partial<MeterInfo>[]): SideInput<MeterRegistry> {
  const side = new SideInput<MeterRegistry>('registry', of(registryOf(...meters)));
  side.connect((err) => {
    throw err;
  });
  return side;
}

export function quarantined(partial: Partial<QuarantineRecord> = {}): QuarantineRecord {
  return {
    meterId: 'MTR-000001',
    ts: T0,
    raw: '',
    reasons: [],
    source: 'test',
    quarantinedAt: PROCESSED_AT,
    ...partial,
  };
}

/** What a transform produced for some input, split by output. */
export interface FlowResult<O> {
  /** Every event in order, for tests pinning interleaving. */
  readonly events: FlowEvent<O>[];
  /** Main-output items, flattened over batches. */
  readonly main: O[];
  /** Items routed to `tag`, flattened over batches. */
  tagged<T>(tag: OutputTag<T>): T[];
}

/** Runs `transform` synchronously over `events` (no scheduler needed for stateless or keyed stages). */
export function runFlow<I, O>(transform: Transform<I, O>, events: readonly FlowEvent<I>[]): FlowResult<O> {
  const out: FlowEvent<O>[] = [];
  from(events)
    .pipe(transform)
    .subscribe({
      next: (e) => out.push(e),
      error: (err: unknown) => {
        throw err;
      },
    });
  return {
    events: out,
    main: out.flatMap((e) => (e.kind === 'data' ? [...e.items] : [])),
    tagged: <T>(tag: OutputTag<T>) =>
      out.flatMap((e) => (e.kind === 'tagged' && e.tag === tag.name ? (e.items as T[]) : [])),
  };
}

/** Runs `transform` over one batch holding `items`. */
export function runBatch<I, O>(transform: Transform<I, O>, items: readonly I[]): FlowResult<O> {
  return runFlow(transform, [dataEvent(items)]);
}

/** Every event `transform` emits for `events`, in order: for tests that pick several outputs of one run. */
export function run<I, O>(transform: Transform<I, O>, events: readonly FlowEvent<I>[]): FlowEvent<O>[] {
  return runFlow(transform, events).events;
}

/**
 * What the stage `make(store)` emits for `events()` when its worker stops after the first `cut` events and
 * a new one, its stage built first as a worker builds its graph, restores the binary checkpoint taken there
 * and goes on: the outputs of both, joined. `events` makes the input afresh (stages flag readings in place).
 */
export function runResumed<I, O>(
  make: (store: StateStore) => Transform<I, O>,
  events: () => FlowEvent<I>[],
  cut: number,
): FlowEvent<O>[] {
  const first = new StateStore();
  const before = run(make(first), events().slice(0, cut));
  const resumed = new StateStore();
  const transform = make(resumed);
  resumed.restore(deserializeSnapshot(first.beginSnapshot().finish()));
  return [...before, ...run(transform, events().slice(cut))];
}

/** Items of `out` routed to the output tag named `tag`, flattened over batches. */
export const tagged = <T>(out: readonly FlowEvent<unknown>[], tag: string): T[] =>
  out.flatMap((e) => (e.kind === 'tagged' && e.tag === tag ? (e.items as T[]) : []));
/** Faults a detector reported in `out`. */
export const faults = (out: readonly FlowEvent<unknown>[]) => tagged<FaultEvent>(out, FAULTS.name);
/** Alerts raised in `out`. */
export const alerts = (out: readonly FlowEvent<unknown>[]) => tagged<Alert>(out, ALERTS.name);
/** Readings passed on in `out`, flattened over batches. */
export const readingsOut = (out: readonly FlowEvent<Reading>[]) =>
  out.flatMap((e) => (e.kind === 'data' ? e.items : []));
/** Event times of the readings a detector excluded from analytics. */
export const excluded = (rs: readonly Reading[]) =>
  rs.filter((r) => r.flags.includes('fault_excluded')).map((r) => r.ts);
/** Whether a fault event opens (`active`) or clears (`cleared`) a fault, as its evidence says. */
export const status = (f: FaultEvent) => JSON.parse(f.evidence).status as string;
