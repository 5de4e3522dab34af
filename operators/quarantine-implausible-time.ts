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

/** A batch this large moves the frontier with its median (a source resuming after an outage). */
const MIN_READINGS_TO_MOVE = 16;

/**
 * The reference is the latest event time this stage accepted (kept in the store, so a restarted worker
 * judges as the killed one did); a batch of at least 16 readings whose median lies later moves it to
 * that median, so a source resuming after an outage is not mistaken for the future, while a stray
 * reading never moves it. From the reference, the batch's times are walked outwards in order: a reading
 * more than `farFutureMs` after the previous accepted one (or the reference) starts the `far_future`
 * part, one more than `farPastMs` before it the `far_past` part. Dense data of any span (a week in one
 * batch) has no such hole, whatever the batch's size.
 *
 * A backfill (`replay`, `import`) passes everything: its input spans whatever years it holds, in any file
 * order, and the minimum cadence and the cap on rows per gap still bound what gap filling can emit.
 */
export function quarantineImplausibleTime(
  store: StateStore,
  thresholds: Pick<RuleProfile['validation'], 'farFutureMs' | 'farPastMs'>,
  name = 'quarantineImplausibleTime',
  options: { readonly replay?: boolean } = {},
): Transform<ParsedReading, ParsedReading> {
  const { farFutureMs, farPastMs } = thresholds;
  if (options.replay === true) return (source) => source;
  const latest = store.value<number | null>(`${name}/latest`, null);
  return mapBatch<ParsedReading, ParsedReading>((batch, out) => {
    if (batch.length === 0) return;
    const times = new Float64Array(batch.length);
    for (let i = 0; i < batch.length; i++) times[i] = batch[i]!.ts;
    times.sort();
    const median = times[(times.length - 1) >> 1]!;
    const known = latest.get();
    const reference =
      known === null ? median : batch.length >= MIN_READINGS_TO_MOVE ? Math.max(known, median) : known;
    // The accepted span [lower, upper]: grown from the reference through the sorted times.
    let upper = reference;
    let k = 0;
    while (k < times.length && times[k]! < reference) k++;
    for (let j = k; j < times.length && times[j]! - upper <= farFutureMs; j++) upper = times[j]!;
    let lower = reference;
    for (let j = k - 1; j >= 0 && lower - times[j]! <= farPastMs; j--) lower = times[j]!;
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
