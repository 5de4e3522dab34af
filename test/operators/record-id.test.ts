import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalTimestamp, RecordIds, reconstructedRaw, recordId } from '../../operators/record-id.js';
import { reading, T0 } from './fixtures.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('RecordIds', () => {
  it('gives recordId for any texts and any order of meters, ASCII or not, short or long', () => {
    const blank = fc.constantFrom(' ', '\t', '\n', '\r', '\v', '\f', '\u00a0', '\ufeff', '\u2028');
    const text = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.string({ unit: 'grapheme', maxLength: 6 }),
      fc.string({ unit: fc.constantFrom('\ud800', '\udc00', 'a', '|'), maxLength: 4 }),
      fc.string({ minLength: 1000, maxLength: 1100 }),
      fc.tuple(blank, fc.string({ maxLength: 6 }), blank).map(([a, b, c]) => a + b + c),
    );
    const ids = new RecordIds();
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('MTR-000001', 'MTR-000002', ''), text, text), { maxLength: 20 }),
        (parts) => {
          for (const [meter, ts, value] of parts) {
            expect(ids.id(meter, ts, value)).toBe(recordId(meter, ts, value));
            expect(ids.id(value, ts, meter)).toBe(recordId(value, ts, meter));
            // With the timestamp's bytes kept by the caller (null for a text that is not plain ASCII).
            expect(ids.id(meter, ts, value, RecordIds.timeBytes(ts))).toBe(recordId(meter, ts, value));
            expect(ids.id(value, ts, meter, RecordIds.timeBytes(ts))).toBe(recordId(value, ts, meter));
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('hashes a text just under and just over its buffer (1,024 bytes) alike', () => {
    const ids = new RecordIds();
    const ts = '2024-03-04T00:00:00Z';
    for (let n = 1018; n <= 1026; n++) {
      expect(ids.id('M'.repeat(n), ts, '1.5')).toBe(recordId('M'.repeat(n), ts, '1.5'));
      expect(ids.id('m', ts, 'v'.repeat(n - 22))).toBe(recordId('m', ts, 'v'.repeat(n - 22)));
      expect(ids.id('m', 'T'.repeat(n), '')).toBe(recordId('m', 'T'.repeat(n), ''));
      const long = 'T'.repeat(n);
      expect(ids.id('m', long, '', RecordIds.timeBytes(long))).toBe(recordId('m', long, ''));
      expect(ids.id('M'.repeat(n - 20), ts, '1', RecordIds.timeBytes(ts))).toBe(
        recordId('M'.repeat(n - 20), ts, '1'),
      );
    }
  });
});

describe('recordId', () => {
  it('is the SHA-256 hex of meter id, canonical timestamp and trimmed value joined with |', () => {
    expect(recordId('MTR-000001', '2024-03-04T00:00:00Z', '1.25')).toBe(
      sha256('MTR-000001|2024-03-04T00:00:00Z|1.25'),
    );
    expect(recordId('MTR-000001', '2024-03-04T00:00:00Z', '  1.25 ')).toBe(
      recordId('MTR-000001', '2024-03-04T00:00:00Z', '1.25'),
    );
  });

  it('separates the parts, so shifting characters between meter id and value changes the id', () => {
    // Plain concatenation would make these two the same text.
    expect(recordId('MTR-1', '2024-03-04T00:00:00Z', '2')).not.toBe(
      recordId('MTR-12', '2024-03-04T00:00:00Z', ''),
    );
    expect(recordId('M', 'T', '12')).not.toBe(recordId('M', 'T1', '2'));
  });

  it('differs for a different value, instant or meter', () => {
    const base = recordId('MTR-000001', '2024-03-04T00:00:00Z', '1');
    expect(recordId('MTR-000001', '2024-03-04T00:00:00Z', '1.0')).not.toBe(base);
    expect(recordId('MTR-000001', '2024-03-04T00:15:00Z', '1')).not.toBe(base);
    expect(recordId('MTR-000002', '2024-03-04T00:00:00Z', '1')).not.toBe(base);
  });
});

describe('canonicalTimestamp', () => {
  it('prints whole seconds without a fraction and keeps milliseconds when there are some', () => {
    expect(canonicalTimestamp(T0)).toBe('2024-03-04T00:00:00Z');
    expect(canonicalTimestamp(T0 + 5)).toBe('2024-03-04T00:00:00.005Z');
    expect(canonicalTimestamp(Date.UTC(2024, 1, 29, 23, 59, 59))).toBe('2024-02-29T23:59:59Z');
    expect(canonicalTimestamp(0)).toBe('1970-01-01T00:00:00Z');
    expect(canonicalTimestamp(-1)).toBe('1969-12-31T23:59:59.999Z');
  });

  it('agrees with Date#toISOString over years 0000–9999', () => {
    // Date.UTC maps years 0–99 to 1900–1999, so year 0 is set explicitly.
    const yearZero = new Date(0).setUTCFullYear(0, 0, 1);
    fc.assert(
      fc.property(fc.integer({ min: yearZero, max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }), (ts) => {
        expect(canonicalTimestamp(ts)).toBe(new Date(ts).toISOString().replace('.000Z', 'Z'));
      }),
      { numRuns: 5000 },
    );
  });

  it('falls back to the extended ISO form outside four-digit years', () => {
    const ts = Date.UTC(10000, 0, 1);
    expect(canonicalTimestamp(ts)).toBe(new Date(ts).toISOString());
  });
});

describe('reconstructedRaw', () => {
  it('rebuilds the input-contract columns from a reading', () => {
    expect(reconstructedRaw(reading({ meterId: 'MTR-7', ts: T0, rawValue: ' 1250', rawUnit: 'W' }))).toBe(
      'MTR-7,2024-03-04T00:00:00Z, 1250,W',
    );
  });
});
