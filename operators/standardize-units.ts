import { safeSlice, wellFormed } from '../codecs/unicode.js';
import { type Emitter, parDo, type SideInput, type Transform } from '../core/index.js';
import type { Reading } from '../schemas/reading.js';
import { addFlag } from './add-flag.js';
import { type MeterRegistry, QUARANTINE } from './outputs.js';
import { reconstructedRaw } from './record-id.js';
import type { RuleProfile } from './rule-profile.js';

const KILOWATT = 1;
const WATT = 2;
const KILOWATT_HOUR = 3;
const MISSING = 4;
const WATT_HOUR = 5;
const MEGAWATT_HOUR = 6;

/** kWh per unit of each energy unit. */
const KWH_PER_UNIT: Readonly<Record<number, number>> = {
  [KILOWATT_HOUR]: 1,
  [WATT_HOUR]: 0.001,
  [MEGAWATT_HOUR]: 1000,
};

/** Accepted spellings (B1.2 plus the input contract), lowercase; lookups fall back to lowercasing. */
const SPELLINGS: readonly [string, number][] = [
  ['kw', KILOWATT],
  ['kilowatt', KILOWATT],
  ['kilowatts', KILOWATT],
  ['w', WATT],
  ['watt', WATT],
  ['watts', WATT],
  ['kwh', KILOWATT_HOUR],
  ['wh', WATT_HOUR],
  // Lowercased, `mwh` is read as megawatt-hours: no meter reports milliwatt-hours.
  ['mwh', MEGAWATT_HOUR],
  ['', MISSING],
];

/**
 * Unit kind by spelling. The common casings are in the table so the hot path is one map lookup; only an
 * odd casing or padding pays for `trim().toLowerCase()`.
 */
const UNIT_KIND: ReadonlyMap<string, number> = new Map(
  SPELLINGS.flatMap(([s, kind]) => [
    [s, kind],
    [s.toUpperCase(), kind],
    [s.charAt(0).toUpperCase() + s.slice(1), kind],
    [s.replace('kw', 'kW'), kind],
    [s.replace('wh', 'Wh').replace('mWh', 'MWh'), kind],
  ]),
);

/** Unknown units are named in the reason; a garbage unit must not blow up the quarantine row. */
const MAX_UNIT_IN_REASON = 32;

/**
 * Step 2: every value in kW, rounded to `decimals` (B1.1–B1.3). Mutates the reading in place.
 *
 * - W / Watt / Watts (any case): ÷ 1000, flag `unit_converted`.
 * - kW / Kilowatt(s): as is.
 * - kWh, Wh, MWh (any case) are energy over an interval: with the interval known (the reading's own
 *   `intervalMinutes`, else the meter's cadence in the registry) the value becomes the interval's mean
 *   power, kW = kWh × 60 / minutes, flag `energy_converted`; `raw_value`/`raw_unit` keep what was sent.
 *   With no interval known, the seed's rule for hourly readings applies: the kWh of one hour equals its
 *   mean kW, so kWh is taken as kW (no flag) and Wh / MWh are scaled to kWh (flag `unit_converted`).
 * - Empty unit: inferred from the value: below `inferKwBelow` kW (flag `unit_inferred`), above
 *   `inferWattsAbove` W (÷ 1000, flags `unit_inferred` and `unit_converted`), at either bound or between
 *   them quarantined as `ambiguous_unit`.
 * - Any other unit: quarantined as `invalid_unit:<unit as sent, trimmed>`.
 * - A NULL reading passes untouched whatever its unit: there is no value to convert, and it is kept as
 *   `MISSING_READING` evidence of the interval (quarantining it would hide a connectivity problem).
 */
export function standardizeUnits<R extends Reading & { readonly intervalMinutes?: number | undefined }>(
  thresholds: RuleProfile['units'],
  registry?: SideInput<MeterRegistry>,
): Transform<R, R> {
  const { inferKwBelow, inferWattsAbove } = thresholds;
  const factor = 10 ** thresholds.decimals;
  const round = (v: number): number => {
    const scaled = v * factor;
    // Beyond 2^52 there are no fractions left to round (and ×factor may overflow to Infinity).
    if (!(Math.abs(scaled) < 4_503_599_627_370_496)) return v;
    // One ulp of nudge so a decimal tie stored just below it (1.00005 → 10000.4999…) rounds half up.
    return Math.round(scaled * (1 + Number.EPSILON)) / factor + 0;
  };
  return parDo<R, R>((r, out) => {
    const kw = r.kw;
    if (kw === null) {
      out.emit(r);
      return;
    }
    let kind = UNIT_KIND.get(r.rawUnit);
    if (kind === undefined) kind = UNIT_KIND.get(r.rawUnit.trim().toLowerCase());
    switch (kind) {
      case KILOWATT: {
        // Most values have no more decimals than kept: storing the same number again would box a new copy.
        const v = round(kw);
        if (v !== kw || v === 0) r.kw = v;
        break;
      }
      case KILOWATT_HOUR:
      case WATT_HOUR:
      case MEGAWATT_HOUR: {
        const kwh = kw * KWH_PER_UNIT[kind]!;
        const minutes = r.intervalMinutes ?? registry?.value.get(r.meterId)?.intervalMinutes;
        if (minutes != null && minutes > 0) {
          r.kw = round((kwh * 60) / minutes);
          addFlag(r, 'energy_converted');
        } else {
          r.kw = round(kwh);
          if (kind !== KILOWATT_HOUR) addFlag(r, 'unit_converted');
        }
        break;
      }
      case WATT:
        r.kw = round(kw / 1000);
        addFlag(r, 'unit_converted');
        break;
      case MISSING:
        if (kw < inferKwBelow) {
          r.kw = round(kw);
          addFlag(r, 'unit_inferred');
        } else if (kw > inferWattsAbove) {
          r.kw = round(kw / 1000);
          addFlag(r, 'unit_inferred');
          addFlag(r, 'unit_converted');
        } else {
          quarantine(r, 'ambiguous_unit', out);
          return;
        }
        break;
      default:
        quarantine(r, `invalid_unit:${unitExcerpt(r.rawUnit)}`, out);
        return;
    }
    out.emit(r);
  });
}

/**
 * The unit as sent, trimmed and cut to {@link MAX_UNIT_IN_REASON} UTF-16 units, never between the two
 * halves of a surrogate pair (a lone half has no UTF-8 form and the stores refuse it); a lone surrogate
 * that arrived in the unit is replaced by U+FFFD.
 */
export function unitExcerpt(unit: string): string {
  return wellFormed(safeSlice(unit.trim(), 0, MAX_UNIT_IN_REASON));
}

function quarantine(r: Reading, reason: string, out: Pick<Emitter<unknown>, 'tag'>): void {
  out.tag(QUARANTINE, {
    meterId: r.meterId,
    ts: r.ts,
    raw: reconstructedRaw(r),
    reasons: [reason],
    source: r.source,
    quarantinedAt: r.processedAt,
  });
}
