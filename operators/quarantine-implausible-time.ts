/**
 * Quarantines readings whose event time lies implausibly far from the rest of the stream, before they
 * reach the watermark: one reading dated next year would otherwise move the watermark for good (every
 * real reading after it late), and one dated years back would make gap filling emit years of rows.
 */
import { mapBatch, type StateStore, type Transform } from '../core/index.js';
import { QUARANTINE } from './outputs.js';
import type { ParsedReading } from './parse-reading.js';
import { reconstructedRaw } from './record-id.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * The frontier is the later of the latest event time this stage accepted (kept in the store, so a
 * restarted worker judges as the killed one did) and the median event time of the batch: a stray
 * reading never moves the median, while a source resuming after an outage moves it with its whole
 * batch and is not mistaken for the future. A reading more than `farFutureMs` after the frontier is
 * quarantined as `far_future`, one more than `farPastMs` before it as `far_past`.
 */
export function quarantineImplausibleTime(
  store: StateStore,
  thresholds: Pick<RuleProfile['validation'], 'farFutureMs' | 'farPastMs'>,
  name = 'quarantineImplausibleTime',
): Transform<ParsedReading, ParsedReading> {
  const { farFutureMs, farPastMs } = thresholds;
  const latest = store.value<number | null>(`${name}/latest`, null);
  return mapBatch<ParsedReading, ParsedReading>((batch, out) => {
    if (batch.length === 0) return;
    const times = new Float64Array(batch.length);
    for (let i = 0; i < batch.length; i++) times[i] = batch[i]!.ts;
    times.sort();
    const median = times[(times.length - 1) >> 1]!;
    const known = latest.get();
    const frontier = known === null ? median : Math.max(known, median);
    const upper = frontier + farFutureMs;
    const lower = frontier - farPastMs;
    let accepted = known ?? Number.NEGATIVE_INFINITY;
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      const ts = r.ts;
      if (ts > upper || ts < lower) {
        out.tag(QUARANTINE, {
          meterId: r.meterId,
          ts,
          raw: reconstructedRaw(r),
          reasons: [ts > upper ? 'far_future' : 'far_past'],
          source: r.source,
          quarantinedAt: r.processedAt,
        });
        continue;
      }
      if (ts > accepted) accepted = ts;
      out.emit(r);
    }
    if (accepted !== Number.NEGATIVE_INFINITY && accepted !== known) latest.set(accepted);
  });
}
