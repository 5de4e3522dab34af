/**
 * The fast path for the common message of a meter that sends each reading on its own: a flat JSON object
 * of exactly `meter_id`, `timestamp`, `value` and `unit`. It reads the payload's bytes in one pass and
 * returns the very reading `decodeReadings` would, or `undefined` for anything it is not sure of (the
 * caller then runs the full decoder, which also gives every rejection its reason). Pure but for the
 * decoders' shared table of interned keys.
 */

import type { RawReading } from '../schemas/reading.js';
import { InternCursor } from './decode.js';

/**
 * Larger payloads go to the full decoder: a reading's message is ~100 bytes, and the size limit and the
 * decoder's other checks stay in one place.
 */
const MAX_FAST_BYTES = 1024;

/**
 * Node's native Latin-1 decoder (undeclared in its types), which takes any `Uint8Array`: one call per
 * payload, ~3× cheaper than a `TextDecoder` on ~100 bytes.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(from: number, to: number): string })
  .latin1Slice;

/** Where the last message's meter id and unit were found among the interned keys (see `InternCursor`). */
const meterIds = new InternCursor();
const units = new InternCursor();

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;

/** Which field a key names: the bit it sets once seen. */
function keyBit(text: string, from: number, to: number): number {
  switch (to - from) {
    case 8:
      return text.startsWith('meter_id', from) ? 1 : 0;
    case 9:
      return text.startsWith('timestamp', from) ? 2 : 0;
    case 5:
      return text.startsWith('value', from) ? 4 : 0;
    case 4:
      return text.startsWith('unit', from) ? 8 : 0;
    default:
      return 0;
  }
}

/**
 * A number token `JSON.stringify` writes back unchanged (so `raw` is the payload as sent); `-0`, `1.50`,
 * `1e2` and the like are left to the full decoder.
 */
function canonicalNumber(token: string): boolean {
  const n = Number(token);
  return Number.isFinite(n) && String(n) === token;
}

/** Printable ASCII but `"` and `\`: a JSON string of these is its own escape-free, well-formed text. */
function plainByte(b: number): boolean {
  return b >= 0x20 && b <= 0x7e && b !== QUOTE && b !== BACKSLASH;
}

/**
 * The reading of a one-reading JSON payload, exactly as `decodeReadings` (JSON, no line references on a
 * lone object) returns it, when the payload is `{"k":v,…}` without whitespace, with each of the four
 * keys once (any order) and no other, each value a string of printable ASCII without escapes or a number
 * in its canonical form; `undefined` for any other payload, to be decoded in full.
 */
export function decodeOneReadingJson(
  payload: Uint8Array,
  source: string,
  receivedAt: number,
): RawReading | undefined {
  const n = payload.length;
  if (n < 2 || n > MAX_FAST_BYTES || payload[0] !== OPEN || payload[n - 1] !== CLOSE) return undefined;
  // Every byte is checked below (structure, a known key, a plain string or number byte) to be printable
  // ASCII, so Latin-1 decodes it exactly as UTF-8 would; any other payload returns before it is used.
  const text = latin1Slice.call(payload, 0, n);
  let seen = 0;
  let timestamp = '';
  let value = '';
  let meterFrom = 0;
  let meterTo = 0;
  let unitFrom = 0;
  let unitTo = 0;
  let i = 1;
  for (;;) {
    if (payload[i] !== QUOTE) return undefined;
    const keyStart = i + 1;
    i = keyStart;
    while (i < n && payload[i] !== QUOTE) i++;
    const bit = i < n ? keyBit(text, keyStart, i) : 0;
    if (bit === 0 || (seen & bit) !== 0 || payload[i + 1] !== COLON) return undefined;
    seen |= bit;
    i += 2;
    let fieldFrom: number;
    let fieldTo: number;
    /** The field's text when already sliced (a number, checked below). */
    let sliced: string | undefined;
    if (payload[i] === QUOTE) {
      fieldFrom = i + 1;
      i = fieldFrom;
      while (i < n && plainByte(payload[i]!)) i++;
      if (payload[i] !== QUOTE) return undefined;
      fieldTo = i;
      i++;
    } else {
      fieldFrom = i;
      while (i < n && payload[i] !== COMMA && payload[i] !== CLOSE) {
        const b = payload[i]!;
        // Digits, sign, point, exponent: anything else (a literal, whitespace) is not for this path.
        if (!((b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2b || b === 0x2e || b === 0x65 || b === 0x45))
          return undefined;
        i++;
      }
      fieldTo = i;
      sliced = text.slice(fieldFrom, fieldTo);
      if (!canonicalNumber(sliced)) return undefined;
    }
    // The meter id and unit are interned from the text in place once the payload is known to be read
    // here: most are the key seen a message before, or the next in the fleet's order.
    if (bit === 1) {
      meterFrom = fieldFrom;
      meterTo = fieldTo;
    } else if (bit === 8) {
      unitFrom = fieldFrom;
      unitTo = fieldTo;
    } else if (bit === 2) timestamp = sliced ?? text.slice(fieldFrom, fieldTo);
    else value = sliced ?? text.slice(fieldFrom, fieldTo);
    if (payload[i] === COMMA) {
      i++;
      continue;
    }
    if (payload[i] === CLOSE && i === n - 1 && seen === 15) break;
    return undefined;
  }
  return {
    meterId: meterIds.take(text, meterFrom, meterTo),
    timestamp,
    value,
    unit: units.take(text, unitFrom, unitTo),
    raw: text,
    source,
    receivedAt,
  };
}
