import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { decodeOneReadingJson } from '../../codecs/one-reading-json.js';

const SOURCE = 'stream:READINGS:42';
const RECEIVED_AT = 1_710_115_200_000;

/** What the full decoder makes of a message's payload, as `takeMessage` calls it. */
function full(payload: Uint8Array) {
  return decodeReadings(payload, {
    source: SOURCE,
    receivedAt: RECEIVED_AT,
    contentType: null,
    lineRefs: true,
  });
}

/** The fast path either declines or returns exactly the full decoder's one reading, fields in the same order. */
function agrees(payload: Uint8Array): boolean {
  const fast = decodeOneReadingJson(payload, SOURCE, RECEIVED_AT);
  if (fast === undefined) return true;
  const decoded = full(payload);
  expect(decoded.ok).toBe(true);
  if (!decoded.ok) return false;
  expect(decoded.failures).toEqual([]);
  expect(decoded.readings).toHaveLength(1);
  expect(Object.entries(fast)).toEqual(Object.entries(decoded.readings[0]!));
  return true;
}

const KEYS = ['meter_id', 'timestamp', 'value', 'unit'] as const;

/** Values a meter may send: strings of any characters (escapes, non-ASCII, lone surrogates), edge numbers, literals. */
const value = fc.oneof(
  fc.string({ maxLength: 24 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 24 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.double(),
  fc.constantFrom(0, -0, 1e21, 1e-7, 1.5, -2, 123456789012345680000, Number.MAX_VALUE, Number.MIN_VALUE),
  fc.constantFrom(null, true, false, {}, [], [1], { a: 1 }),
);

/** A JSON object near the reading's shape: some of the four keys, maybe twice, maybe others, in any order. */
const nearReading = fc
  .tuple(
    fc.subarray([...KEYS, ...KEYS, 'voltage', 'location', 'meterId', '__proto__'], {
      minLength: 0,
      maxLength: 7,
    }),
    fc.array(value, { minLength: 7, maxLength: 7 }),
    fc.boolean(),
  )
  .chain(([keys, values, spaced]) =>
    fc.shuffledSubarray(keys, { minLength: keys.length, maxLength: keys.length }).map((order) => {
      const parts = order.map((k, i) => `${JSON.stringify(k)}:${JSON.stringify(values[i]) ?? 'null'}`);
      return spaced ? `{ ${parts.join(', ')} }` : `{${parts.join(',')}}`;
    }),
  );

/** Printable ASCII but `"` and `\\`: characters a JSON string carries without escapes. */
const plainChar = fc
  .integer({ min: 0x20, max: 0x7e })
  .filter((c) => c !== 0x22 && c !== 0x5c)
  .map((c) => String.fromCharCode(c));

const canonical = fc
  .tuple(
    fc.shuffledSubarray([...KEYS], { minLength: 4, maxLength: 4 }),
    fc.array(fc.oneof(fc.string({ unit: plainChar, maxLength: 30 }), fc.integer()), {
      minLength: 4,
      maxLength: 4,
    }),
  )
  .map(
    ([order, values]) =>
      `{${order.map((k, i) => `${JSON.stringify(k)}:${JSON.stringify(values[i])}`).join(',')}}`,
  );

describe('decodeOneReadingJson: the one-reading fast path', () => {
  it('takes the common message and returns the full decoder’s reading', () => {
    const text = '{"meter_id":"MTR-000123","timestamp":"2024-03-11T00:15:00Z","value":"1.234","unit":"kW"}';
    const reading = decodeOneReadingJson(Buffer.from(text), SOURCE, RECEIVED_AT);
    expect(reading).toEqual({
      meterId: 'MTR-000123',
      timestamp: '2024-03-11T00:15:00Z',
      value: '1.234',
      unit: 'kW',
      raw: text,
      source: SOURCE,
      receivedAt: RECEIVED_AT,
    });
    expect(agrees(Buffer.from(text))).toBe(true);
    // A plain Uint8Array (not a Buffer), as a client may hand it over.
    expect(agrees(new Uint8Array(Buffer.from(text)))).toBe(true);
  });

  it('declines what it cannot decode exactly: escapes, non-ASCII, whitespace, other keys, non-canonical numbers', () => {
    for (const text of [
      '{"meter_id":"m\\u0031","timestamp":"t","value":"1","unit":"kW"}',
      '{"meter_id":"mé","timestamp":"t","value":"1","unit":"kW"}',
      '{"meter_id": "m","timestamp":"t","value":"1","unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":"1","unit":"kW","voltage":"230"}',
      '{"meter_id":"m","timestamp":"t","value":"1"}',
      '{"meter_id":"m","meter_id":"n","timestamp":"t","value":"1","unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":1.50,"unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":-0,"unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":1e400,"unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":null,"unit":"kW"}',
      '{"meter_id":"m","timestamp":"t","value":"1","unit":"kW"} ',
      '[{"meter_id":"m","timestamp":"t","value":"1","unit":"kW"}]',
      '{"meter_id":"m\tx","timestamp":"t","value":"1","unit":"kW"}',
    ])
      expect(decodeOneReadingJson(Buffer.from(text), SOURCE, RECEIVED_AT), text).toBeUndefined();
  });

  it('takes canonical numbers as the full decoder reads them', () => {
    const text = '{"unit":"kW","value":-1.5e-7,"timestamp":"t","meter_id":12}';
    expect(decodeOneReadingJson(Buffer.from(text), SOURCE, RECEIVED_AT)).toMatchObject({
      meterId: '12',
      value: '-1.5e-7',
    });
    expect(agrees(Buffer.from(text))).toBe(true);
  });

  it('takes every canonical one-reading payload of printable ASCII strings and integers (any key order)', () => {
    fc.assert(
      fc.property(canonical, (text) => {
        const payload = Buffer.from(text);
        expect(decodeOneReadingJson(payload, SOURCE, RECEIVED_AT)).toBeDefined();
        return agrees(payload);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with the full decoder on near-reading objects of any values', () => {
    fc.assert(
      fc.property(nearReading, (text) => agrees(Buffer.from(text))),
      { numRuns: 2000 },
    );
  });

  it('agrees with the full decoder on canonical payloads with a byte changed, inserted or removed', () => {
    fc.assert(
      fc.property(
        canonical,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom(0, 1, 2),
        (text, at, byte, op) => {
          const bytes = [...Buffer.from(text)];
          const i = at % bytes.length;
          if (op === 0) bytes[i] = byte;
          else if (op === 1) bytes.splice(i, 0, byte);
          else bytes.splice(i, 1);
          return agrees(Uint8Array.from(bytes));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('agrees with the full decoder on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => agrees(bytes)),
      { numRuns: 1000 },
    );
  });
});
