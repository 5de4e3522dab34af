import { Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { writeIpcStream } from '../../codecs/clickhouse-encode.js';
import { wellFormed } from '../../codecs/unicode.js';
import { ArrowConversionError, arrowColumnValues, recordBatchFromRows } from '../../schemas/arrow.js';
import type { Column } from '../../schemas/reading.js';

interface Row {
  s: string;
  l: string[];
}
const columns: Column<Row>[] = [
  { name: 's', type: 'String', get: (r) => r.s, doc: '' },
  { name: 'l', type: 'ArrayString', get: (r) => r.l, doc: '' },
];

/** The strings of a batch after an IPC round trip, as the engine reads them. */
function stored(rows: Row[]): { s: unknown[]; l: unknown[] } {
  const table = tableFromIPC(tableToIPC(new Table(recordBatchFromRows(columns, rows)), 'stream'));
  return {
    s: arrowColumnValues(table.getChild('s')!, 'String', 's'),
    l: arrowColumnValues(table.getChild('l')!, 'ArrayString', 'l'),
  };
}

describe('Arrow string columns', () => {
  it('keep every string, each lone surrogate as U+FFFD, even when halves meet across rows', () => {
    const rows: Row[] = [
      { s: 'a\ud800', l: ['x\ud800'] },
      { s: '\udc00b', l: ['\udc00y', ''] },
      { s: 'ascii', l: [] },
      { s: 'ü € 𝄞', l: ['𝄞'] },
      { s: '', l: ['\\N', '"'] },
    ];
    expect(stored(rows)).toEqual({
      s: rows.map((r) => wellFormed(r.s)),
      l: rows.map((r) => r.l.map(wellFormed)),
    });
  });

  it('round-trip any strings exactly, made well-formed', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.constantFrom('\ud800', '\udc00', 'é', ''),
      fc.string({ unit: 'grapheme-ascii' }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.record({ s: text, l: fc.array(text, { maxLength: 3 }) }), { maxLength: 30 }),
        (rows) => {
          expect(stored(rows)).toEqual({
            s: rows.map((r) => wellFormed(r.s)),
            l: rows.map((r) => r.l.map(wellFormed)),
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses a value that is no string, naming its row', () => {
    const rows = [
      { s: 'a', l: [] },
      { s: 7 as unknown as string, l: [] },
    ];
    expect(() => recordBatchFromRows(columns, rows)).toThrow(ArrowConversionError);
    expect(() => recordBatchFromRows(columns, rows)).toThrow(/row 1/);
  });
});

describe('Arrow IPC stream written in pieces', () => {
  it('is byte for byte the stream tableToIPC makes, whatever the sizes of its columns', () => {
    const text = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('', 'x'.repeat(70_000)));
    fc.assert(
      fc.property(
        fc.array(fc.record({ s: text, l: fc.array(text, { maxLength: 3 }) }), { maxLength: 20 }),
        (rows) => {
          const table = new Table(recordBatchFromRows(columns, rows));
          const pieces: Uint8Array[] = [];
          writeIpcStream(table, (piece) => pieces.push(piece as Uint8Array));
          expect(Buffer.concat(pieces).equals(Buffer.from(tableToIPC(table, 'stream')))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
