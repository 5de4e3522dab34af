import { parDo, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import type { Lineage } from './outputs.js';
import { QUARANTINE } from './outputs.js';
import { toQuarantineRecord } from './quarantine-record.js';
import { canonicalTimestamp, recordId } from './record-id.js';

/**
 * Takes readings above the physical limit (flag `over_limit`, kept in the stream so the overload rule could
 * see them) out of the stored output: each goes to QUARANTINE as `out_of_range`, and its interval gets a
 * `missing` row in `readings`, so the table keeps one row per meter and interval as it does for gaps.
 */
export function quarantineOverLimit(lineage: Lineage): Transform<Reading, Reading> {
  return parDo<Reading, Reading>((r, out) => {
    if (!r.flags.includes('over_limit')) {
      out.emit(r);
      return;
    }
    out.tag(QUARANTINE, toQuarantineRecord(r, ['out_of_range'], lineage));
    out.emit({
      ...r,
      kw: null,
      rawValue: '',
      rawUnit: '',
      status: 'missing',
      flags: r.flags.filter((f) => f === 'fault_excluded'),
      warnings: 0,
      recordId: recordId(r.meterId, canonicalTimestamp(r.ts), ''),
    });
  });
}
