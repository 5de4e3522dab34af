/**
 * The binary snapshot encoding (version 2): the JSON snapshot text of the store's keyed state, timers,
 * values and indexes, followed by the numeric rows (`DenseRows`) as raw little-endian buffers, so the
 * bulk of a large state is copied rather than printed and parsed number by number.
 *
 * Layout: magic `GSS2` · u32 LE byte length of the JSON text · the JSON text (UTF-8, whose `rows` member
 * lists each namespace's index, width, row count and number type) · zero padding to a multiple of 8 ·
 * then per rows namespace, in that order: `count` presence bytes padded to 8, `count × width` numbers,
 * float64 LE, or int32 LE (`type: "i32"`) when every one of them is an int32 (not -0): hourly maxima and
 * counters are, and take half the bytes. Then per vectors namespace (`DenseVectors`, listed in the JSON's
 * `vectors` member with its index, list count, number total and type): `count` int32 LE lengths padded to
 * 8, then the lists' numbers one after the other, float64 LE or int32 LE as for rows.
 */

import type { RowsSnapshot } from './dense-rows.js';
import type { VectorsSnapshot } from './dense-vectors.js';
import { GreenStreamError } from './errors.js';

const MAGIC = [0x47, 0x53, 0x53, 0x32]; // "GSS2"
const HEADER_BYTES = 8;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A snapshot that cannot be decoded: truncated, corrupted, or not a snapshot at all. */
export class SnapshotFormatError extends GreenStreamError<{
  readonly bytes: number;
  readonly offset: number;
  readonly part: string;
}> {
  override readonly name = 'SnapshotFormatError';
}

/** How each rows namespace is described in the JSON text. */
export interface RowsHeader {
  readonly ns: string;
  readonly index: string;
  readonly width: number;
  readonly count: number;
  /** How the numbers are stored: float64 (absent) or int32. */
  readonly type?: 'i32';
}

/** How each vectors namespace is described in the JSON text. */
export interface VectorsHeader {
  readonly ns: string;
  readonly index: string;
  readonly count: number;
  /** How many numbers the lists hold together. */
  readonly total: number;
  readonly type?: 'i32';
}

/** True when `bytes` starts like a version-2 binary snapshot. */
export function isBinarySnapshot(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 &&
    bytes[0] === MAGIC[0] &&
    bytes[1] === MAGIC[1] &&
    bytes[2] === MAGIC[2] &&
    bytes[3] === MAGIC[3]
  );
}

const pad8 = (n: number): number => (n + 7) & ~7;

/** Whether every number of `data` is an int32 that reads back as itself (so not -0). */
export function allInt32(data: Float64Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if ((v | 0) !== v || (v === 0 && 1 / v < 0)) return false;
  }
  return true;
}

/**
 * One buffer: the header, the JSON text (`json`, or its pieces in order), then the rows. The JSON must list
 * the rows in its `rows` member as `headers` (which `rowsHeaders` makes, choosing each set's number type).
 */
export function encodeBinarySnapshot(
  json: string | readonly string[],
  rows: readonly RowsSnapshot[],
  headers: readonly RowsHeader[],
  vectors: readonly VectorsSnapshot[] = [],
  vectorHeaders: readonly VectorsHeader[] = [],
): Uint8Array {
  const parts = typeof json === 'string' ? [json] : json;
  let jsonBytes = 0;
  for (const part of parts) jsonBytes += Buffer.byteLength(part);
  let total = pad8(HEADER_BYTES + jsonBytes);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    total += pad8(r.count) + pad8(r.count * r.width * (headers[i]!.type === 'i32' ? 4 : 8));
  }
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i]!;
    total += pad8(v.count * 4) + pad8(v.data.length * (vectorHeaders[i]!.type === 'i32' ? 4 : 8));
  }
  // Not zero-filled (a memset of the whole state): every byte is written below, the padding as zeros, so
  // no stale memory goes into a checkpoint.
  const out = Buffer.allocUnsafeSlow(total);
  out.set(MAGIC, 0);
  out.writeUInt32LE(jsonBytes, 4);
  let written = HEADER_BYTES;
  for (const part of parts) written += out.write(part, written, 'utf8');
  let at = pad8(HEADER_BYTES + jsonBytes);
  out.fill(0, written, at);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    out.set(r.present.subarray(0, r.count), at);
    out.fill(0, at + r.count, at + pad8(r.count));
    at += pad8(r.count);
    at = writeNumbers(out, at, r.data.subarray(0, r.count * r.width), headers[k]!.type === 'i32');
  }
  for (let k = 0; k < vectors.length; k++) {
    const v = vectors[k]!;
    at = writeNumbers(out, at, v.lengths.subarray(0, v.count), true);
    at = writeNumbers(out, at, v.data, vectorHeaders[k]!.type === 'i32');
  }
  return out;
}

/** Writes `data` at `at` as int32 or float64 LE, zero-padded to 8 bytes; returns the end. */
function writeNumbers(out: Buffer, at: number, data: Float64Array | Int32Array, i32: boolean): number {
  const n = data.length;
  if (i32) {
    if (LITTLE_ENDIAN) new Int32Array(out.buffer, out.byteOffset + at, n).set(data);
    else for (let i = 0; i < n; i++) out.writeInt32LE(data[i]!, at + i * 4);
    out.fill(0, at + n * 4, at + pad8(n * 4));
    return at + pad8(n * 4);
  }
  if (LITTLE_ENDIAN) out.set(new Uint8Array(data.buffer, data.byteOffset, n * 8), at);
  else for (let i = 0; i < n; i++) out.writeDoubleLE(data[i]!, at + i * 8);
  return at + n * 8;
}

/** The rows' descriptions for the JSON text, each with the narrowest number type that holds it exactly. */
export function rowsHeaders(rows: ReadonlyMap<string, RowsSnapshot>): RowsHeader[] {
  const headers: RowsHeader[] = [];
  for (const [ns, r] of rows) {
    const header = { ns, index: r.index, width: r.width, count: r.count };
    headers.push(allInt32(r.data.subarray(0, r.count * r.width)) ? { ...header, type: 'i32' } : header);
  }
  return headers;
}

/** The vectors' descriptions for the JSON text, each with the narrowest number type that holds it exactly. */
export function vectorsHeaders(vectors: ReadonlyMap<string, VectorsSnapshot>): VectorsHeader[] {
  const headers: VectorsHeader[] = [];
  for (const [ns, v] of vectors) {
    const header = { ns, index: v.index, count: v.count, total: v.data.length };
    headers.push(allInt32(v.data) ? { ...header, type: 'i32' } : header);
  }
  return headers;
}

/**
 * The JSON text and the rows of a version-2 snapshot. Every length is checked against the buffer before
 * it is used: a truncated or corrupted snapshot fails with `SnapshotFormatError`, never with a partial
 * state. The rows' numbers are copied out, so they do not hold on to `bytes`.
 */
export function decodeBinarySnapshot(bytes: Uint8Array): {
  json: string;
  rows: Map<string, RowsSnapshot>;
  vectors: Map<string, VectorsSnapshot>;
} {
  const fail = (message: string, offset: number, part: string): SnapshotFormatError =>
    new SnapshotFormatError(`state snapshot (${bytes.length} bytes): ${message}`, {
      context: { bytes: bytes.length, offset, part },
    });
  if (!isBinarySnapshot(bytes)) throw fail('not a version-2 snapshot (bad magic)', 0, 'header');
  if (bytes.length < HEADER_BYTES) throw fail('truncated header', 0, 'header');
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonBytes = view.readUInt32LE(4);
  if (HEADER_BYTES + jsonBytes > bytes.length)
    throw fail(`truncated: the JSON part needs ${jsonBytes} bytes`, HEADER_BYTES, 'json');
  const json = view.toString('utf8', HEADER_BYTES, HEADER_BYTES + jsonBytes);
  let headers: unknown;
  let vectorHeaders: unknown;
  try {
    const parsed = JSON.parse(json) as { rows?: unknown; vectors?: unknown };
    headers = parsed.rows ?? [];
    vectorHeaders = parsed.vectors ?? [];
  } catch (err) {
    throw new SnapshotFormatError(`state snapshot (${bytes.length} bytes): its JSON part does not parse`, {
      context: { bytes: bytes.length, offset: HEADER_BYTES, part: 'json' },
      cause: err,
    });
  }
  if (!Array.isArray(headers)) throw fail('its rows list is not a list', HEADER_BYTES, 'json');
  if (!Array.isArray(vectorHeaders)) throw fail('its vectors list is not a list', HEADER_BYTES, 'json');
  const rows = new Map<string, RowsSnapshot>();
  let at = pad8(HEADER_BYTES + jsonBytes);
  for (const h of headers as RowsHeader[]) {
    const ok =
      typeof h === 'object' &&
      h !== null &&
      typeof h.ns === 'string' &&
      typeof h.index === 'string' &&
      Number.isSafeInteger(h.width) &&
      h.width >= 1 &&
      Number.isSafeInteger(h.count) &&
      h.count >= 0 &&
      (h.type === undefined || h.type === 'i32');
    if (!ok) throw fail(`bad rows description ${JSON.stringify(h)}`, HEADER_BYTES, 'json');
    const wide = h.type !== 'i32';
    const dataBytes = pad8(h.count * h.width * (wide ? 8 : 4));
    if (at + pad8(h.count) + dataBytes > bytes.length)
      throw fail(
        `truncated: rows ${h.ns} need ${pad8(h.count) + dataBytes} bytes at ${at}, ${bytes.length - at} are left`,
        at,
        h.ns,
      );
    const present = Uint8Array.prototype.slice.call(bytes, at, at + h.count);
    for (let n = 0; n < h.count; n++) {
      if (present[n]! > 1) throw fail(`rows ${h.ns}: presence byte ${present[n]} of row ${n}`, at + n, h.ns);
    }
    at += pad8(h.count);
    const data = new Float64Array(h.count * h.width);
    if (!wide) {
      if (LITTLE_ENDIAN)
        data.set(new Int32Array(Uint8Array.prototype.slice.call(bytes, at, at + data.length * 4).buffer));
      else for (let i = 0; i < data.length; i++) data[i] = view.readInt32LE(at + i * 4);
    } else if (LITTLE_ENDIAN) {
      new Uint8Array(data.buffer).set(bytes.subarray(at, at + dataBytes));
    } else {
      for (let i = 0; i < data.length; i++) data[i] = view.readDoubleLE(at + i * 8);
    }
    at += dataBytes;
    rows.set(h.ns, { index: h.index, width: h.width, count: h.count, present, data });
  }
  const vectors = new Map<string, VectorsSnapshot>();
  for (const h of vectorHeaders as VectorsHeader[]) {
    const ok =
      typeof h === 'object' &&
      h !== null &&
      typeof h.ns === 'string' &&
      typeof h.index === 'string' &&
      Number.isSafeInteger(h.count) &&
      h.count >= 0 &&
      Number.isSafeInteger(h.total) &&
      h.total >= 0 &&
      (h.type === undefined || h.type === 'i32');
    if (!ok) throw fail(`bad vectors description ${JSON.stringify(h)}`, HEADER_BYTES, 'json');
    const dataBytes = pad8(h.total * (h.type === 'i32' ? 4 : 8));
    if (at + pad8(h.count * 4) + dataBytes > bytes.length)
      throw fail(
        `truncated: vectors ${h.ns} need ${pad8(h.count * 4) + dataBytes} bytes at ${at}, ${bytes.length - at} are left`,
        at,
        h.ns,
      );
    const lengths = new Int32Array(h.count);
    if (LITTLE_ENDIAN)
      lengths.set(new Int32Array(Uint8Array.prototype.slice.call(bytes, at, at + h.count * 4).buffer));
    else for (let i = 0; i < h.count; i++) lengths[i] = view.readInt32LE(at + i * 4);
    let sum = 0;
    for (let n = 0; n < h.count; n++) {
      if (lengths[n]! < 0) throw fail(`vectors ${h.ns}: length ${lengths[n]} of list ${n}`, at + n * 4, h.ns);
      sum += lengths[n]!;
    }
    if (sum !== h.total)
      throw fail(`vectors ${h.ns}: the lengths add up to ${sum}, the description says ${h.total}`, at, h.ns);
    at += pad8(h.count * 4);
    const data = new Float64Array(h.total);
    if (h.type === 'i32') {
      if (LITTLE_ENDIAN)
        data.set(new Int32Array(Uint8Array.prototype.slice.call(bytes, at, at + data.length * 4).buffer));
      else for (let i = 0; i < data.length; i++) data[i] = view.readInt32LE(at + i * 4);
    } else if (LITTLE_ENDIAN) {
      new Uint8Array(data.buffer).set(bytes.subarray(at, at + data.length * 8));
    } else {
      for (let i = 0; i < data.length; i++) data[i] = view.readDoubleLE(at + i * 8);
    }
    at += dataBytes;
    vectors.set(h.ns, { index: h.index, count: h.count, lengths, data });
  }
  if (at !== bytes.length)
    throw fail(`${bytes.length - at} bytes after the last rows: not one snapshot`, at, 'end');
  return { json, rows, vectors };
}
