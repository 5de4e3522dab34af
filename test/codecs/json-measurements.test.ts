/**
 * JSON readings get their measurement fields from the element as it is decoded: the same as re-reading
 * them from the reading's `raw` text, which is how they were read before (one parse a message less).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { measurementsOfJson } from '../../codecs/measurement-columns.js';
import { MEASUREMENT_NAMES } from '../../schemas/reading.js';

function decode(text: string) {
  const decoded = decodeReadings(Buffer.from(text), { source: 'stream:R:1', receivedAt: 0 });
  if (!decoded.ok) throw new Error(decoded.failure.reason);
  return decoded.readings;
}

/** The measurements as read back from `raw`, the way the decoder used to. */
function fromRaw(raw: string) {
  return measurementsOfJson(JSON.parse(raw) as Record<string, unknown>);
}

describe('measurement fields of JSON readings', () => {
  it('equal what re-reading the raw text gives, for any values', () => {
    const value = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom('', '  230.1 ', 'NaN', '\udc00', null, -0, 1e308),
      fc.string(),
    );
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...MEASUREMENT_NAMES, 'other'), value),
        fc.boolean(),
        (fields, asArray) => {
          const element = {
            meter_id: 'M1',
            timestamp: '2024-03-15T14:00:00Z',
            value: '1.5',
            unit: 'kW',
            ...fields,
          };
          const text = asArray ? JSON.stringify([element, element]) : JSON.stringify(element);
          for (const r of decode(text)) {
            const expected = fromRaw(r.raw);
            if (expected === undefined) expect(r).not.toHaveProperty('measurements');
            else expect(r.measurements).toEqual(expected);
          }
        },
      ),
    );
  });

  it('keeps a number too large for a double as the text Infinity, also inside a nested value', () => {
    const [r] = decode(
      '{"meter_id":"M1","timestamp":"2024-03-15T14:00:00Z","value":"1","unit":"kW","voltage":1e400,"current":{"a":[-1e400]},"frequency":"","humidity":null}',
    );
    expect(r!.measurements).toEqual({ voltage: 'Infinity', current: '{"a":["-Infinity"]}' });
    expect(r!.measurements).toEqual(fromRaw(r!.raw));
  });
});
