/**
 * The meter as a dense key: parsing numbers each reading's meter once in the state store's `meters`
 * index, and every per-meter stage finds its state by that number (`KeyedProcessSpec.dense`).
 */
import type { DenseKey } from '../core/index.js';
import { METER_IX } from '../schemas/reading.js';

/** The state store's dense key index of meters. */
export const METER_KEYS = 'meters';

/** A per-meter stage's dense key: the number parsing gave the reading, if any. */
export const byMeter: DenseKey<{ readonly [METER_IX]?: number | undefined }> = {
  index: METER_KEYS,
  of: (r) => r[METER_IX],
};
