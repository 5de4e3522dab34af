/**
 * RowBinary bodies for the ClickHouse server, driven by the column lists of `schemas/reading.ts`.
 *
 * RowBinary is the server's own binary row format, read by 18.16 and every later version: a row is its
 * cells back to back, with no separators and nothing escaped. A String is its UTF-8 length as a LEB128
 * varint, then its bytes; DateTime is UInt32 seconds; numbers are little-endian; `Nullable(T)` is one
 * byte (1: NULL) followed, unless NULL, by T; `Array(String)` is a varint count, then the strings.
 * `LowCardinality(String)` (a modern server's column) reads as a plain String.
 *
 * The server parses no text, and the body carries each double's own bits: 18.16's text parser reads
 * about one four-decimal value in a thousand one unit in the last place off, so the stored values are
 * those the pipeline computed, as chDB's Arrow inserts store them.
 *
 * Every cell goes through the checks of the text formats (`jsonCell`), so a row is refused with the
 * same `RowEncodingError`, naming the same row and column, as a TabSeparated body would refuse it, and
 * the values written are those the text formats write: whole seconds, U+FFFD for a lone surrogate, 0
 * for -0.
 */

import type { Column } from '../schemas/reading.js';
import { jsonCell, RowEncodingError, type RowWriter, type TextSink } from './clickhouse-encode.js';

/**
 * Bytes of a piece handed on. Large enough that the per-piece cost is nothing, small enough that a
 * body is never one buffer the size of the whole insert.
 */
const PIECE_BYTES = 256 * 1024;

/** Bytes a cell other than a string or an array takes at most: a null byte and eight. */
const FIXED_CELL_BYTES = 9;

/**
 * A string of fewer UTF-16 units than this takes at most 3 × 42 = 126 bytes, so its length is one
 * varint byte and it is copied by a loop of its characters while they are ASCII; longer ones, and any
 * with a non-ASCII character, go through the native encoder.
 */
const SHORT_STRING = 43;

/** The body under construction: pieces filled in turn and handed to the sink once full. */
class Out {
  buf: Buffer = Buffer.allocUnsafeSlow(PIECE_BYTES);
  pos = 0;
  private readonly sink: TextSink;

  constructor(sink: TextSink) {
    this.sink = sink;
  }

  /** Room for `bytes` more: the full piece goes to the sink and a new one (at least that large) starts. */
  reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    this.flush();
    // The sink may keep a piece until the insert is sent: a piece is never written again.
    this.buf = Buffer.allocUnsafeSlow(Math.max(PIECE_BYTES, bytes));
  }

  flush(): void {
    if (this.pos > 0) this.sink(this.buf.subarray(0, this.pos));
    this.pos = 0;
  }

  u8(value: number): void {
    this.buf[this.pos++] = value;
  }

  u32(value: number): void {
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = value;
    buf[pos++] = value >>> 8;
    buf[pos++] = value >>> 16;
    buf[pos++] = value >>> 24;
    this.pos = pos;
  }

  /** A safe integer as 64 bits, two's complement: both halves are exact in floating point. */
  i64(value: number): void {
    this.u32(value >>> 0);
    this.u32(Math.floor(value / 4_294_967_296) >>> 0);
  }

  f64(value: number): void {
    // -0 is written as 0, as the text formats write it.
    this.pos = this.buf.writeDoubleLE(value === 0 ? 0 : value, this.pos);
  }

  varint(value: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (value >= 0x80) {
      buf[pos++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    buf[pos++] = value;
    this.pos = pos;
  }

  /** Reserves its own room. A lone surrogate becomes U+FFFD (EF BF BD), as `wellFormed` would make it. */
  string(value: string): void {
    const n = value.length;
    if (n < SHORT_STRING) {
      this.reserve(1 + 3 * n);
      const buf = this.buf;
      const start = this.pos;
      let pos = start + 1;
      let i = 0;
      for (; i < n; i++) {
        const code = value.charCodeAt(i);
        if (code >= 0x80) break;
        buf[pos++] = code;
      }
      if (i === n) {
        buf[start] = n;
        this.pos = pos;
        return;
      }
      buf[start] = buf.write(value, start + 1, 'utf8');
      this.pos = start + 1 + (buf[start] as number);
      return;
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    this.reserve(5 + bytes);
    this.varint(bytes);
    this.pos += this.buf.write(value, this.pos, bytes, 'utf8');
  }
}

type CellWriter<Row> = (row: Row, out: Out) => void;

function cellWriter<Row>(column: Column<Row>): CellWriter<Row> {
  const check = jsonCell(column);
  switch (column.type) {
    case 'String':
    case 'LowCardinalityString':
      return (row, out) => out.string(check(row) as string);
    case 'DateTime':
      return (row, out) => {
        out.reserve(FIXED_CELL_BYTES);
        out.u32(check(row) as number);
      };
    case 'NullableDateTime':
      return (row, out) => {
        const seconds = check(row);
        out.reserve(FIXED_CELL_BYTES);
        if (seconds === null) out.u8(1);
        else {
          out.u8(0);
          out.u32(seconds as number);
        }
      };
    case 'Float64':
      return (row, out) => {
        out.reserve(FIXED_CELL_BYTES);
        out.f64(check(row) as number);
      };
    case 'NullableFloat64':
      return (row, out) => {
        const value = check(row);
        out.reserve(FIXED_CELL_BYTES);
        if (value === null) out.u8(1);
        else {
          out.u8(0);
          out.f64(value as number);
        }
      };
    case 'UInt8':
      return (row, out) => {
        out.reserve(FIXED_CELL_BYTES);
        out.u8(check(row) as number);
      };
    case 'UInt32':
      return (row, out) => {
        out.reserve(FIXED_CELL_BYTES);
        out.u32(check(row) as number);
      };
    case 'UInt64':
    case 'Int64':
      return (row, out) => {
        out.reserve(FIXED_CELL_BYTES);
        out.i64(check(row) as number);
      };
    case 'ArrayString':
      return (row, out) => {
        const items = check(row) as readonly string[];
        out.reserve(5);
        out.varint(items.length);
        for (const item of items) out.string(item);
      };
  }
}

/**
 * Writes rows `[from, to)` as RowBinary into `sink`, in pieces of about {@link PIECE_BYTES}; a piece
 * ends anywhere, even inside a row, which the format does not mind. Build once per table.
 */
export function rowBinaryWriter<Row>(columns: readonly Column<Row>[]): RowWriter<Row> {
  const n = columns.length;
  const cells = columns.map(cellWriter);
  return (rows, from, to, sink) => {
    const out = new Out(sink);
    let r = from;
    let c = 0;
    try {
      for (; r < to; r++) {
        const row = rows[r] as Row;
        for (c = 0; c < n; c++) (cells[c] as CellWriter<Row>)(row, out);
      }
    } catch (error) {
      // The cell's own check tells a refused value (named with its row and column) from a fault here.
      const column = columns[c];
      if (column === undefined || r >= to) throw error;
      try {
        jsonCell(column)(rows[r] as Row);
      } catch (refused) {
        const reason = refused instanceof Error ? refused.message : String(refused);
        throw new RowEncodingError(reason, r, column.name, column.type);
      }
      throw error;
    }
    out.flush();
  };
}
