import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasLoneSurrogate, wellFormed } from '../../codecs/unicode.js';
import {
  MIN_SPOOL_BUFFER_BYTES,
  numberField,
  SpoolBuffer,
  SpoolValueError,
  spoolColumnsOf,
} from '../../connectors/lake-spool.js';
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
        const chunks: Buffer[] = [];
        // The smallest buffer, drained often: lines cut across drains must come out whole.
        const out = new SpoolBuffer(MIN_SPOOL_BUFFER_BYTES, (bytes) => chunks.push(Buffer.from(bytes)));
        for (const r of sequence) spool.writeLine(r, out);
        out.drain();
        const bytes = Buffer.concat(chunks);
        const expected = sequence
          .map((r) => `${columns.map((c) => referenceField(c as Column<unknown>, c.get(r))).join(',')}\n`)
          .join('');
        // As UTF-8, which writes a lone surrogate as U+FFFD.
        expect(bytes.equals(Buffer.from(expected, 'utf8'))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('writes meter values (at most four decimals) and integers near 32 bits as String() does', () => {
    interface Numbers {
      x: number | null;
      i: number;
    }
    const numbers: Column<Numbers>[] = [
      { name: 'x', type: 'NullableFloat64', get: (r) => r.x, doc: '' },
      { name: 'i', type: 'Int64', get: (r) => r.i, doc: '' },
    ];
    // Scaled values whose decimals end in zeros, span every digit count, and sit at the fast path's edges.
    const scaled = fc.oneof(
      fc.integer({ min: -1e13 + 1, max: 1e13 - 1 }),
      fc.integer({ min: -99_999, max: 99_999 }),
      fc
        .tuple(fc.integer({ min: -999_999_999, max: 999_999_999 }), fc.constantFrom(1, 10, 100, 1000, 10_000))
        .map(([k, unit]) => k * unit),
      fc.constantFrom(1, 10, 100, 1000, 9999, 10_000, 10_001, 2 ** 31 * 10_000, 1e13 - 1, 1e13, -(1e13 - 1)),
    );
    const near32 = fc.oneof(
      fc.integer({ min: 2 ** 31 - 50, max: 2 ** 31 + 50 }),
      fc.integer({ min: -(2 ** 31) - 50, max: -(2 ** 31) + 50 }),
      fc.integer({ min: 2 ** 32 - 50, max: 2 ** 32 + 50 }),
      fc.maxSafeInteger(),
    );
    fc.assert(
      fc.property(
        fc.array(fc.record({ x: scaled.map((k) => k / 10_000), i: near32 }), { minLength: 1 }),
        (rows) => {
          const spool = spoolColumnsOf(numbers as Column<unknown>[]);
          const text = rows.map((r) => spool.encode(r)).join('');
          const number = (n: number) => (Object.is(n, -0) ? '-0' : String(n));
          expect(text).toBe(rows.map((r) => `${number(r.x as number)},${String(r.i)}\n`).join(''));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("writes long strings and whole integers exactly, across the buffer's drains and past its size", () => {
    interface Wide {
      s: string;
      u8: number | boolean;
      u32: number;
      u64: number;
      i64: number;
    }
    const wide: Column<Wide>[] = [
      { name: 's', type: 'String', get: (r) => r.s, doc: '' },
      { name: 'u8', type: 'UInt8', get: (r) => r.u8, doc: '' },
      { name: 'u32', type: 'UInt32', get: (r) => r.u32, doc: '' },
      { name: 'u64', type: 'UInt64', get: (r) => r.u64, doc: '' },
      { name: 'i64', type: 'Int64', get: (r) => r.i64, doc: '' },
    ];
    const reference = (r: Wide): string =>
      `${referenceField(wide[0] as Column<unknown>, r.s)},${Number(r.u8)},${r.u32},${r.u64},${String(r.i64)}\n`;
    // Lengths around the copied strings' limit and past the smallest buffer, plain or needing quotes.
    const long = fc
      .tuple(
        fc.constantFrom(0, 1, 4095, 4096, 4097, 70_000, 200_000),
        fc.constantFrom('a', '"', 'é', '\\', '\ud800', '𝄞'),
        fc.constantFrom('x', 'yz'),
      )
      .map(([n, special, fill]) => `${fill.repeat(n)}${n % 2 === 0 ? special : ''}`);
    const row = fc.record({
      s: fc.oneof(long, fc.string({ unit: 'binary' })),
      u8: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.boolean()),
      u32: fc.oneof(fc.constantFrom(0, 9, 10, 0xffff_ffff), fc.nat()),
      u64: fc.oneof(fc.constantFrom(0, -0, Number.MAX_SAFE_INTEGER, 1e15, 999_999), fc.maxSafeNat()),
      i64: fc.oneof(fc.constantFrom(Number.MIN_SAFE_INTEGER, -1, -0, -10), fc.maxSafeInteger()),
    });
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 12 }), (rows) => {
        const spool = spoolColumnsOf(wide as Column<unknown>[]);
        const chunks: Buffer[] = [];
        const out = new SpoolBuffer(MIN_SPOOL_BUFFER_BYTES, (bytes) => chunks.push(Buffer.from(bytes)));
        const lengths: number[] = [];
        for (const r of rows) {
          const before = out.length;
          spool.writeLine(r, out);
          lengths.push(out.length - before);
        }
        out.drain();
        const bytes = Buffer.concat(chunks);
        expect(bytes.length).toBe(out.length);
        expect(bytes.equals(Buffer.from(rows.map(reference).join(''), 'utf8'))).toBe(true);
        expect(lengths).toEqual(rows.map((r) => Buffer.byteLength(reference(r), 'utf8')));
      }),
      { numRuns: 100 },
    );
  });

  it("writes a field that ends at the buffer's last byte, or just past it, whole", () => {
    const spool = spoolColumnsOf(columns as Column<unknown>[]);
    for (let item = 0; item <= 30; item++) {
      const row: Row = { s: '', t: null, x: null, l: ['i'.repeat(item)] };
      const line = Buffer.from(spool.encode(row), 'utf8');
      for (let room = 0; room <= 40; room++) {
        const chunks: Buffer[] = [];
        const out = new SpoolBuffer(MIN_SPOOL_BUFFER_BYTES, (bytes) => chunks.push(Buffer.from(bytes)));
        // A buffer filled up to `room` bytes before its end.
        out.bytes.fill(0x7a);
        out.at = MIN_SPOOL_BUFFER_BYTES - room;
        spool.writeLine(row, out);
        out.drain();
        const bytes = Buffer.concat(chunks);
        expect(bytes.length).toBe(MIN_SPOOL_BUFFER_BYTES - room + line.length);
        expect(bytes.subarray(MIN_SPOOL_BUFFER_BYTES - room).equals(line)).toBe(true);
      }
    }
  });

  it('keeps what a failed drain could not hand on, and hands it on whole at the next drain', () => {
    const chunks: Buffer[] = [];
    let fail = true;
    const out = new SpoolBuffer(MIN_SPOOL_BUFFER_BYTES, (bytes) => {
      if (fail) throw new Error('disk full');
      chunks.push(Buffer.from(bytes));
    });
    const spool = spoolColumnsOf(columns as Column<unknown>[]);
    const row: Row = { s: 'a'.repeat(4000), t: 1, x: 2, l: [] };
    const line = spool.encode(row);
    const fitting = Math.floor(MIN_SPOOL_BUFFER_BYTES / Buffer.byteLength(line));
    for (let i = 0; i < fitting; i++) spool.writeLine(row, out);
    // The next line does not fit: the buffer drains, and the drain fails.
    expect(() => spool.writeLine(row, out)).toThrow('disk full');
    expect(out.drained).toBe(0);
    expect(out.length).toBe(fitting * Buffer.byteLength(line));
    fail = false;
    spool.writeLine(row, out);
    out.drain();
    expect(Buffer.concat(chunks).toString('utf8')).toBe(line.repeat(fitting + 1));
    expect(out.length).toBe((fitting + 1) * Buffer.byteLength(line));
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
