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
    const n = batch.length;
    const times = new Float64Array(n);
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const ts = batch[i]!.ts;
      times[i] = ts;
      if (ts < min) min = ts;
      if (ts > max) max = ts;
    }
    const known = latest.get();
    const reference =
      known !== null && n < MIN_READINGS_TO_MOVE
        ? known
        : Math.max(known ?? Number.NEGATIVE_INFINITY, median(times));
    let upper: number;
    let lower: number;
    if (max - reference <= farFutureMs && reference - min <= farPastMs) {
      // The usual batch: no time lies beyond a tolerance of the reference, so the walks below would accept
      // every time; the sort they need is skipped.
      upper = Math.max(reference, max);
      lower = Math.min(reference, min);
    } else {
      times.sort();
      // The accepted span [lower, upper]: grown from the reference through the sorted times.
      upper = reference;
      let k = 0;
      while (k < n && times[k]! < reference) k++;
      for (let j = k; j < n && times[j]! - upper <= farFutureMs; j++) upper = times[j]!;
      lower = reference;
      for (let j = k - 1; j >= 0 && lower - times[j]! <= farPastMs; j--) lower = times[j]!;
    }
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

/** Rounds of partitioning before {@link median} gives up on selection and sorts (adversarial orders). */
const MAX_SELECT_ROUNDS = 64;

/**
 * The lower median, `sorted[(n - 1) >> 1]`, by selection (Hoare's quickselect with a median-of-three
 * pivot): linear on the usual batch, where a sort of 200,000 times costs more than the rest of the stage.
 * Reorders `times`. Exported for its property test.
 */
export function median(times: Float64Array): number {
  const k = (times.length - 1) >> 1;
  let lo = 0;
  let hi = times.length - 1;
  for (let round = 0; lo < hi; round++) {
    if (round === MAX_SELECT_ROUNDS) {
      times.sort();
      return times[k]!;
    }
    const mid = (lo + hi) >> 1;
    const a = times[lo]!;
    const b = times[mid]!;
    const c = times[hi]!;
    const pivot = Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (times[i]! < pivot) i++;
      while (times[j]! > pivot) j--;
      if (i <= j) {
        const t = times[i]!;
        times[i] = times[j]!;
        times[j] = t;
        i++;
        j--;
      }
    }
    // [lo, j] ≤ pivot ≤ [i, hi], and the values between j and i equal the pivot.
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return times[k]!;
  }
  return times[k]!;
}
