import type { QuarantineRecord, Reading } from '../schemas/reading.js';
import type { Lineage } from './outputs.js';
import { reconstructedRaw } from './record-id.js';

/** The quarantine row for a reading held back after parsing (its raw line rebuilt from what was received). */
export function toQuarantineRecord(r: Reading, reasons: string[], lineage: Lineage): QuarantineRecord {
  return {
    meterId: r.meterId,
    ts: r.ts,
    raw: reconstructedRaw(r),
    reasons,
    source: r.source,
    quarantinedAt: lineage.processedAt(),
  };
}
