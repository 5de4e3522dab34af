import { keyedProcess, type StateStore, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import {
  type BucketRing,
  bucketCount,
  bucketOf,
  type Cadence,
  clearFault,
  DAY_MS,
  excludeFromAnalytics,
  hours,
  type OpenFault,
  RING_TOTALS,
  raiseFault,
  ringArray,
  ringSlot,
  ringWindowStart,
  round,
} from './fault-internals.js';
import type { RuleProfile } from './rule-profile.js';

const FIELDS = 2;

/**
 * Per-meter state: up to 84 buckets of [rows, missing] — about 400–500 bytes of JSON for a 7-day window.
 * The ring's `fs` is the meter's first row.
 */
interface CommState extends BucketRing, Cadence {
  f: OpenFault | null;
}

/**
 * Communication-failure fault (B4.3: > 20 % missing readings over 7 days): the share of the meter's
 * expected readings that did not arrive, over the rolling `rollingWindowMs` window (2-hour buckets).
 *
 * - After fillGaps every interval of the meter has a row, so rows = expected readings. Missing = rows with
 *   no value from the meter: `missing` rows (gaps ≥ 4 h), NULL readings (`MISSING_READING`), and also
 *   interpolated rows — those readings never arrived either (fillGaps filled gaps < 4 h), and a meter that
 *   drops every third reading has a communication failure although all its gaps are short. Readings over the
 *   physical limit did arrive and count as present.
 * - Judged at every row once at least `commMinObservedMs` (1 day by default) of the meter has been
 *   observed, over the observed span up to the full window, so a 1-week run is judged from its second day:
 *   a share over a few hours is noise (one 4-hour gap is 100 %), and waiting for the full 7-day window the
 *   seed names would leave a meter unwatched in its first week; set it to 7 days for the literal reading. Strict:
 *   exactly 20 % is not a fault.
 * - windowStart is the start of the window judged (the meter's first row while the window is not full);
 *   detection tags FAULTS `comm_failure` + a `meter_fault` warning; the first row at which the share is
 *   back at or below the threshold clears it (final windowEnd = the last row in failure). Rows from the
 *   detecting one to the clearing one are flagged `fault_excluded`.
 * - Overlaps: missing rows and NULLs are neutral for every value rule, so a silent meter is reported only
 *   here (and by fillGaps' `missing_extended` alert, which is not a fault).
 */
export function detectCommFailure(
  store: StateStore,
  thresholds: Pick<RuleProfile['faults'], 'rollingWindowMs' | 'commMissingShare'> &
    Partial<Pick<RuleProfile['faults'], 'commMinObservedMs'>>,
  name = 'detectCommFailure',
): Transform<Reading, Reading> {
  const k = bucketCount(thresholds.rollingWindowMs);
  const tot = RING_TOTALS;
  const maxShare = thresholds.commMissingShare;
  const minObserved = thresholds.commMinObservedMs ?? DAY_MS;
  return keyedProcess<Reading, Reading, CommState>(store, {
    name,
    key: (r) => r.meterId,
    onElement: (ctx, r) => {
      let st = ctx.state;
      if (st === undefined) {
        st = { hb: bucketOf(r.ts), r: ringArray(FIELDS), fs: r.ts, lt: r.ts, iv: 0, f: null };
        ctx.state = st;
      }
      const step = r.ts - st.lt;
      if (step > 0) {
        if (st.iv === 0 || step < st.iv) st.iv = step;
        st.lt = r.ts;
      } else if (step < 0 || st.r[tot] > 0 || st.iv > 0) {
        // A row at or before the latest one (an over-limit reading rejoined beside its interval's row, a
        // duplicate) is not another expected reading.
        if (st.f !== null) excludeFromAnalytics(r);
        ctx.emit(r);
        return;
      }
      const off = ringSlot(st, k, FIELDS, r.ts);
      if (off >= 0) {
        const missing = r.kw === null || r.status !== 'measured' ? 1 : 0;
        const ring = st.r;
        ring[off] += 1;
        ring[off + 1] += missing;
        ring[tot] += 1;
        ring[tot + 1] += missing;
        const expected = ring[tot];
        const missed = ring[tot + 1];
        const windowStart = ringWindowStart(st, k);
        const observed = r.ts + st.iv - windowStart;
        if (observed >= minObserved) {
          const share = missed / expected;
          const f = st.f;
          if (share > maxShare) {
            if (f !== null) f.e = r.ts;
            else {
              st.f = raiseFault(
                ctx,
                r.meterId,
                'comm_failure',
                windowStart,
                r.ts,
                {
                  missingShare: round(share),
                  missing: missed,
                  expected: expected,
                  observedHours: hours(observed),
                  thresholdShare: maxShare,
                },
                `${round(share * 100, 1)} % of ${expected} expected readings missing over ${hours(observed)} h`,
              );
            }
          } else if (f !== null) {
            clearFault(ctx, r.meterId, 'comm_failure', f, r.ts, {
              missingShare: round(share),
              missing: missed,
              expected: expected,
            });
            st.f = null;
          }
        }
      }
      if (st.f !== null) excludeFromAnalytics(r);
      ctx.emit(r);
    },
  });
}
