import { outputTag } from '../core/index.js';
import type { Alert, FaultEvent, MeterInfo, QuarantineRecord } from '../schemas/reading.js';

/** Records held back from `readings`, with their reasons. */
export const QUARANTINE = outputTag<QuarantineRecord>('quarantine');
/** Detected meter faults. */
export const FAULTS = outputTag<FaultEvent>('faults');
/** Alerts for the alerts table and `greenstream.alerts.<severity>.<kind>`. */
export const ALERTS = outputTag<Alert>('alerts');

/** The meter registry as a side input value. */
export type MeterRegistry = ReadonlyMap<string, MeterInfo>;

/** Lineage stamped on every record, fixed per run so operators never read the wall clock. */
export interface Lineage {
  readonly pipelineVersion: string;
  /** Processing time of the current batch; injected by the pipeline driver. */
  readonly processedAt: () => number;
}
