import { Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wellFormed } from '../../codecs/unicode.js';
import { ArrowConversionError, arrowColumnValues, recordBatchFromRows } from '../../schemas/arrow.js';
import type { Column } from '../../schemas/reading.js';

interface Row {
  s: string;
  t: number;
  l: string[];
}
const columns: Column<Row>[] = [
  { name: 's', type: 'String', get: (r) => r.s, doc: '' },
  { name: 't', type: 'DateTime', get: (r) => r.t, doc: '' },
  { name: 'l', type: 'ArrayString', get: (r) => r.l, doc: '' },
];

function stored(rows: Row[]): { s: unknown[]; t: unknown[]; l: unknown[] } {
  const table = tableFromIPC(tableToIPC(new Table(recordBatchFromRows(columns, rows)), 'stream'));
  return {
    s: arrowColumnValues(table.getChild('s')!, 'String', 's'),
    t: arrowColumnValues(table.getChild('t')!, 'DateTime', 't'),
    l: arrowColumnValues(table.getChild('l')!, 'ArrayString', 'l'),
  };
}

/** Row counts around the builder's blocks of rows (1,024), so that columns are made over several. */
const ROW_COUNTS = [1023, 1024, 1025, 2048, 3001];

describe('Arrow batches of many rows', () => {
  it('hold every string of every block, a non-ASCII or long one in any block', () => {
    // Mostly short ASCII (the fast path); now and then text that is not, or long enough to outgrow
    // the bytes sized from the rows before it.
    const special = fc.constantFrom('é', '\ud800', '\udc00', '𝄞', 'x'.repeat(5000), '');
    const rows = fc
      .tuple(
        fc.constantFrom(...ROW_COUNTS),
        fc.array(fc.tuple(fc.nat(3000), special), { maxLength: 3 }),
        fc.constantFrom('', 'MTR-000124', 'a'.repeat(64)),
      )
      .map(([count, specials, plain]) => {
        const out: Row[] = Array.from({ length: count }, (_, i) => ({
          s: `${plain}${i}`,
          t: i * 1000,
          l: [],
        }));
        for (const [at, text] of specials) {
          const row = out[at % count] as Row;
          row.s = `${row.s}${text}`;
          row.l = [text];
        }
        return out;
      });
    fc.assert(
      fc.property(rows, (batch) => {
        expect(stored(batch)).toEqual({
          s: batch.map((r) => wellFormed(r.s)),
          t: batch.map((r) => r.t),
          l: batch.map((r) => r.l.map(wellFormed)),
        });
      }),
      { numRuns: 60 },
    );
  });

  it('keeps two lone halves in neighbouring rows of different blocks apart', () => {
    const rows: Row[] = Array.from({ length: 2048 }, () => ({ s: 'a', t: 0, l: [] }));
    (rows[1023] as Row).s = 'end \ud800';
    (rows[1024] as Row).s = '\udc00 start';
    expect(stored(rows).s).toEqual(rows.map((r) => wellFormed(r.s)));
  });

  it('names the first column, then its first row, that holds a bad value, whichever block it is in', () => {
    const rows: Row[] = Array.from({ length: 3000 }, (_, i) => ({ s: 'a', t: i, l: [] }));
    // A later column fails in the first block, an earlier column only in the third.
    (rows[5] as Row).t = Number.NaN;
    (rows[2500] as Row).s = 7 as unknown as string;
    (rows[2900] as Row).s = 8 as unknown as string;
    let caught: unknown;
    try {
      recordBatchFromRows(columns, rows);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ArrowConversionError);
    expect((caught as ArrowConversionError).column).toBe('s');
    expect((caught as ArrowConversionError).rowIndex).toBe(2500);
  });
});
