/** The in-memory dataset the injectors edit and the emitter renders. */
import type { SimulationLabel } from './labels.js';
import type { ResolvedOptions } from './options.js';
import type { SimRegistry } from './registry.js';

/** The line for this interval is sent without a unit. */
export const FLAG_MISSING_UNIT = 1;
/** The line is repeated at the end of its file. */
export const FLAG_DUPLICATE_SAME_FILE = 2;
/** The line is repeated at the start of the gateway's next-hour file. */
export const FLAG_DUPLICATE_NEXT_FILE = 4;
/** `overrides` holds a replacement for part or all of the line. */
export const FLAG_OVERRIDE = 8;

export interface SlotOverride {
  /** The whole line, written verbatim (malformed lines). */
  readonly line?: string;
  readonly timestamp?: string;
  readonly value?: string;
  /** `''` writes an empty unit. */
  readonly unit?: string;
}

/** A reading from a meter the registry does not know. */
export interface ExtraReading {
  readonly meterId: string;
  readonly slot: number;
  /** kW × 10,000. */
  readonly value: number;
  readonly unit: string;
}

/** A label under construction: `lineSlots` are rendered into `lines` once the data is final. */
export interface PendingLabel extends SimulationLabel {
  lineSlots?: number[];
  extraLines?: { gateway: number; readings: ExtraReading[] };
}

export interface Dataset {
  readonly options: ResolvedOptions;
  readonly registry: SimRegistry;
  /** meter × slot, kW × 10,000, or MISSING / NULL_VALUE. */
  readonly values: Int32Array;
  readonly flags: Uint8Array;
  /** Keyed by meter × slots + slot. */
  readonly overrides: Map<number, SlotOverride>;
  /** Keyed by hour × gateways + gateway. */
  readonly extras: Map<number, ExtraReading[]>;
  readonly labels: PendingLabel[];
}
