/**
 * The idempotent record id of B6.2, `SHA256(meter_id + timestamp + value)`, and the canonical text of a
 * reading it is computed from. Pure functions (hashing is computation, not I/O).
 *
 * Which strings, exactly, and why:
 * - the meter id as received;
 * - the timestamp in one canonical UTC form, `YYYY-MM-DDTHH:MM:SSZ` (`.sssZ` only when the instant has
 *   milliseconds), so `2024-03-04 01:00:00+01:00` and `2024-03-04T00:00:00Z` — the same instant written
 *   two ways, e.g. by a gateway and by a backfill — get the same id;
 * - the value string as received, trimmed: the id must exist before unit standardization, and a
 *   re-delivered file reproduces the same text exactly.
 * They are joined with `|`, which occurs in none of them in valid data: plain concatenation is ambiguous
 * (`MTR-1` + `12…` and `MTR-11` + `2…` would share a prefix), a separator makes the text injective.
 *
 * The unit is not part of the id (the seed names three parts), so `1 W` and `1 kW` of the same meter and
 * instant share an id; `dedupeReadings` therefore tells duplicates from conflicts by the standardized
 * kW, not by the id.
 *
 * Cost: `crypto.hash` (one-shot, Node ≥ 20.12) is ~250 ns per reading on this machine against ~800 ns
 * for `createHash().update().digest()`; it is the most expensive single step of parsing.
 */
import { hash } from 'node:crypto';
import type { Reading } from '../schemas/reading.js';

/** Hex SHA-256 of `meterId|tsIso|value.trim()`; `tsIso` must be `canonicalTimestamp(ts)`. */
export function recordId(meterId: string, tsIso: string, value: string): string {
  return hash('sha256', `${meterId}|${tsIso}|${value.trim()}`, 'hex');
}

/** Bytes a {@link RecordIds} hashes in place; a longer text takes {@link recordId}. */
const MAX_HASHED_BYTES = 1024;

/**
 * `recordId` for a parse loop, without building the text to hash: the bytes of `meterId|tsIso|value`
 * are written into one reused buffer and hashed from there, and the meter id's bytes stay in place while
 * the meter repeats (a payload holds each meter's readings in a run). The strings `recordId` concatenates
 * (four a reading, then a flat copy for hashing, ~200 bytes) were most of what parsing allocated besides
 * the reading itself. Only ASCII text is written this way, where a character is its UTF-8 byte; anything
 * else, or a text too long, goes to {@link recordId}, so the id is always the same.
 */
export class RecordIds {
  private readonly bytes = new Uint8Array(MAX_HASHED_BYTES);
  /** `views[n]`: the first n bytes, one view per length so hashing allocates no view. */
  private readonly views: Uint8Array[] = [];
  private meterId: string | undefined;
  /** Bytes of `meterId|` at the buffer's start; -1 when the meter id is not plain ASCII. */
  private prefix = -1;

  /**
   * `tsBytes`, when given, must be `timeBytes(tsIso)`: a caller that sees the same timestamp for many
   * readings keeps its bytes, which are then copied at once instead of read from the text a character at
   * a time (a timestamp sliced from a payload is read through its slice: ~70 ns against ~30).
   */
  id(meterId: string, tsIso: string, value: string, tsBytes?: Uint8Array | null): string {
    if (meterId !== this.meterId) {
      this.meterId = meterId;
      this.prefix = this.put(meterId, 0, meterId.length, 0);
      if (this.prefix >= 0) this.bytes[this.prefix++] = PIPE;
    }
    let p = this.prefix;
    if (p >= 0) {
      if (tsBytes == null) p = this.put(tsIso, 0, tsIso.length, p);
      else if (p + tsBytes.length > MAX_HASHED_BYTES - 1) p = -1;
      else {
        this.bytes.set(tsBytes, p);
        p += tsBytes.length;
      }
    }
    if (p >= 0) {
      this.bytes[p++] = PIPE;
      // `trim()` of an ASCII value: what it removes below U+0080 is tab to carriage return and space; a
      // value with other characters is not written here, so Unicode blanks are left to `trim()`.
      let from = 0;
      let to = value.length;
      while (from < to && asciiBlank(value.charCodeAt(from))) from++;
      while (to > from && asciiBlank(value.charCodeAt(to - 1))) to--;
      p = this.put(value, from, to, p);
    }
    if (p < 0) return recordId(meterId, tsIso, value);
    let view = this.views[p];
    if (view === undefined) {
      view = this.bytes.subarray(0, p);
      this.views[p] = view;
    }
    return hash('sha256', view, 'hex');
  }

  /** The bytes `id` writes for a timestamp text, to pass it again; null when it is not plain ASCII. */
  static timeBytes(tsIso: string): Uint8Array | null {
    const bytes = new Uint8Array(tsIso.length);
    for (let i = 0; i < tsIso.length; i++) {
      const c = tsIso.charCodeAt(i);
      if (c >= 0x80) return null;
      bytes[i] = c;
    }
    return bytes;
  }

  /** Writes `s[from, to)` at `at` when it is ASCII and fits; the end position, or -1. */
  private put(s: string, from: number, to: number, at: number): number {
    if (at + to - from > MAX_HASHED_BYTES - 1) return -1;
    const bytes = this.bytes;
    for (let i = from; i < to; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return -1;
      bytes[at++] = c;
    }
    return at;
  }
}

const PIPE = 0x7c;

function asciiBlank(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

const TWO_DIGITS: readonly string[] = Array.from({ length: 100 }, (_, i) => (i < 10 ? `0${i}` : `${i}`));
const DAY_MS = 86_400_000;

/**
 * `YYYY-MM-DDTHH:MM:SSZ` (with `.sss` when the milliseconds are not zero). Equal to
 * `new Date(ts).toISOString()` minus a zero millisecond part, without allocating a Date.
 */
export function canonicalTimestamp(ts: number): string {
  // A fleet reports on the same interval starts: most calls repeat a time seen a moment ago.
  const cached = canonicalCache.get(ts);
  if (cached !== undefined) return cached;
  const text = formatCanonical(ts);
  if (canonicalCache.size >= MAX_CACHED_TIMESTAMPS) canonicalCache.clear();
  canonicalCache.set(ts, text);
  return text;
}

const canonicalCache = new Map<number, string>();
const MAX_CACHED_TIMESTAMPS = 100_000;

function formatCanonical(ts: number): string {
  const days = Math.floor(ts / DAY_MS);
  let msOfDay = ts - days * DAY_MS;
  // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), integer arithmetic only.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 0 || year > 9999 || !Number.isFinite(ts)) return new Date(ts).toISOString();
  const ms = msOfDay % 1000;
  msOfDay = (msOfDay - ms) / 1000;
  const sec = msOfDay % 60;
  msOfDay = (msOfDay - sec) / 60;
  const min = msOfDay % 60;
  const hour = (msOfDay - min) / 60;
  const yyyy = year >= 1000 ? `${year}` : `${year}`.padStart(4, '0');
  const base = `${yyyy}-${TWO_DIGITS[month]}-${TWO_DIGITS[day]}T${TWO_DIGITS[hour]}:${TWO_DIGITS[min]}:${TWO_DIGITS[sec]}`;
  return ms === 0 ? `${base}Z` : `${base}.${`${ms}`.padStart(3, '0')}Z`;
}

/**
 * The record a quarantine row shows for a reading held back after parsing: the input-contract columns
 * `meter_id,timestamp,value,unit` rebuilt from the reading (timestamp canonical, value and unit as
 * received). The original line is not carried through the stream: it would double the memory of every
 * reading and of every checkpoint of the buffering stages.
 */
export function reconstructedRaw(reading: Reading): string {
  return `${reading.meterId},${canonicalTimestamp(reading.ts)},${reading.rawValue},${reading.rawUnit}`;
}
