import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasLoneSurrogate, wellFormed } from '../../codecs/unicode.js';
import { numberField, SpoolValueError, spoolColumnsOf } from '../../connectors/lake-spool.js';
import type { Column } from '../../schemas/reading.js';

/** The spool's field rules written the plain way, one value at a time: what the encoder must produce. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must be quoted
const NEEDS_QUOTES = /[",\\\u0000-\u001f\u007f]/;

function referenceField(column: Column<unknown>, value: unknown): string {
  const string = (s: string) =>
    s === '\\N' ? '"\\N"' : NEEDS_QUOTES.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  const number = (n: number) => (Object.is(n, -0) ? '-0' : String(n));
  if (value === null) return '\\N';
  switch (column.type) {
    case 'String':
      return string(value as string);
    case 'DateTime':
    case 'NullableDateTime':
    case 'NullableFloat64':
      return number(value as number);
    case 'ArrayString': {
      const items = value as string[];
      if (items.length === 0) return '[]';
      return string(JSON.stringify(items.some(hasLoneSurrogate) ? items.map(wellFormed) : items));
    }
    default:
      throw new Error(`no reference for ${column.type}`);
  }
}

interface Row {
  s: string;
  t: number | null;
  x: number | null;
  l: string[];
}

const columns: Column<Row>[] = [
  { name: 's', type: 'String', get: (r) => r.s, doc: '' },
  { name: 't', type: 'NullableDateTime', get: (r) => r.t, doc: '' },
  { name: 'x', type: 'NullableFloat64', get: (r) => r.x, doc: '' },
  { name: 'l', type: 'ArrayString', get: (r) => r.l, doc: '' },
];

const HOSTILE = [
  '',
  '\\N',
  '"',
  'a,b',
  'tab\t',
  'nl\n',
  'nul\u0000',
  'lone \ud800',
  '\udc00',
  'back\\',
  'ü 𝄞',
  '\u007f',
];
const EDGE_NUMBERS = [
  0,
  -0,
  Number.NaN,
  Infinity,
  -Infinity,
  5e-324,
  Number.MAX_VALUE,
  0.1 + 0.2,
  1e21,
  -1.5e-7,
];

describe('lake spool encoding', () => {
  it('writes every double as its shortest round-trip text, -0 kept', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.double(),
          fc.integer({ min: -1e13 + 1, max: 1e13 - 1 }).map((k) => k / 1e4),
        ),
        (d) => {
          expect(numberField(d)).toBe(Object.is(d, -0) ? '-0' : String(d));
        },
      ),
      { numRuns: 20_000 },
    );
    for (const d of EDGE_NUMBERS) expect(numberField(d)).toBe(Object.is(d, -0) ? '-0' : String(d));
  });

  it('encodes runs of repeated and changing values as each row alone would be encoded', () => {
    const text = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'binary' }));
    const number = fc.oneof(fc.constantFrom(...EDGE_NUMBERS, null), fc.double());
    const row = fc.record({
      s: text,
      t: fc.oneof(fc.constantFrom(0, -0, 1_710_115_200_000, 1_710_115_200_000.5, null), fc.integer()),
      x: number,
      l: fc.oneof(fc.constant([]), fc.array(text, { maxLength: 3 })),
    });
    // Rows drawn from a small pool repeat, which is what the encoder's memory of the last value meets.
    const rows = fc
      .array(row, { minLength: 1, maxLength: 8 })
      .chain((pool) =>
        fc.array(fc.nat(pool.length - 1), { maxLength: 40 }).map((picks) => picks.map((i) => pool[i] as Row)),
      );
    fc.assert(
      fc.property(rows, (sequence) => {
        const spool = spoolColumnsOf(columns as Column<unknown>[]);
        let text = '';
        for (const r of sequence) text = spool.appendLine(text, r);
        const expected = sequence
          .map((r) => `${columns.map((c) => referenceField(c as Column<unknown>, c.get(r))).join(',')}\n`)
          .join('');
        expect(text).toBe(expected);
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses a value its column cannot hold, and still encodes the next row', () => {
    const spool = spoolColumnsOf(columns as Column<unknown>[]);
    const good: Row = { s: 'a', t: 1, x: 2, l: ['f'] };
    expect(spool.encode(good)).toBe('a,1,2,"[""f""]"\n');
    expect(() => spool.encode({ ...good, t: Number.NaN })).toThrow(SpoolValueError);
    expect(() => spool.encode({ ...good, s: 3 as unknown as string })).toThrow(SpoolValueError);
    expect(() => spool.encode({ ...good, l: [1] as unknown as string[] })).toThrow(SpoolValueError);
    expect(spool.encode(good)).toBe('a,1,2,"[""f""]"\n');
  });
});
