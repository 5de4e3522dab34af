/**
 * The one RFC-4180 CSV record scanner: reads a record's fields from a position in a text (quoted fields,
 * `""` escapes, line breaks inside quotes, CRLF or LF endings), and quotes a field for writing. Pure.
 */

const QUOTE = 34;
const COMMA = 44;
const LF = 10;
export const CR = 13;

/** Why a record cannot be read as CSV. */
export type CsvRecordErrorCode = 'unterminated_quote' | 'stray_quote' | 'text_after_quote';

/** One record scanned from a position, or why it cannot be read (`fields` then holds what came before). */
export interface QuotedRecord {
  readonly fields: string[];
  /** End of the record's text, before its line terminator. */
  readonly end: number;
  /** Start of the next record. */
  readonly next: number;
  /** Line breaks inside quoted fields. */
  readonly newlines: number;
  readonly error: { readonly code: CsvRecordErrorCode; readonly reason: string } | null;
}

/**
 * Scans the record starting at `start`. The readings decoder and `splitCsvRecords` call it for headers and for
 * lines holding a quote; lines without one they cut with `indexOf` (same result, faster).
 */
export function parseQuotedRecord(text: string, start: number): QuotedRecord {
  const n = text.length;
  const fields: string[] = [];
  let newlines = 0;
  let i = start;
  const broken = (code: CsvRecordErrorCode, reason: string): QuotedRecord => ({
    fields,
    end: i,
    next: i,
    newlines,
    error: { code, reason },
  });
  for (;;) {
    if (i < n && text.charCodeAt(i) === QUOTE) {
      // Quoted field: runs to the next lone quote; `""` is an escaped quote; may hold line breaks.
      let value = '';
      let chunkStart = i + 1;
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q === -1) {
          return broken(
            'unterminated_quote',
            `unterminated quoted field starting at column ${fields.length + 1}`,
          );
        }
        if (text.charCodeAt(q + 1) === QUOTE) {
          value += text.slice(chunkStart, q + 1);
          j = q + 2;
          chunkStart = j;
          continue;
        }
        value += text.slice(chunkStart, q);
        for (let k = text.indexOf('\n', i + 1); k !== -1 && k < q; k = text.indexOf('\n', k + 1)) newlines++;
        i = q + 1;
        break;
      }
      fields.push(value);
      const c = i < n ? text.charCodeAt(i) : LF;
      if (c === COMMA) {
        i++;
        continue;
      }
      if (c === CR && (i + 1 >= n || text.charCodeAt(i + 1) === LF)) {
        return { fields, end: i, next: Math.min(i + 2, n), newlines, error: null };
      }
      if (c === LF) return { fields, end: Math.min(i, n), next: Math.min(i + 1, n), newlines, error: null };
      if (newlines > 0) {
        // The quote that "closed" the field sits on a later line: the real fault is an opening quote
        // never closed on its own line.
        return broken(
          'unterminated_quote',
          `quoted field in column ${fields.length} is not closed on its line`,
        );
      }
      return broken('text_after_quote', `text after the closing quote of column ${fields.length}`);
    }
    // Unquoted field: runs to the next comma or line end, and may not contain a quote.
    let j = i;
    let c = 0;
    while (j < n) {
      c = text.charCodeAt(j);
      if (c === COMMA || c === LF || c === QUOTE) break;
      j++;
    }
    if (j < n && c === QUOTE) {
      i = j;
      return broken('stray_quote', `quote inside unquoted column ${fields.length + 1}`);
    }
    const fieldEnd = j < n && c === LF && j > i && text.charCodeAt(j - 1) === CR ? j - 1 : j;
    fields.push(text.slice(i, fieldEnd));
    if (j < n && c === COMMA) {
      i = j + 1;
      continue;
    }
    return { fields, end: fieldEnd, next: Math.min(j + 1, n), newlines, error: null };
  }
}

/** Quotes a CSV field when it holds a comma, a quote or a line break. */
export function csvField(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === COMMA || c === QUOTE || c === LF || c === CR) return `"${value.replace(/"/g, '""')}"`;
  }
  return value;
}
