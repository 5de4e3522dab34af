import { type DenseKeyIndex, mapBatch, type Transform } from '../core/index.js';
import {
  METER_IX,
  type QuarantineRecord,
  type RawReading,
  type Reading,
  type ReadingFlag,
  type Season,
} from '../schemas/reading.js';
import { NO_FLAGS } from './add-flag.js';
import { type Lineage, QUARANTINE } from './outputs.js';
import { canonicalTimestamp, RecordIds } from './record-id.js';

/**
 * A reading fresh from parsing. It still carries when it was received, because timestamp sanity
 * (`validateReading`: future, backdated) is judged against the receiving server's clock, not the worker's.
 * The extra field is not a column; later stages see it as a plain `Reading`.
 */
export interface ParsedReading extends Reading {
  receivedAt: number;
  /** The source's interval in minutes, for `standardizeUnits` to turn energy into power; see `RawReading`. */
  intervalMinutes?: number | undefined;
  /** The optional measurements as sent, for `validateMeasurements`; see `RawReading`. */
  sentMeasurements?: RawReading['measurements'] | undefined;
}

/**
 * Step 1 of the pipeline: the raw strings of a reading become a typed draft.
 *
 * - Timestamp: ISO-8601 `YYYY-MM-DDThh:mm[:ss[.fff…]]` or `YYYY-MM-DD hh:mm[:ss[.fff…]]`, then `Z`, `±hh:mm`,
 *   `±hhmm` or nothing (= UTC). Fractions beyond milliseconds are truncated, as `Date.parse` does. Calendar
 *   fields are range-checked (no 30 February, no hour 24), where `Date.parse` would roll over. Anything else
 *   is quarantined as `invalid_timestamp`.
 * - Value: empty or blank is a NULL reading, kept with kw null and the `MISSING_READING` flag (B2.1); a
 *   decimal number (optional sign, fraction and exponent; surrounding blanks allowed) is the value; anything
 *   else (`abc`, `NaN`, `Infinity`, `0x10`, `1,5`, `1e999`) is quarantined as `invalid_value`.
 * - A timestamp with a non-zero fraction of a second is quarantined as `subsecond_timestamp` (times are
 *   whole seconds in every store: ClickHouse's DateTime has no fraction, and truncating would make two
 *   readings one row there but two in the lake). `.000` is accepted.
 * - Reasons accumulate in one quarantine record; its `ts` is null when the timestamp was unreadable.
 * - `recordId` is the idempotent id of B6.2 (see `record-id.ts`); the scoring fields get their
 *   best-case defaults for later stages to lower.
 * - With `meters` (the state store's dense key index of meters), each reading gets its meter's number
 *   (`Reading[METER_IX]`) and the index's instance of the id, for the per-meter stages to find their state by.
 */
export function parseReading(lineage: Lineage, meters?: DenseKeyIndex): Transform<RawReading, ParsedReading> {
  const pipelineVersion = lineage.pipelineVersion;
  const recordIds = new RecordIds();
  return mapBatch<RawReading, ParsedReading>((batch, out) => {
    // Once per batch: processing time is a property of the batch, and this keeps the loop call-free.
    const processedAt = lineage.processedAt();
    const ids = recordIds;
    // Per batch, so that no payload's text outlives its batch through a key sliced from it.
    const times = new TimeTexts();
    // Readings of a meter come in runs: the previous reading's number serves the next of the run.
    let lastId = '';
    let meterIx: number | undefined;
    let meterId = '';
    for (let i = 0; i < batch.length; i++) {
      const raw = batch[i]!;
      if (meters !== undefined && raw.meterId !== lastId) {
        lastId = raw.meterId;
        // A batch lists the fleet's meters in the order they were first numbered, hour after hour: the
        // number after the previous meter's is tried before a lookup (a compare of the very same string).
        const next = meterIx === undefined ? undefined : meters.keyOf(meterIx + 1);
        if (next === lastId) {
          meterIx = meterIx! + 1;
          meterId = next;
        } else {
          meterIx = meters.intern(lastId);
          meterId = meters.keyOf(meterIx)!;
        }
      }
      const time = times.of(raw.timestamp);
      const ts = time.ts;
      const kw = parseValue(raw.value);
      const badTs = Number.isNaN(ts);
      const badValue = kw !== null && Number.isNaN(kw);
      if (badTs || time.subsecond || badValue) {
        const reasons: string[] = [];
        if (badTs) reasons.push('invalid_timestamp');
        if (time.subsecond) reasons.push('subsecond_timestamp');
        if (badValue) reasons.push('invalid_value');
        const record: QuarantineRecord = {
          meterId: raw.meterId,
          ts: badTs ? null : ts,
          raw: raw.raw,
          reasons,
          source: raw.source,
          quarantinedAt: processedAt,
        };
        out.tag(QUARANTINE, record);
        continue;
      }
      const tsIso = time.iso;
      const reading: ParsedReading = {
        meterId: meters === undefined ? raw.meterId : meterId,
        ts,
        kw,
        rawValue: raw.value,
        rawUnit: raw.unit,
        status: 'measured',
        flags: sourceFlags(kw, raw),
        warnings: 0,
        qualityScore: 100,
        qualityTier: 'premium',
        grade: 'A',
        peakClass: 'standard',
        season: time.season,
        recordId: ids.id(raw.meterId, tsIso, raw.value, time.isoBytes),
        source: raw.source,
        processedAt,
        pipelineVersion,
        receivedAt: raw.receivedAt,
        intervalMinutes: raw.intervalMinutes,
        sentMeasurements: raw.measurements,
        // In the literal, not assigned after: a symbol key added later moves every reading to a new hidden
        // class with its own out-of-object property array (~40 bytes a reading, measured) on the hot path.
        [METER_IX]: meterIx,
      };
      if (meters !== undefined) out.emit(reading);
      else {
        // Without an index (tests of this stage alone) a reading has no such key at all.
        const { [METER_IX]: _unnumbered, ...plain } = reading;
        out.emit(plain);
      }
    }
  });
}

/** Initial flags: a NULL value's `MISSING_READING`, then the quality the source gave the value. */
function sourceFlags(kw: number | null, raw: RawReading): readonly ReadingFlag[] {
  const given = raw.sourceFlags;
  // Most readings have none: they share the frozen empty array (flags are added through `addFlag`).
  if (given === undefined || given.length === 0) return kw === null ? ['MISSING_READING'] : NO_FLAGS;
  return kw === null ? ['MISSING_READING', ...given] : [...given];
}

/** B5.2 by UTC month, a placeholder until `classifyPeak` tags the season in the utility's time zone. */
const SEASON_OF_MONTH: readonly Season[] = [
  'winter', // unused index 0
  'winter',
  'winter',
  'spring',
  'spring',
  'spring',
  'summer',
  'summer',
  'summer',
  'fall',
  'fall',
  'fall',
  'winter',
];

/** What parsing takes from a timestamp text: the same for every reading that repeats the text. */
interface ParsedTime {
  /** Epoch ms, NaN when the text is no timestamp of the accepted forms. */
  readonly ts: number;
  /** The canonical text the record id hashes (the text itself when already canonical); '' when unreadable. */
  readonly iso: string;
  /** A non-zero fraction of a second (quarantined: every store keeps whole seconds). */
  readonly subsecond: boolean;
  /** The placeholder season of the UTC month. */
  readonly season: Season;
  /** `iso` as the record id hashes it (`RecordIds.timeBytes`). */
  readonly isoBytes: Uint8Array | null;
}

/** Distinct timestamp texts a batch remembers the parse of: a backfill's batch has more than it repeats. */
const MAX_TIMES_PER_BATCH = 4096;

/**
 * A batch's timestamp texts, parsed once each. A payload goes through the same few timestamps meter after
 * meter, in the same order: the text after the one found last is compared first, and only a text out of
 * that cycle is looked up in the map (hash, probe and compare of a string: ~100 ns a reading, the largest
 * step of parsing after the reading itself and its record id). Map keys stay the first object of a text;
 * the cycle holds the latest one seen.
 */
class TimeTexts {
  /** Position of each text in `texts` (a text past the limit is parsed every time instead). */
  private readonly positions = new Map<string, number>();
  private readonly texts: string[] = [];
  private readonly parsed: ParsedTime[] = [];
  /** Position of the text found last. */
  private last = 0;

  of(text: string): ParsedTime {
    const texts = this.texts;
    const next = this.last + 1 < texts.length ? this.last + 1 : 0;
    if (next < texts.length && texts[next] === text) {
      // Kept as found: the rest of its payload carries this very string (the decoder's one per text), and a
      // string compared with itself costs no character comparison (another payload's equal one does).
      texts[next] = text;
      this.last = next;
      return this.parsed[next]!;
    }
    const at = this.positions.get(text);
    if (at !== undefined) {
      texts[at] = text;
      this.last = at;
      return this.parsed[at]!;
    }
    const time = parseTime(text);
    if (texts.length < MAX_TIMES_PER_BATCH) {
      this.positions.set(text, texts.length);
      this.last = texts.length;
      texts.push(text);
      this.parsed.push(time);
    }
    return time;
  }
}

const UNREADABLE: ParsedTime = {
  ts: Number.NaN,
  iso: '',
  subsecond: false,
  season: 'winter',
  isoBytes: null,
};

/** Everything parsing takes from one timestamp text. */
function parseTime(text: string): ParsedTime {
  const ts = parseTimestamp(text);
  if (Number.isNaN(ts)) return UNREADABLE;
  // ClickHouse keeps whole seconds (DateTime): 10:00:00.000 and 10:00:00.500 would be two readings in
  // the pipeline and the lake but one row there. A fraction is refused in every store alike.
  const subsecond = ts % 1000 !== 0;
  const iso = isCanonical(text) ? text : canonicalTimestamp(ts);
  // Years outside 0000–9999 (reachable only through an offset) have no month there; clock_reset rejects them.
  const season = SEASON_OF_MONTH[(iso.charCodeAt(5) - 48) * 10 + iso.charCodeAt(6) - 48] ?? 'winter';
  return { ts, iso, subsecond, season, isoBytes: RecordIds.timeBytes(iso) };
}

const DAY_MS = 86_400_000;
const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The string is already `YYYY-MM-DDTHH:MM:SSZ` (checked after a successful parse, so shape suffices). */
function isCanonical(s: string): boolean {
  return s.length === 20 && s.charCodeAt(10) === 84 /* T */ && s.charCodeAt(19) === 90 /* Z */;
}

/** Two decimal digits at `k`, or -1. */
function twoDigits(s: string, k: number): number {
  const a = s.charCodeAt(k) - 48;
  const b = s.charCodeAt(k + 1) - 48;
  // charCodeAt past the end is NaN, and NaN >>> 0 is 0: test the raw values, not an unsigned cast.
  if (!(a >= 0 && a <= 9 && b >= 0 && b <= 9)) return -1;
  return a * 10 + b;
}

/**
 * Epoch ms of an ISO-8601 timestamp in the accepted forms, or NaN. A character scan: a regex and
 * `Date.parse` cost several hundred ns a reading, this about 30.
 */
function parseTimestamp(s: string): number {
  let i = 0;
  let n = s.length;
  while (i < n && s.charCodeAt(i) <= 32) i++;
  while (n > i && s.charCodeAt(n - 1) <= 32) n--;
  if (n - i < 16) return Number.NaN;
  const y1 = twoDigits(s, i);
  const y2 = twoDigits(s, i + 2);
  const month = twoDigits(s, i + 5);
  const day = twoDigits(s, i + 8);
  const sep = s.charCodeAt(i + 10);
  const hour = twoDigits(s, i + 11);
  const minute = twoDigits(s, i + 14);
  if (
    y1 < 0 ||
    y2 < 0 ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59 ||
    s.charCodeAt(i + 4) !== 45 /* - */ ||
    s.charCodeAt(i + 7) !== 45 ||
    (sep !== 84 /* T */ && sep !== 116 /* t */ && sep !== 32) ||
    s.charCodeAt(i + 13) !== 58 /* : */
  )
    return Number.NaN;
  const year = y1 * 100 + y2;
  const leap = (year & 3) === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month]!)) return Number.NaN;
  let p = i + 16;
  let second = 0;
  let ms = 0;
  if (p < n && s.charCodeAt(p) === 58 /* : */) {
    second = twoDigits(s, p + 1);
    if (second < 0 || second > 59) return Number.NaN;
    p += 3;
    if (p < n && s.charCodeAt(p) === 46 /* . */) {
      p++;
      const start = p;
      let scale = 100;
      while (p < n) {
        const d = s.charCodeAt(p) - 48;
        if (!(d >= 0 && d <= 9)) break;
        ms += d * scale;
        scale /= 10;
        p++;
      }
      if (p === start) return Number.NaN;
      ms = Math.floor(ms);
    }
  }
  let offsetMinutes = 0;
  if (p < n) {
    const z = s.charCodeAt(p);
    if (z === 90 /* Z */ || z === 122 /* z */) {
      if (p + 1 !== n) return Number.NaN;
    } else if (z === 43 /* + */ || z === 45 /* - */) {
      const oh = twoDigits(s, p + 1);
      let q = p + 3;
      if (q < n && s.charCodeAt(q) === 58) q++;
      const om = twoDigits(s, q);
      if (oh < 0 || oh > 23 || om < 0 || om > 59 || q + 2 !== n) return Number.NaN;
      offsetMinutes = (z === 43 ? 1 : -1) * (oh * 60 + om);
    } else return Number.NaN;
  }
  return (
    daysFromCivil(year, month, day) * DAY_MS +
    ((hour * 60 + minute - offsetMinutes) * 60 + second) * 1000 +
    ms
  );
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/**
 * kW value of a decimal string: null for an empty (NULL) value, NaN when it is not a finite decimal
 * number. The grammar is checked by a scan because `Number()` alone accepts `0x10`, `Infinity` and `''`.
 *
 * A value of at most 15 significant digits and no exponent (every meter's) is computed during the scan
 * as `digits / 10^fraction`: both are exact doubles (< 2^53, and 10^k is exact up to k = 22), so the one
 * division rounds the exact decimal value correctly, which is what `Number()` returns; anything else is
 * left to `Number()`. Exported for its property test.
 */
export function parseValue(s: string): number | null {
  let i = 0;
  let n = s.length;
  // Blanks that Number() does not trim (control characters) make it return NaN: such a value skips the
  // exact path, so the result stays Number()'s.
  let plainBlanks = true;
  for (; i < n && s.charCodeAt(i) <= 32; i++) if (!jsWhitespace(s.charCodeAt(i))) plainBlanks = false;
  for (; n > i && s.charCodeAt(n - 1) <= 32; n--) if (!jsWhitespace(s.charCodeAt(n - 1))) plainBlanks = false;
  if (i === n) return null;
  let c = s.charCodeAt(i);
  const negative = c === 45; /* - */
  if (c === 43 /* + */ || negative) i++;
  let digits = 0;
  let mantissa = 0;
  let fraction = 0;
  for (; i < n; i++) {
    c = s.charCodeAt(i) - 48;
    if (!(c >= 0 && c <= 9)) break;
    mantissa = mantissa * 10 + c;
    digits++;
  }
  if (i < n && s.charCodeAt(i) === 46 /* . */) {
    for (i++; i < n; i++) {
      c = s.charCodeAt(i) - 48;
      if (!(c >= 0 && c <= 9)) break;
      mantissa = mantissa * 10 + c;
      digits++;
      fraction++;
    }
  }
  if (digits === 0) return Number.NaN;
  let exact = plainBlanks && digits <= MAX_EXACT_DIGITS;
  if (i < n && (s.charCodeAt(i) | 32) === 101 /* e, E */) {
    exact = false;
    i++;
    c = s.charCodeAt(i);
    if (c === 43 || c === 45) i++;
    const start = i;
    for (; i < n; i++) {
      c = s.charCodeAt(i) - 48;
      if (!(c >= 0 && c <= 9)) break;
    }
    if (i === start) return Number.NaN;
  }
  if (i !== n) return Number.NaN;
  if (exact) {
    // -0 would print as "-0" in some sinks and is no reading anyone sent on purpose.
    if (mantissa === 0) return 0;
    const v = mantissa / POWERS_OF_TEN[fraction]!;
    return negative ? -v : v;
  }
  // Number() trims blanks itself, so the original string is parsed without a slice.
  const v = Number(s);
  if (!Number.isFinite(v)) return Number.NaN;
  return v === 0 ? 0 : v;
}

/** Tab, line feed, vertical tab, form feed, carriage return, space: what Number() trims below 33. */
function jsWhitespace(c: number): boolean {
  return (c >= 9 && c <= 13) || c === 32;
}

/** Below 10^15 every digit string is an exact double; 16 digits may pass 2^53. */
const MAX_EXACT_DIGITS = 15;
/** 10^0 … 10^15, each exact. */
const POWERS_OF_TEN: readonly number[] = Array.from({ length: MAX_EXACT_DIGITS + 1 }, (_, k) => 10 ** k);
