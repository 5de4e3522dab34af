import { mapBatch, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import type { Lineage } from './outputs.js';

/**
 * Stamps lineage (B6.1) on every reading: the processing time, read once per batch from the injected
 * lineage so the operator never reads the wall clock and one batch shares one time, and the pipeline
 * version. `source` was set when the reading was parsed.
 */
export function stampLineage(lineage: Lineage): Transform<Reading, Reading> {
  const version = lineage.pipelineVersion;
  return mapBatch<Reading, Reading>((items, out) => {
    const processedAt = lineage.processedAt();
    for (let i = 0; i < items.length; i++) {
      const r = items[i]!;
      r.processedAt = processedAt;
      r.pipelineVersion = version;
      out.emit(r);
    }
  });
}
