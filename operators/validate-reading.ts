import { mapBatch, type SideInput, type Transform } from '../core/index.js';
import { addFlag } from './add-flag.js';
import { type MeterRegistry, QUARANTINE } from './outputs.js';
import type { ParsedReading } from './parse-reading.js';
import { reconstructedRaw } from './record-id.js';
import type { RuleProfile } from './rule-profile.js';

/**
 * Readings whose only fault is being above the meter's physical limit must not be stored, yet the overload
 * rule ("> limit for ≥ 6 consecutive readings") exists to see exactly them. So they stay on the main output,
 * in stream order, flagged `over_limit`; the pipeline quarantines them as `out_of_range` after the fault
 * detectors. (A side output would reach the watermark stage as a batch of its own, ahead of the readings
 * it arrived with, and move the watermark past them.) Each reading lands exactly once: `in = readings +
 * quarantined + dead-lettered` holds. A reading over the limit with another problem as well (unknown
 * meter, bad timestamp …) is quarantined here with all its reasons.
 */

/**
 * Step 3, checks against the registry and the receiving clock (architecture doc, "Data Validation"; B3.1, B3.3).
 * Reasons accumulate in one quarantine record, in this order:
 * - `unknown_meter`: the meter id is not in the registry (the limit check is then skipped: no meter type);
 * - `negative_value`: kw < 0;
 * - `out_of_range`: kw above the limit — the registry's `max_kw`, else `residentialMaxKw` / `commercialMaxKw`
 *   by meter type; a value equal to the limit passes (a lone `out_of_range` stays on the main output flagged `over_limit`, see above);
 * - `clock_reset`: ts before `earliestValid` (1970, 2000-01-01 … of a meter that lost its clock);
 * - `future_timestamp`: ts more than `futureToleranceMs` after `receivedAt` (exactly at the tolerance passes).
 * A reading older than `receivedAt − backdatedAfterMs` is kept but flagged `backdated` with one validation
 * warning, except in replay/backfill mode where old readings are the point. NULL readings skip the value
 * checks only. Mutates the reading in place.
 */
export function validateReading(
  registry: SideInput<MeterRegistry>,
  thresholds: RuleProfile['validation'],
  mode: { replay: boolean },
): Transform<ParsedReading, ParsedReading> {
  const { residentialMaxKw, commercialMaxKw, futureToleranceMs, backdatedAfterMs } = thresholds;
  const earliestValid = Date.parse(thresholds.earliestValid);
  const flagBackdated = !mode.replay;
  return mapBatch<ParsedReading, ParsedReading>((batch, out) => {
    // Once per batch: a registry update applies from the next batch on, never halfway through one.
    const meters = registry.value;
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      // Allocated only for a reading that fails: the clean path stays allocation-free.
      let reasons: string[] | null = null;
      let overLimit = false;
      const meter = meters.get(r.meterId);
      if (meter === undefined) reasons = ['unknown_meter'];
      const kw = r.kw;
      if (kw !== null) {
        if (kw < 0) reasons = withReason(reasons, 'negative_value');
        else if (meter !== undefined) {
          // A meter registered from an imported file (`unknown` type) has no type limit to apply.
          const limit =
            meter.maxKw ??
            (meter.meterType === 'commercial'
              ? commercialMaxKw
              : meter.meterType === 'residential'
                ? residentialMaxKw
                : Number.POSITIVE_INFINITY);
          if (kw > limit) overLimit = true;
        }
      }
      const ts = r.ts;
      if (ts < earliestValid) reasons = withReason(reasons, 'clock_reset');
      else if (ts > r.receivedAt + futureToleranceMs) reasons = withReason(reasons, 'future_timestamp');
      if (reasons !== null) {
        // Only a known meter has a limit, so `out_of_range` never follows `unknown_meter`.
        if (overLimit) reasons.unshift('out_of_range');
        out.tag(QUARANTINE, {
          meterId: r.meterId,
          ts,
          raw: reconstructedRaw(r),
          reasons,
          source: r.source,
          quarantinedAt: r.processedAt,
        });
        continue;
      }
      if (flagBackdated && ts < r.receivedAt - backdatedAfterMs) {
        addFlag(r, 'backdated');
        r.warnings += 1;
      }
      if (overLimit) addFlag(r, 'over_limit');
      out.emit(r);
    }
  });
}

function withReason(reasons: string[] | null, reason: string): string[] {
  if (reasons === null) return [reason];
  reasons.push(reason);
  return reasons;
}
