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
 *
 * A delta (an incremental checkpoint's state, `GSD1`) holds what changed since the previous snapshot of a
 * chain: magic `GSD1` · u32 LE byte length of the JSON text · u32 LE CRC-32 of every byte after these 12 ·
 * the JSON text (`format`, the chain's id and the delta's index in it, the changed keyed entries, timers
 * set and deleted, every value, the keys the indexes gained, and the changed rows and lists described as
 * above with `changed` instead of all) · zero padding to 8 · per rows namespace: the changed rows' numbers
 * (int32 LE, padded to 8), their presence bytes (padded), their numbers · per vectors namespace: the
 * changed lists' numbers and lengths (int32 LE, each padded), their numbers.
 */

import { crc32 } from 'node:zlib';
import type { RowsDelta, RowsDeltaPieces, RowsPieces, RowsSnapshot } from './dense-rows.js';
import type { VectorsDelta, VectorsSnapshot } from './dense-vectors.js';
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

/**
 * A delta that does not follow the snapshot it is applied to: of another chain (another full snapshot),
 * or not the next of its chain (one lost, or out of order). Restoring it would give a wrong state.
 */
export class SnapshotChainError extends GreenStreamError<{
  readonly chain: string | null;
  readonly found: string;
  readonly index: number;
  readonly expected: number;
}> {
  override readonly name = 'SnapshotChainError';
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
 * The format's plain form, which leaves the rows untouched: a checkpoint takes its state in pieces
 * (`encodeBinarySnapshotChunksSteps`, no buffer of the whole state), and the pieces are tested against it.
 */
export function encodeBinarySnapshot(
  json: string | readonly string[],
  rows: readonly RowsSnapshot[],
  headers: readonly RowsHeader[],
  vectors: readonly VectorsSnapshot[] = [],
  vectorHeaders: readonly VectorsHeader[] = [],
): Uint8Array {
  return drain(encodeBinarySnapshotSteps(json, rows, headers, vectors, vectorHeaders));
}

/** Runs an encoding's steps to the end. */
export function drain<T>(steps: Generator<void, T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done === true) return next.value;
  }
}

/**
 * `encodeBinarySnapshot` in steps: the generator yields after each bounded piece of work (a piece of
 * the JSON text, a slice of a few MB of numbers), so a caller serializing between batches can stop at
 * a deadline; the result is the same buffer.
 */
export function* encodeBinarySnapshotSteps(
  json: string | readonly string[],
  rows: readonly (RowsSnapshot | RowsPieces)[],
  headers: readonly RowsHeader[],
  vectors: readonly VectorsSnapshot[] = [],
  vectorHeaders: readonly VectorsHeader[] = [],
): Generator<void, Uint8Array> {
  const parts = typeof json === 'string' ? [json] : json;
  const jsonBytes = yield* utf8LengthSteps(parts);
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
  const written = yield* writeUtf8Steps(out, HEADER_BYTES, parts);
  let at = pad8(HEADER_BYTES + jsonBytes);
  out.fill(0, written, at);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    out.set(r.present.subarray(0, r.count), at);
    out.fill(0, at + r.count, at + pad8(r.count));
    at += pad8(r.count);
    at = yield* writeNumbersSteps(out, at, numberPieces(r), headers[k]!.type === 'i32');
  }
  for (let k = 0; k < vectors.length; k++) {
    const v = vectors[k]!;
    at = writeNumbers(out, at, v.lengths.subarray(0, v.count), true);
    at = yield* writeNumbersSteps(out, at, v.data, vectorHeaders[k]!.type === 'i32');
  }
  return out;
}

/**
 * A binary snapshot as consecutive pieces whose bytes, one after the other, are the encoding
 * (`snapshotBytes` joins them): a full snapshot of a large state is never copied into one buffer of its
 * size. Its rows' pieces are the capture's own buffers, narrowed in place, so the snapshot's numbers are
 * held once between the barrier and the save. A plain object: it crosses a worker thread's message port.
 */
export interface SnapshotChunks {
  readonly kind: 'chunks';
  readonly chunks: readonly Uint8Array[];
  readonly byteLength: number;
}

export function isSnapshotChunks(value: unknown): value is SnapshotChunks {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'chunks';
}

/** The bytes of `chunks` in one buffer (for a store that keeps or prints the state whole). */
export function joinSnapshotChunks(chunks: SnapshotChunks): Uint8Array {
  if (chunks.chunks.length === 1) return chunks.chunks[0]!;
  const out = new Uint8Array(chunks.byteLength);
  let at = 0;
  for (const c of chunks.chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * `encodeBinarySnapshotSteps` as pieces (`SnapshotChunks`), the same bytes: the header and JSON text in
 * one buffer, then the rows' presence bytes, their numbers (each piece of `rows` becomes a chunk of its
 * own, narrowed to int32 in place when the header says so) and the zero padding as small chunks of their
 * own; the vectors' lengths and numbers likewise. The rows' and vectors' arrays are taken over: they are
 * changed in place and must not be read as numbers afterwards.
 */
export function* encodeBinarySnapshotChunksSteps(
  parts: readonly string[],
  rows: readonly (RowsSnapshot | RowsPieces)[],
  headers: readonly RowsHeader[],
  vectors: readonly VectorsSnapshot[] = [],
  vectorHeaders: readonly VectorsHeader[] = [],
): Generator<void, SnapshotChunks> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const push = (c: Uint8Array): void => {
    if (c.byteLength === 0) return;
    chunks.push(c);
    total += c.byteLength;
  };
  const padTo8 = (): void => {
    const rest = pad8(total) - total;
    if (rest > 0) push(new Uint8Array(rest));
  };
  const jsonBytes = yield* utf8LengthSteps(parts);
  const head = Buffer.allocUnsafeSlow(pad8(HEADER_BYTES + jsonBytes));
  head.set(MAGIC, 0);
  head.writeUInt32LE(jsonBytes, 4);
  const written = yield* writeUtf8Steps(head, HEADER_BYTES, parts);
  head.fill(0, written);
  push(head);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    push(r.present.subarray(0, r.count));
    padTo8();
    const i32 = headers[k]!.type === 'i32';
    let left = r.count * r.width;
    for (const piece of numberPieces(r)) {
      const numbers = piece.subarray(0, Math.min(piece.length, left));
      left -= numbers.length;
      yield* narrowSteps(numbers, i32, push);
    }
    padTo8();
  }
  for (let k = 0; k < vectors.length; k++) {
    const v = vectors[k]!;
    yield* narrowSteps(v.lengths.subarray(0, v.count), true, push);
    padTo8();
    yield* narrowSteps(v.data, vectorHeaders[k]!.type === 'i32', push);
    padTo8();
  }
  return { kind: 'chunks', chunks, byteLength: total };
}

/**
 * `data` as little-endian bytes in its own buffer (int32 when `i32`, written over the front of the same
 * buffer), handed to `push` a slice of `STEP_NUMBERS` at a time, yielding between slices.
 */
function* narrowSteps(
  data: Float64Array | Int32Array,
  i32: boolean,
  push: (c: Uint8Array) => void,
): Generator<void> {
  const n = data.length;
  if (n === 0) return;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, n * (i32 ? 4 : 8));
  if (data instanceof Int32Array || !i32) {
    if (!LITTLE_ENDIAN) {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let i = 0; i < n; i++) {
        if (data instanceof Int32Array) view.setInt32(i * 4, data[i]!, true);
        else view.setFloat64(i * 8, data[i]!, true);
      }
    }
    push(bytes);
    yield;
    return;
  }
  // Float64 to int32 over the same buffer, front to back: int32 `i` ends at byte 4i + 4, never past
  // float64 `i` (bytes 8i … 8i + 8, read just before), so nothing is overwritten before it is read.
  const out = new Int32Array(data.buffer, data.byteOffset, n);
  const view = LITTLE_ENDIAN ? undefined : new DataView(data.buffer, data.byteOffset, n * 4);
  for (let from = 0; from < n; from += STEP_NUMBERS) {
    const to = Math.min(n, from + STEP_NUMBERS);
    if (view === undefined) for (let i = from; i < to; i++) out[i] = data[i]!;
    else for (let i = from; i < to; i++) view.setInt32(i * 4, data[i]!, true);
    if (to < n) yield;
  }
  push(bytes);
  yield;
}

/** Characters of JSON text, and numbers, handled between two yields of a stepped encoding (~1–5 ms each). */
const STEP_CHARS = 1 << 20;

/** The UTF-8 length of `parts`, yielding after every `STEP_CHARS` characters measured. */
function* utf8LengthSteps(parts: readonly string[]): Generator<void, number> {
  let bytes = 0;
  let chars = 0;
  for (const part of parts) {
    bytes += Buffer.byteLength(part);
    chars += part.length;
    if (chars >= STEP_CHARS) {
      chars = 0;
      yield;
    }
  }
  return bytes;
}

/** Writes `parts` as UTF-8 into `out` from `at`, yielding likewise; returns the offset after them. */
function* writeUtf8Steps(out: Buffer, at: number, parts: readonly string[]): Generator<void, number> {
  let written = at;
  let chars = 0;
  for (const part of parts) {
    written += out.write(part, written, 'utf8');
    chars += part.length;
    if (chars >= STEP_CHARS) {
      chars = 0;
      yield;
    }
  }
  return written;
}
const STEP_NUMBERS = 1 << 19;

/** The numbers of rows as consecutive pieces. */
function numberPieces(r: RowsSnapshot | RowsPieces): readonly Float64Array[] {
  return 'pieces' in r ? r.pieces : [r.data.subarray(0, r.count * r.width)];
}

/**
 * `rowsHeaders` of one set of rows, checking a piece of at most `STEP_NUMBERS` numbers between two yields:
 * the whole state of integers checked at once held the loop up to ~50 ms.
 */
export function* rowsHeaderSteps(ns: string, r: RowsSnapshot | RowsPieces): Generator<void, RowsHeader> {
  const header = { ns, index: r.index, width: r.width, count: r.count };
  for (const piece of numberPieces(r)) {
    for (let from = 0; from < piece.length; from += STEP_NUMBERS) {
      const int32 = allInt32(piece.subarray(from, Math.min(piece.length, from + STEP_NUMBERS)));
      yield;
      if (!int32) return header;
    }
  }
  return { ...header, type: 'i32' };
}

/** `writeNumbers` of consecutive pieces, a slice of `STEP_NUMBERS` at a time, yielding between slices. */
function* writeNumbersSteps(
  out: Buffer,
  at: number,
  data: Float64Array | Int32Array | readonly Float64Array[],
  i32: boolean,
): Generator<void, number> {
  const pieces = Array.isArray(data)
    ? (data as readonly Float64Array[])
    : [data as Float64Array | Int32Array];
  const width = i32 ? 4 : 8;
  let n = 0;
  for (const piece of pieces) {
    for (let from = 0; from < piece.length; from += STEP_NUMBERS) {
      const to = Math.min(piece.length, from + STEP_NUMBERS);
      writeRaw(out, at + (n + from) * width, piece.subarray(from, to), i32);
      if (to < piece.length) yield;
    }
    n += piece.length;
    yield;
  }
  const end = at + n * width;
  out.fill(0, end, at + pad8(n * width));
  yield;
  return at + pad8(n * width);
}

/** Writes `data` at `at` as int32 or float64 LE, without padding. */
function writeRaw(out: Buffer, at: number, data: Float64Array | Int32Array, i32: boolean): void {
  const n = data.length;
  if (i32) {
    if (LITTLE_ENDIAN) new Int32Array(out.buffer, out.byteOffset + at, n).set(data);
    else for (let i = 0; i < n; i++) out.writeInt32LE(data[i]!, at + i * 4);
  } else if (LITTLE_ENDIAN) out.set(new Uint8Array(data.buffer, data.byteOffset, n * 8), at);
  else for (let i = 0; i < n; i++) out.writeDoubleLE(data[i]!, at + i * 8);
}

/** Writes `data` at `at` as int32 or float64 LE, zero-padded to 8 bytes; returns the end. */
function writeNumbers(out: Buffer, at: number, data: Float64Array | Int32Array, i32: boolean): number {
  const n = data.length;
  writeRaw(out, at, data, i32);
  const width = i32 ? 4 : 8;
  out.fill(0, at + n * width, at + pad8(n * width));
  return at + pad8(n * width);
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

const DELTA_MAGIC = [0x47, 0x53, 0x44, 0x31]; // "GSD1"
const DELTA_HEADER_BYTES = 12;
/** The delta encoding this build writes and reads; another is refused. */
export const DELTA_FORMAT = 'greenstream-delta/1';

/** How a delta's changed rows of one namespace are described in its JSON text. */
export interface RowsDeltaHeader {
  readonly ns: string;
  readonly index: string;
  readonly width: number;
  readonly count: number;
  readonly changed: number;
  readonly type?: 'i32';
}

/** How a delta's changed lists of one namespace are described in its JSON text. */
export interface VectorsDeltaHeader {
  readonly ns: string;
  readonly index: string;
  readonly count: number;
  readonly changed: number;
  readonly total: number;
  readonly type?: 'i32';
}

/** True when `bytes` starts like a delta (`GSD1`); a delta is never in pieces. */
export function isSnapshotDelta(bytes: Uint8Array | string | SnapshotChunks): bytes is Uint8Array {
  return (
    bytes instanceof Uint8Array &&
    bytes.length >= 4 &&
    bytes[0] === DELTA_MAGIC[0] &&
    bytes[1] === DELTA_MAGIC[1] &&
    bytes[2] === DELTA_MAGIC[2] &&
    bytes[3] === DELTA_MAGIC[3]
  );
}

/** The changed rows' descriptions for a delta's JSON text, each with its narrowest number type. */
export function rowsDeltaHeaders(rows: ReadonlyMap<string, RowsDelta | RowsDeltaPieces>): RowsDeltaHeader[] {
  const headers: RowsDeltaHeader[] = [];
  for (const [ns, r] of rows) headers.push(drain(rowsDeltaHeaderSteps(ns, r)));
  return headers;
}

/** `rowsDeltaHeaders` of one set of changed rows, checking `STEP_NUMBERS` numbers between two yields. */
export function* rowsDeltaHeaderSteps(
  ns: string,
  r: RowsDelta | RowsDeltaPieces,
): Generator<void, RowsDeltaHeader> {
  const header = { ns, index: r.index, width: r.width, count: r.count, changed: r.ids.length };
  for (const piece of deltaPieces(r)) {
    for (let from = 0; from < piece.length; from += STEP_NUMBERS) {
      const int32 = allInt32(piece.subarray(from, Math.min(piece.length, from + STEP_NUMBERS)));
      yield;
      if (!int32) return header;
    }
  }
  return { ...header, type: 'i32' };
}

function deltaPieces(r: RowsDelta | RowsDeltaPieces): readonly Float64Array[] {
  return 'pieces' in r ? r.pieces : [r.data];
}

/** The changed lists' descriptions for a delta's JSON text, each with its narrowest number type. */
export function vectorsDeltaHeaders(vectors: ReadonlyMap<string, VectorsDelta>): VectorsDeltaHeader[] {
  const headers: VectorsDeltaHeader[] = [];
  for (const [ns, v] of vectors) {
    const header = { ns, index: v.index, count: v.count, changed: v.ids.length, total: v.data.length };
    headers.push(allInt32(v.data) ? { ...header, type: 'i32' } : header);
  }
  return headers;
}

/** One delta buffer: its JSON text (which lists `rowHeaders` and `vectorHeaders`), then the changed rows and lists. */
export function encodeSnapshotDelta(
  json: readonly string[],
  rows: readonly (RowsDelta | RowsDeltaPieces)[],
  rowHeaders: readonly RowsDeltaHeader[],
  vectors: readonly VectorsDelta[],
  vectorHeaders: readonly VectorsDeltaHeader[],
): Uint8Array {
  return drain(encodeSnapshotDeltaSteps(json, rows, rowHeaders, vectors, vectorHeaders));
}

/** `encodeSnapshotDelta` in steps (see `encodeBinarySnapshotSteps`). */
export function* encodeSnapshotDeltaSteps(
  json: readonly string[],
  rows: readonly (RowsDelta | RowsDeltaPieces)[],
  rowHeaders: readonly RowsDeltaHeader[],
  vectors: readonly VectorsDelta[],
  vectorHeaders: readonly VectorsDeltaHeader[],
): Generator<void, Uint8Array> {
  const jsonBytes = yield* utf8LengthSteps(json);
  let total = pad8(DELTA_HEADER_BYTES + jsonBytes);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    const k = r.ids.length;
    total += pad8(k * 4) + pad8(k) + pad8(k * r.width * (rowHeaders[i]!.type === 'i32' ? 4 : 8));
  }
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i]!;
    total += 2 * pad8(v.ids.length * 4) + pad8(v.data.length * (vectorHeaders[i]!.type === 'i32' ? 4 : 8));
  }
  const out = Buffer.allocUnsafeSlow(total);
  out.set(DELTA_MAGIC, 0);
  out.writeUInt32LE(jsonBytes, 4);
  const written = yield* writeUtf8Steps(out, DELTA_HEADER_BYTES, json);
  let at = pad8(DELTA_HEADER_BYTES + jsonBytes);
  out.fill(0, written, at);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    at = writeNumbers(out, at, r.ids, true);
    out.set(r.present, at);
    out.fill(0, at + r.present.length, at + pad8(r.present.length));
    at += pad8(r.present.length);
    at = yield* writeNumbersSteps(out, at, deltaPieces(r), rowHeaders[i]!.type === 'i32');
  }
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i]!;
    at = writeNumbers(out, at, v.ids, true);
    at = writeNumbers(out, at, v.lengths, true);
    at = yield* writeNumbersSteps(out, at, v.data, vectorHeaders[i]!.type === 'i32');
  }
  // The checksum a few MB at a time: zlib's CRC-32 continues from the value so far.
  let sum = 0;
  for (let from = DELTA_HEADER_BYTES; from < total; from += STEP_NUMBERS * 8) {
    sum = crc32(out.subarray(from, Math.min(total, from + STEP_NUMBERS * 8)), sum);
    yield;
  }
  out.writeUInt32LE(sum, 8);
  return out;
}

/**
 * The JSON text and the changed rows and lists of a delta. The checksum and every length are checked
 * before anything is used: a truncated, corrupted or foreign delta fails with `SnapshotFormatError`.
 */
export function decodeSnapshotDelta(bytes: Uint8Array): {
  json: string;
  rows: Map<string, RowsDelta>;
  vectors: Map<string, VectorsDelta>;
} {
  const fail = (message: string, offset: number, part: string): SnapshotFormatError =>
    new SnapshotFormatError(`state delta (${bytes.length} bytes): ${message}`, {
      context: { bytes: bytes.length, offset, part },
    });
  if (!isSnapshotDelta(bytes)) throw fail('not a delta (bad magic)', 0, 'header');
  if (bytes.length < DELTA_HEADER_BYTES) throw fail('truncated header', 0, 'header');
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sum = crc32(view.subarray(DELTA_HEADER_BYTES));
  if (sum !== view.readUInt32LE(8))
    throw fail(
      `checksum ${sum} does not match the header's ${view.readUInt32LE(8)}: corrupt or truncated`,
      8,
      'header',
    );
  const jsonBytes = view.readUInt32LE(4);
  if (DELTA_HEADER_BYTES + jsonBytes > bytes.length)
    throw fail(`truncated: the JSON part needs ${jsonBytes} bytes`, DELTA_HEADER_BYTES, 'json');
  const json = view.toString('utf8', DELTA_HEADER_BYTES, DELTA_HEADER_BYTES + jsonBytes);
  let parsed: { format?: unknown; rows?: unknown; vectors?: unknown };
  try {
    parsed = JSON.parse(json) as typeof parsed;
  } catch (err) {
    throw new SnapshotFormatError(`state delta (${bytes.length} bytes): its JSON part does not parse`, {
      context: { bytes: bytes.length, offset: DELTA_HEADER_BYTES, part: 'json' },
      cause: err,
    });
  }
  if (parsed.format !== DELTA_FORMAT)
    throw fail(
      `unknown delta format ${JSON.stringify(parsed.format)} (this build reads ${DELTA_FORMAT})`,
      DELTA_HEADER_BYTES,
      'json',
    );
  const rowHeaders = parsed.rows ?? [];
  const vectorHeaders = parsed.vectors ?? [];
  if (!Array.isArray(rowHeaders) || !Array.isArray(vectorHeaders))
    throw fail('its rows or vectors list is not a list', DELTA_HEADER_BYTES, 'json');
  let at = pad8(DELTA_HEADER_BYTES + jsonBytes);
  const need = (n: number, part: string): void => {
    if (at + n > bytes.length) throw fail(`truncated: ${part} needs ${n} bytes at ${at}`, at, part);
  };
  const ints = (k: number, part: string): Int32Array => {
    need(pad8(k * 4), part);
    const out = new Int32Array(k);
    for (let i = 0; i < k; i++) out[i] = view.readInt32LE(at + i * 4);
    at += pad8(k * 4);
    return out;
  };
  const numbers = (k: number, i32: boolean, part: string): Float64Array => {
    const size = pad8(k * (i32 ? 4 : 8));
    need(size, part);
    const out = new Float64Array(k);
    if (i32) for (let i = 0; i < k; i++) out[i] = view.readInt32LE(at + i * 4);
    else if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(at, at + k * 8));
    else for (let i = 0; i < k; i++) out[i] = view.readDoubleLE(at + i * 8);
    at += size;
    return out;
  };
  const checkIds = (ids: Int32Array, count: number, ns: string): void => {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i]! < 0 || ids[i]! >= count || (i > 0 && ids[i]! <= ids[i - 1]!))
        throw fail(`${ns}: changed item ${ids[i]} out of order or beyond ${count}`, at, ns);
    }
  };
  const whole = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  const rows = new Map<string, RowsDelta>();
  for (const h of rowHeaders as RowsDeltaHeader[]) {
    const ok =
      typeof h === 'object' &&
      h !== null &&
      typeof h.ns === 'string' &&
      typeof h.index === 'string' &&
      whole(h.width) &&
      h.width >= 1 &&
      whole(h.count) &&
      whole(h.changed) &&
      h.changed <= h.count &&
      (h.type === undefined || h.type === 'i32');
    if (!ok) throw fail(`bad rows description ${JSON.stringify(h)}`, DELTA_HEADER_BYTES, 'json');
    const ids = ints(h.changed, h.ns);
    checkIds(ids, h.count, h.ns);
    need(pad8(h.changed), h.ns);
    const present = Uint8Array.prototype.slice.call(bytes, at, at + h.changed);
    for (let i = 0; i < h.changed; i++)
      if (present[i]! > 1) throw fail(`rows ${h.ns}: presence byte ${present[i]}`, at + i, h.ns);
    at += pad8(h.changed);
    const data = numbers(h.changed * h.width, h.type === 'i32', h.ns);
    rows.set(h.ns, { index: h.index, width: h.width, count: h.count, ids, present, data });
  }
  const vectors = new Map<string, VectorsDelta>();
  for (const h of vectorHeaders as VectorsDeltaHeader[]) {
    const ok =
      typeof h === 'object' &&
      h !== null &&
      typeof h.ns === 'string' &&
      typeof h.index === 'string' &&
      whole(h.count) &&
      whole(h.changed) &&
      h.changed <= h.count &&
      whole(h.total) &&
      (h.type === undefined || h.type === 'i32');
    if (!ok) throw fail(`bad vectors description ${JSON.stringify(h)}`, DELTA_HEADER_BYTES, 'json');
    const ids = ints(h.changed, h.ns);
    checkIds(ids, h.count, h.ns);
    const lengths = ints(h.changed, h.ns);
    let sum = 0;
    for (let i = 0; i < lengths.length; i++) {
      if (lengths[i]! < 0) throw fail(`vectors ${h.ns}: length ${lengths[i]}`, at, h.ns);
      sum += lengths[i]!;
    }
    if (sum !== h.total)
      throw fail(`vectors ${h.ns}: the lengths add up to ${sum}, not ${h.total}`, at, h.ns);
    const data = numbers(h.total, h.type === 'i32', h.ns);
    vectors.set(h.ns, { index: h.index, count: h.count, ids, lengths, data });
  }
  if (at !== bytes.length)
    throw fail(`${bytes.length - at} bytes after the last lists: not one delta`, at, 'end');
  return { json, rows, vectors };
}
