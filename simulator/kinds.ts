import type { FaultType } from '../schemas/reading.js';

/** Meter faults, named as the pipeline's `FaultType` so detections and labels compare directly. */
export const faultKinds = [
  'zero',
  'stuck',
  'overload',
  'low_variance',
  'erratic_spike',
  'comm_failure',
  'neighborhood_outlier',
] as const satisfies readonly FaultType[];
export type FaultKind = (typeof faultKinds)[number];

/** Record-level and gap anomalies, each injected on meters of its own. */
export const anomalyKinds = [
  'null_reading',
  'consecutive_nulls',
  'gap_short_interp',
  'gap_missing_short',
  'gap_missing_extended',
  'negative_value',
  'out_of_range',
  'future_timestamp',
  'clock_reset',
  'unknown_meter',
  'duplicate',
  'malformed_line',
  'bad_unit',
  'ambiguous_unit',
  'spike',
  'drop',
] as const;
export type AnomalyKind = (typeof anomalyKinds)[number];

/** Unit variations spread over the whole population rather than injected on chosen meters. */
export const unitKinds = ['unit_w', 'missing_unit'] as const;
export type UnitKind = (typeof unitKinds)[number];

export type LabelKind = FaultKind | AnomalyKind | UnitKind;

export const labelKinds: readonly LabelKind[] = [...faultKinds, ...anomalyKinds, ...unitKinds];

// A compile-time check that every fault the pipeline knows is simulated.
type MissingFaultKind = Exclude<FaultType, FaultKind>;
const everyFaultSimulated: MissingFaultKind extends never ? true : never = true;
void everyFaultSimulated;
