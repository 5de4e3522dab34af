/**
 * The meter-quality job's side of the epoch contracts: what its source pulls carry (records, whole
 * messages dead-lettered, record-level quarantine), the buffers the graph's outputs collect in, the batch
 * of outputs the sinks write, and the running totals a checkpoint keeps.
 */
import type { Observable, Observer } from 'rxjs';
import { dataEvent, type FlowEvent } from '../core/index.js';
import type { PeakExclusion } from '../operators/peak-exclusions.js';
import type {
  Alert,
  DailyPeak,
  FaultEvent,
  HourlyConsumption,
  QuarantineRecord,
  RawReading,
  Reading,
} from '../schemas/reading.js';
import type { EpochBatch, EpochGraph, Pull } from './contracts.js';
import type { MeterQualitySink } from './meter-quality.js';

/** One pull from a source: decoded records, plus how many whole messages or files it dead-lettered. */
export interface SourceBatch extends Pull {
  readonly records: readonly RawReading[];
  /** Records that never became a RawReading because their whole message/file could not be decoded. */
  readonly deadLettered: number;
  /** Record-level decode failures already turned into quarantine records by the source. */
  readonly quarantined: readonly QuarantineRecord[];
}

/** Everything the graph produced since the last write of outputs, ready to be written. */
export interface OutputBatch extends EpochBatch {
  readonly readings: Reading[];
  readonly quarantine: QuarantineRecord[];
  readonly faults: FaultEvent[];
  readonly alerts: Alert[];
  readonly hourly: HourlyConsumption[];
  readonly dailyPeaks: DailyPeak[];
  /** What the daily peaks left out (empty or absent without exclusions). */
  readonly peakExclusions?: PeakExclusion[];
  /** The hourly stage's watermark as of this batch (undefined: it did not move since the last one). */
  readonly hourlyWatermark?: number;
  /** Counts for the quality log. */
  readonly recordsIn: number;
  readonly deadLettered: number;
}

export interface RunTotals {
  recordsIn: number;
  readings: number;
  measured: number;
  quarantined: number;
  deadLettered: number;
  faults: number;
  alerts: number;
}

export const emptyTotals = (): RunTotals => ({
  recordsIn: 0,
  readings: 0,
  measured: 0,
  quarantined: 0,
  deadLettered: 0,
  faults: 0,
  alerts: 0,
});

export function addTotals(t: RunTotals, b: OutputBatch): RunTotals {
  let measured = 0;
  for (const r of b.readings) if (r.status === 'measured') measured++;
  return {
    recordsIn: t.recordsIn + b.recordsIn,
    readings: t.readings + b.readings.length,
    measured: t.measured + measured,
    quarantined: t.quarantined + b.quarantine.length,
    deadLettered: t.deadLettered + b.deadLettered,
    faults: t.faults + b.faults.length,
    alerts: t.alerts + b.alerts.length,
  };
}

/** The graph's outputs since the last write, with the pulls' counts for the quality log. */
export class OutputBuffers implements MeterQualitySink {
  private readingsBuf: Reading[] = [];
  private quarantineBuf: QuarantineRecord[] = [];
  private faultsBuf: FaultEvent[] = [];
  private alertsBuf: Alert[] = [];
  private hourlyBuf: HourlyConsumption[] = [];
  private peaksBuf: DailyPeak[] = [];
  private exclusionsBuf: PeakExclusion[] = [];
  private watermark: number | undefined;
  /** A moved watermark alone is worth a write (it is published to the cross-meter stage). */
  constructor(private readonly writesWatermark = false) {}
  recordsIn = 0;
  deadLettered = 0;

  readings(b: readonly Reading[]): void {
    for (const r of b) this.readingsBuf.push(r);
  }
  quarantine(b: readonly QuarantineRecord[]): void {
    for (const r of b) this.quarantineBuf.push(r);
  }
  faults(b: readonly FaultEvent[]): void {
    for (const r of b) this.faultsBuf.push(r);
  }
  alerts(b: readonly Alert[]): void {
    for (const r of b) this.alertsBuf.push(r);
  }
  hourly(b: readonly HourlyConsumption[]): void {
    for (const r of b) this.hourlyBuf.push(r);
  }
  dailyPeaks(b: readonly DailyPeak[]): void {
    for (const r of b) this.peaksBuf.push(r);
  }
  peakExclusions(b: readonly PeakExclusion[]): void {
    for (const r of b) this.exclusionsBuf.push(r);
  }
  hourlyWatermark(time: number): void {
    this.watermark = time;
  }

  get rows(): number {
    return this.readingsBuf.length + this.quarantineBuf.length + this.hourlyBuf.length;
  }

  get empty(): boolean {
    return this.recordsIn === 0 && this.deadLettered === 0 && this.countsOnlyOrEmpty;
  }

  /** No output row of any kind buffered (counts aside). */
  get countsOnlyOrEmpty(): boolean {
    return (
      this.rows === 0 &&
      this.faultsBuf.length === 0 &&
      this.alertsBuf.length === 0 &&
      this.peaksBuf.length === 0 &&
      this.exclusionsBuf.length === 0 &&
      (!this.writesWatermark || this.watermark === undefined)
    );
  }

  take(checkpoint: number, flush: number): OutputBatch {
    const batch: OutputBatch = {
      checkpoint,
      flush,
      readings: this.readingsBuf,
      quarantine: this.quarantineBuf,
      faults: this.faultsBuf,
      alerts: this.alertsBuf,
      hourly: this.hourlyBuf,
      dailyPeaks: this.peaksBuf,
      peakExclusions: this.exclusionsBuf,
      ...(this.watermark === undefined ? {} : { hourlyWatermark: this.watermark }),
      recordsIn: this.recordsIn,
      deadLettered: this.deadLettered,
    };
    this.readingsBuf = [];
    this.quarantineBuf = [];
    this.faultsBuf = [];
    this.alertsBuf = [];
    this.hourlyBuf = [];
    this.peaksBuf = [];
    this.exclusionsBuf = [];
    this.watermark = undefined;
    this.recordsIn = 0;
    this.deadLettered = 0;
    return batch;
  }
}

/** Wires a graph fed with raw readings and emitting into a `MeterQualitySink` into the epoch contracts. */
export function meterQualityEpochGraph(
  connect: (input: Observable<FlowEvent<RawReading>>, sink: MeterQualitySink) => Observable<unknown>,
  writesWatermark = false,
): EpochGraph<SourceBatch, OutputBatch, RunTotals> {
  const buffers = new OutputBuffers(writesWatermark);
  return {
    connect: (input) => connect(input as Observable<FlowEvent<RawReading>>, buffers),
    accept(pull: SourceBatch, input: Observer<FlowEvent<unknown>>): number {
      const pulled = pull.records.length + pull.quarantined.length;
      buffers.recordsIn += pulled;
      buffers.deadLettered += pull.deadLettered;
      if (pull.quarantined.length > 0) buffers.quarantine(pull.quarantined);
      if (pull.records.length > 0) input.next(dataEvent(pull.records));
      return pulled + pull.deadLettered;
    },
    get bufferedRows() {
      return buffers.rows;
    },
    get empty() {
      return buffers.empty;
    },
    get countsOnly() {
      return !buffers.empty && buffers.countsOnlyOrEmpty;
    },
    take: (checkpoint, flush) => buffers.take(checkpoint, flush),
    initialTotals: emptyTotals,
    addTotals,
  };
}
