import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { csvField, parseQuotedRecord } from '../../codecs/csv-record.js';

describe('CSV record scanner', () => {
  it('reads quoted fields with escaped quotes, commas and line breaks, and finds the next record', () => {
    const text = 'a,"b ""x"", c","line\nbreak"\r\nnext,row\n';
    const record = parseQuotedRecord(text, 0);
    expect(record.error).toBeNull();
    expect(record.fields).toEqual(['a', 'b "x", c', 'line\nbreak']);
    expect(record.newlines).toBe(1);
    expect(text.slice(0, record.end)).toBe('a,"b ""x"", c","line\nbreak"');
    expect(text.slice(record.next)).toBe('next,row\n');
    expect(parseQuotedRecord(text, record.next).fields).toEqual(['next', 'row']);
  });

  it('names what is broken: an unterminated quote, a stray quote, text after a closing quote', () => {
    expect(parseQuotedRecord('a,"open\n', 0).error?.code).toBe('unterminated_quote');
    expect(parseQuotedRecord('a,"open\nb,"c"\n', 0).error?.code).toBe('unterminated_quote');
    expect(parseQuotedRecord('a,b"c\n', 0).error?.code).toBe('stray_quote');
    expect(parseQuotedRecord('a,"b"c\n', 0).error?.code).toBe('text_after_quote');
  });

  it('reads back every row csvField writes, field for field', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.string(), { minLength: 1, maxLength: 5 }), { maxLength: 5 }),
        (rows) => {
          const text = rows.map((row) => `${row.map(csvField).join(',')}\r\n`).join('');
          let pos = 0;
          for (const row of rows) {
            const record = parseQuotedRecord(text, pos);
            expect(record.error).toBeNull();
            expect(record.fields).toEqual(row);
            pos = record.next;
          }
          expect(pos).toBe(text.length);
        },
      ),
    );
  });
});
