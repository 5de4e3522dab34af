/**
 * The state store the core owns. Operators keep per-key state, timers and their input watermark here,
 * never in closures, so that `snapshot()` captures a whole pipeline at a checkpoint and `restore()` brings
 * a restarted worker back to exactly that point. Values must be plain JSON data (no Map, Date, class).
 */

import { randomBytes } from 'node:crypto';
import { DenseKeyIndex } from './dense-keys.js';
import {
  DenseRows,
  type RowsCapture,
  type RowsDelta,
  type RowsDeltaCapture,
  type RowsDeltaPieces,
  type RowsPieces,
  type RowsSnapshot,
} from './dense-rows.js';
import {
  DenseVectors,
  type VectorsCapture,
  type VectorsDelta,
  type VectorsDeltaCapture,
  type VectorsSnapshot,
} from './dense-vectors.js';
import {
  DELTA_FORMAT,
  decodeBinarySnapshot,
  decodeSnapshotDelta,
  drain,
  encodeBinarySnapshotChunksSteps,
  encodeSnapshotDeltaSteps,
  isBinarySnapshot,
  isSnapshotChunks,
  joinSnapshotChunks,
  type RowsDeltaHeader,
  type RowsHeader,
  rowsDeltaHeaderSteps,
  rowsHeaderSteps,
  SnapshotChainError,
  type SnapshotChunks,
  SnapshotFormatError,
  vectorsDeltaHeaders,
  vectorsHeaders,
} from './snapshot-codec.js';
import { ColumnEntries, entriesOf } from './snapshot-columns.js';
import { popTime, pushTime } from './time-heap.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface KeyedState<S> {
  get(key: string): S | undefined;
  set(key: string, value: S): void;
  delete(key: string): void;
  has(key: string): boolean;
  keys(): IterableIterator<string>;
  entries(): IterableIterator<[string, S]>;
  readonly size: number;
}

export interface ValueState<S> {
  get(): S;
  set(value: S): void;
}

export interface Timer {
  readonly key: string;
  readonly name: string;
  readonly time: number;
}

interface HeapEntry extends Timer {
  /** `timerId(key, name)`, computed once: the heap checks it for every entry it pops. */
  readonly id: string;
  /** Whether `byId` maps `id` to this entry: false once replaced, deleted or fired. */
  live: boolean;
  /** The key's dense number when the entry is cached in `byNumber`, else -1. */
  n: number;
}

/** The entries of one timer name cached by dense key number, and how many slots hold one. */
interface NumberedEntries {
  readonly entries: (HeapEntry | undefined)[];
  cached: number;
}

/**
 * Event-time timers of one operator: at most one timer per (key, name), replaced when set again, like a
 * Beam timer family. Timers are grouped by time: a min-heap of the distinct times, and per time its
 * entries, sorted by (name, key) once when the time comes due. Windowed stages set one timer per key at
 * the same instant (every meter's hour ends together): a heap of the entries themselves compared key
 * strings ~2·log₂(n) times per firing, while a sort of an hour's entries, set in nearly the order they
 * fire, costs about one comparison each. Deleted and replaced entries are skipped lazily.
 */
export class TimerQueue {
  private readonly byId = new Map<string, HeapEntry>();
  /** The distinct times with entries, a min-heap of numbers. */
  private times: number[] = [];
  private readonly byTime = new Map<number, TimeBucket>();
  /**
   * Per timer name, the entries set through `setAt` by dense key number: setting a timer again at the
   * time it already has (a window's end, for every element of the window) then costs no key string.
   * A cached entry is used only while live, which makes it the one `byId` holds; it leaves the cache when
   * it fires, is deleted or replaced, and a name leaves with its last entry: windowed stages use a timer
   * name per window (`end:<start>`), and a cache kept per name held every timer ever set (an entry and a
   * slot per meter-hour, ~35 MB for 5,000 meters × 4 days, growing by the day).
   */
  private readonly byNumber = new Map<string, NumberedEntries>();
  /**
   * The ids of timers set, replaced, deleted or fired since the last snapshot began: a delta's timers.
   * Undefined once they outnumber twice the live timers (a bulk run sets and fires a timer per meter-hour):
   * the delta then carries every live timer, no more than a full snapshot does.
   */
  private changed: Set<string> | undefined = new Set();

  private mark(id: string): void {
    const changed = this.changed;
    if (changed === undefined) return;
    changed.add(id);
    if (changed.size > 2 * this.byId.size + 1024) this.changed = undefined;
  }

  set(key: string, name: string, time: number): void {
    this.put(key, name, time);
  }

  /** `set` for a key whose dense number is `n`. */
  setAt(n: number, key: string, name: string, time: number): void {
    let numbered = this.byNumber.get(name);
    if (numbered === undefined) {
      numbered = { entries: [], cached: 0 };
      this.byNumber.set(name, numbered);
    }
    const cached = numbered.entries[n];
    if (cached?.live && cached.time === time && cached.key === key) return;
    const entry = this.put(key, name, time);
    if (entry === cached) return;
    // A live entry is cached under one number at most: the one its key has now.
    if (entry.n >= 0) this.uncache(entry);
    if (cached !== undefined) this.uncache(cached);
    const slot = this.byNumber.get(name) ?? { entries: [], cached: 0 };
    if (slot.cached === 0) this.byNumber.set(name, slot);
    slot.entries[n] = entry;
    slot.cached++;
    entry.n = n;
  }

  private put(key: string, name: string, time: number): HeapEntry {
    const id = timerId(key, name);
    const old = this.byId.get(id);
    if (old?.time === time) return old;
    if (old !== undefined) this.retire(old);
    const entry: HeapEntry = { key, name, time, id, live: true, n: -1 };
    this.byId.set(id, entry);
    this.mark(id);
    this.push(entry);
    return entry;
  }

  delete(key: string, name: string): void {
    const id = timerId(key, name);
    const old = this.byId.get(id);
    if (old === undefined) return;
    this.retire(old);
    this.byId.delete(id);
    this.mark(id);
  }

  /** Marks an entry replaced, deleted or fired, and takes it out of the number cache. */
  private retire(entry: HeapEntry): void {
    entry.live = false;
    if (entry.n >= 0) this.uncache(entry);
  }

  private uncache(entry: HeapEntry): void {
    const numbered = this.byNumber.get(entry.name);
    if (numbered !== undefined && numbered.entries[entry.n] === entry) {
      numbered.entries[entry.n] = undefined;
      if (--numbered.cached === 0) this.byNumber.delete(entry.name);
    }
    entry.n = -1;
  }

  /** `get` for a key whose dense number is `n`. */
  getAt(n: number, key: string, name: string): number | undefined {
    const cached = this.byNumber.get(name)?.entries[n];
    if (cached?.live && cached.key === key) return cached.time;
    return this.get(key, name);
  }

  get(key: string, name: string): number | undefined {
    return this.byId.get(timerId(key, name))?.time;
  }

  get size(): number {
    return this.byId.size;
  }

  /** Removes and returns the earliest timer due at `watermark`, or undefined. */
  popDue(watermark: number): Timer | undefined {
    while (this.times.length > 0) {
      const time = this.times[0]!;
      if (time > watermark) return undefined;
      const bucket = this.byTime.get(time)!;
      if (!bucket.sorted) {
        // Entries set while the time was being fired join the ones still to fire, in order.
        const rest = bucket.cursor === 0 ? bucket.entries : bucket.entries.slice(bucket.cursor);
        rest.sort(before);
        bucket.entries = rest;
        bucket.cursor = 0;
        bucket.sorted = true;
      }
      const entries = bucket.entries;
      while (bucket.cursor < entries.length) {
        const top = entries[bucket.cursor++]!;
        // `live` says whether `byId` still maps the id to this entry, without the lookup.
        if (!top.live) continue;
        this.retire(top);
        this.byId.delete(top.id);
        this.mark(top.id);
        return { key: top.key, name: top.name, time: top.time };
      }
      this.byTime.delete(time);
      popTime(this.times);
    }
    return undefined;
  }

  snapshot(): Json {
    return [...this.byId.values()].map((t) => [t.key, t.name, t.time]);
  }

  /** The live timers, in `snapshot`'s order; the entries are never changed, only replaced. Starts the next delta. */
  entries(): readonly Timer[] {
    this.changed = new Set();
    return [...this.byId.values()];
  }

  /**
   * The timers set and deleted since the last snapshot began (of either kind), or every live timer
   * (`all`) when they were more, and starts the next delta.
   */
  takeChanges(): { all: readonly Timer[] } | { set: Timer[]; deleted: [key: string, name: string][] } {
    const changed = this.changed;
    if (changed === undefined || changed.size >= this.byId.size) return { all: this.entries() };
    this.changed = new Set();
    const set: Timer[] = [];
    const deleted: [string, string][] = [];
    for (const id of changed) {
      const entry = this.byId.get(id);
      if (entry !== undefined) set.push(entry);
      else {
        const at = id.indexOf('\u0000');
        deleted.push([id.slice(at + 1), id.slice(0, at)]);
      }
    }
    return { set, deleted };
  }

  restore(data: Json): void {
    for (const entry of this.byId.values()) entry.live = false;
    this.byId.clear();
    this.byNumber.clear();
    this.times = [];
    this.byTime.clear();
    for (const row of data as [string, string, number][]) this.set(row[0], row[1], row[2]);
    this.changed = new Set();
  }

  private push(entry: HeapEntry): void {
    const bucket = this.byTime.get(entry.time);
    if (bucket !== undefined) {
      bucket.entries.push(entry);
      bucket.sorted = false;
      return;
    }
    this.byTime.set(entry.time, { entries: [entry], cursor: 0, sorted: false });
    pushTime(this.times, entry.time);
  }
}

/** The entries of one time: `entries[cursor…]` still to fire, in (name, key) order once `sorted`. */
interface TimeBucket {
  entries: HeapEntry[];
  cursor: number;
  sorted: boolean;
}

/**
 * Timers due at the same time fire in (name, key) order, not in the order they were set: a worker restored
 * from a checkpoint then fires them exactly as the uninterrupted worker would have.
 */
function before(a: HeapEntry, b: HeapEntry): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function timerId(key: string, name: string): string {
  return `${name}\u0000${key}`;
}

export interface StoreSnapshot {
  /** 1: the JSON text; 2: the binary encoding (`snapshot-codec.ts`). Both restore the same way. */
  readonly version: 1 | 2;
  readonly keyed: Record<string, [string, Json][]>;
  readonly timers: Record<string, Json>;
  readonly values: Record<string, Json>;
  /**
   * The dense key indexes, each as its keys in number order; absent when the store has none (and in
   * checkpoints written before they existed: a restore then numbers the keys afresh).
   */
  readonly indexes?: Record<string, string[]>;
  /** The numeric rows (`DenseRows`) by namespace; absent when the store has none. */
  readonly rows?: Record<string, RowsSnapshot>;
  /** The numeric lists (`DenseVectors`) by namespace; absent when the store has none. */
  readonly vectors?: Record<string, VectorsSnapshot>;
  /** The incremental chain a full snapshot starts (see `StateStore.beginSnapshot`); absent otherwise. */
  readonly chain?: string;
}

/** The JSON part of a delta (see `snapshot-codec.ts`). */
interface DeltaJson {
  readonly format: string;
  readonly chain: string;
  readonly index: number;
  readonly keyed: Record<string, [string, Json][]>;
  readonly replaced: string[];
  readonly timers: Record<
    string,
    { all: [string, string, number][] } | { set: [string, string, number][]; deleted: [string, string][] }
  >;
  readonly values: Record<string, Json>;
  readonly indexes?: Record<string, { from: number; keys: string[] }>;
}

/**
 * A serialized snapshot: JSON text (version 1) for a store without numeric rows or lists, else binary
 * (version 2).
 */
export type SnapshotData = string | Uint8Array;

/**
 * A snapshot as a checkpoint saves it: `SnapshotData`, or a full binary snapshot in pieces
 * (`SnapshotChunks`, the same bytes) that a store writes out piece by piece.
 */
export type SnapshotState = SnapshotData | SnapshotChunks;

/** The snapshot in one piece: chunks joined (a copy), anything else as it is. */
export function snapshotData(state: SnapshotState): SnapshotData {
  return isSnapshotChunks(state) ? joinSnapshotChunks(state) : state;
}

/** Bytes of a binary snapshot, UTF-16 code units of a JSON one. */
export function snapshotLength(state: SnapshotState): number {
  return isSnapshotChunks(state) ? state.byteLength : state.length;
}

/**
 * Turns a namespace's keyed entries of a snapshot written before its state moved into rows (one without
 * these rows), as they are restored: those of the full snapshot, then those of each delta on it.
 */
export interface LegacyRowsUpgrade {
  /** The keyed namespace that held the whole state. */
  readonly namespace: string;
  /**
   * Writes the numbers of the old entry `value` of the key numbered `n` into its new row at
   * `data[offset …]` (and into other rows, should the state be split) and returns what the keyed entry
   * holds from now on (undefined: nothing).
   */
  readonly upgrade: (value: unknown, n: number, data: Float64Array, offset: number) => unknown;
}

/** Timers printed in one piece of a full snapshot's steps (~5 ms). */
const TIMERS_PER_PIECE = 4096;

/**
 * A snapshot taken while the graph goes on: `StateStore.beginSnapshot()` fixes the content at that
 * instant, `step` serializes it a slice at a time between batches, `finish` completes it and returns
 * the text `serialize()` would have returned at the barrier.
 */
export interface SnapshotInProgress {
  /** Whether the result is a delta on the previous snapshot of an incremental chain (else a full one). */
  readonly delta: boolean;
  /** Serializes entries until `deadline` (a `performance.now()` time); true once everything is done. */
  step(deadline: number): boolean;
  /** Completes the snapshot; a binary full one is joined into one buffer (see `finishState`). */
  finish(): SnapshotData;
  /**
   * Completes the snapshot as a checkpoint saves it: a binary full snapshot in pieces (`SnapshotChunks`),
   * never copied into one buffer of its size; a delta or JSON text as `finish` returns it.
   */
  finishState(): SnapshotState;
}

/**
 * What a keyed namespace's delta carries, as tracked since the previous snapshot began and handed over
 * whole at the barrier (see `KeyedMap.detachChanges`): the entries looked up or set by dense number
 * (`dirtyAt`) or key, and those added, in map order.
 */
interface KeyedChanges {
  readonly dirtyAt: Uint8Array;
  readonly dirtyKeys: ReadonlySet<string>;
  readonly added: ReadonlySet<string>;
  readonly index: DenseKeyIndex | undefined;
}

/** The binary snapshot's version once its keyed entries are in columns; version 2 restores as before. */
const COLUMNS_VERSION = 3;

/** A copy of `value` when it is a plain object of numbers, booleans, null and strings (else undefined). */
function flatCopy(value: unknown): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype)
    return undefined;
  const copy: Record<string, unknown> = {};
  for (const name of Object.keys(value)) {
    const x = (value as Record<string, unknown>)[name];
    if (!(typeof x === 'number' || typeof x === 'string' || typeof x === 'boolean' || x === null))
      return undefined;
    if (name === '__proto__') return undefined;
    copy[name] = x;
  }
  return copy;
}

/** Keys listed, or entries serialized, between two looks at the deadline. */
const KEYS_PER_STEP = 64;
const LISTED_PER_STEP = 1024;
const TEXTS_PER_BLOCK = 1024;
/** Index keys printed in one piece of a snapshot's steps. */
const KEYS_PER_PIECE = 4096;

/**
 * The entries of one keyed namespace at a barrier, serialized in their order. An entry about to change
 * (looked up for an element, replaced, deleted) is serialized first, so the entries left for later
 * still hold their barrier value when `step` reaches them. A delta's keys are listed in the steps too,
 * from the changes handed over at the barrier: the barrier itself does nothing per key.
 */
class KeyedCapture {
  /** Entries' texts not yet joined into a block. */
  private readonly texts: string[] = [];
  /** Entries' texts joined `TEXTS_PER_BLOCK` at a time: no one join of a whole namespace in one step. */
  private readonly blocks: string[] = [];
  /**
   * Entries serialized ahead of the cursor because they were about to change: their text, or in columns
   * a copy of a flat value.
   */
  private readonly early = new Map<string, string | Record<string, unknown>>();
  /** A full capture of a binary snapshot gathers its entries in columns (see `snapshot-columns.ts`). */
  private readonly columns: ColumnEntries | undefined;
  /** Keys whose text is final: serialized early, or (one text per entry) passed by the cursor. */
  private readonly done = new Set<string>();
  private cursor = 0;
  /** The keys to serialize, in order: all of them at once, or a delta's as `step` lists them. */
  private readonly keys: string[];
  /** A delta's changes still to be listed into `keys` (undefined once listed, or for a full capture). */
  private listing: Iterator<string> | undefined;
  /** A delta's changed keys listed so far (each once). */
  private readonly listed = new Set<string>();
  private dirtyFrom = 0;
  private phase: 'keys' | 'numbers' | 'added' = 'keys';
  /**
   * A full capture's keys not listed into `keys` yet: the map's own order, of which the first
   * `unlistedLeft` are the keys at the barrier (a key added since comes after them). Listed in the steps,
   * not at the barrier (six namespaces of 50,000 keys held it 20–40 ms); a deletion, which would take a
   * key out of that order, lists them all first (`listAll`).
   */
  private unlisted: Iterator<string> | undefined;
  private unlistedLeft = 0;

  /**
   * `entries`: the keys to serialize, in order, all of them present; `all`, every key of the map as it
   * is now, listed in the steps; or a delta's changes, whose keys `step` lists (an entry outside them is
   * not serialized when it changes).
   */
  constructor(
    private readonly map: KeyedMap<unknown>,
    entries: string[] | 'all' | KeyedChanges,
    columnar = false,
  ) {
    this.columns = columnar ? new ColumnEntries((v) => jsonOf(v) ?? 'null') : undefined;
    if (entries === 'all') {
      this.keys = [];
      this.changes = undefined;
      this.unlistedLeft = map.size;
      if (map.size > 0) this.unlisted = Map.prototype.keys.call(map) as Iterator<string>;
    } else if (Array.isArray(entries)) {
      this.keys = entries;
      this.changes = undefined;
    } else {
      this.keys = [];
      this.changes = entries;
      this.listing = entries.dirtyKeys.values();
    }
  }

  private readonly changes: KeyedChanges | undefined;

  get complete(): boolean {
    return this.listing === undefined && this.unlisted === undefined && this.cursor >= this.keys.length;
  }

  /** Lists up to `max` more of a full capture's keys. */
  private listKeys(max: number): void {
    const it = this.unlisted;
    if (it === undefined) return;
    for (let i = 0; i < max && this.unlistedLeft > 0; i++) {
      const next = it.next();
      if (next.done === true) break;
      this.keys.push(next.value);
      this.unlistedLeft--;
    }
    if (this.unlistedLeft === 0 || max === Number.POSITIVE_INFINITY) this.unlisted = undefined;
  }

  /** Before an entry is deleted: lists every key of the barrier still to list. */
  listAll(): void {
    this.listKeys(Number.POSITIVE_INFINITY);
  }

  /** Whether a delta carries `key` (numbered `n` when known). */
  private wanted(key: string, n: number | undefined): boolean {
    const c = this.changes;
    if (c === undefined) return true;
    if (c.dirtyKeys.has(key) || c.added.has(key)) return true;
    const at = n ?? c.index?.numberOf(key);
    return at !== undefined && at < c.dirtyAt.length && c.dirtyAt[at] === 1;
  }

  /** Before `key`'s value changes: keeps its barrier value. */
  copy(key: string, value: unknown, n?: number): void {
    if (this.done.has(key) || !this.wanted(key, n)) return;
    this.done.add(key);
    const flat = this.columns === undefined ? undefined : flatCopy(value);
    this.early.set(key, flat ?? (jsonOf([key, value]) as string));
  }

  /**
   * Lists up to `LISTED_PER_STEP` more of a delta's keys, in the order a restore sets them: the entries
   * changed in place (by key, then by number), then those added, in map order. False once all are listed.
   */
  private list(): boolean {
    const c = this.changes!;
    const { keys, listed } = this;
    let budget = LISTED_PER_STEP;
    if (this.phase === 'keys') {
      for (;;) {
        if (budget-- === 0) return true;
        const next = this.listing!.next();
        if (next.done === true) break;
        const k = next.value;
        // Without a deletion every key looked up or set is still there; those added are listed apart.
        if (!c.added.has(k) && !listed.has(k)) {
          listed.add(k);
          keys.push(k);
        }
      }
      this.phase = 'numbers';
    }
    if (this.phase === 'numbers') {
      const { dirtyAt, index } = c;
      if (index !== undefined) {
        const end = Math.min(dirtyAt.length, this.dirtyFrom + 16 * LISTED_PER_STEP);
        for (let n = this.dirtyFrom; n < end; n++) {
          if (dirtyAt[n] !== 1) continue;
          const k = index.keyOf(n)!;
          if (!c.added.has(k) && !listed.has(k)) {
            listed.add(k);
            keys.push(k);
          }
        }
        this.dirtyFrom = end;
        if (end < dirtyAt.length) return true;
      }
      this.phase = 'added';
      this.listing = c.added.values();
      return true;
    }
    for (;;) {
      if (budget-- === 0) return true;
      const next = this.listing!.next();
      if (next.done === true) break;
      keys.push(next.value);
    }
    this.listing = undefined;
    return false;
  }

  step(deadline: number): boolean {
    const { keys, texts } = this;
    for (;;) {
      if (this.cursor >= keys.length) {
        if (this.unlisted !== undefined) this.listKeys(16 * LISTED_PER_STEP);
        else if (this.listing === undefined || !this.list()) {
          if (this.cursor >= keys.length) break;
        }
      }
      const end = Math.min(this.cursor + KEYS_PER_STEP, keys.length);
      const columns = this.columns;
      if (columns !== undefined) {
        // A key the cursor passed is not marked done: should it change later, `copy` keeps a copy that is
        // never read, which is cheaper than a set of every key (a few keys change during a capture).
        const early = this.early;
        for (; this.cursor < end; this.cursor++) {
          const key = keys[this.cursor]!;
          const held = early.size === 0 ? undefined : early.get(key);
          if (typeof held === 'string') columns.addText(held);
          else columns.add(key, held ?? this.map.peek(key));
        }
        if (performance.now() >= deadline) break;
        continue;
      }
      for (; this.cursor < end; this.cursor++) {
        const key = keys[this.cursor]!;
        const early = this.early.get(key);
        if (early !== undefined) {
          texts.push(early as string);
        } else {
          this.done.add(key);
          texts.push(jsonOf([key, this.map.peek(key)]) as string);
        }
      }
      if (texts.length >= TEXTS_PER_BLOCK) {
        this.blocks.push(texts.join(','));
        texts.length = 0;
      }
      if (performance.now() >= deadline) break;
    }
    return this.complete;
  }

  /** The entries' JSON text in pieces of at most `TEXTS_PER_BLOCK` entries: `[`, blocks and commas, `]`. */
  pieces(): string[] {
    if (this.columns !== undefined) return this.columns.pieces();
    if (this.texts.length > 0) {
      this.blocks.push(this.texts.join(','));
      this.texts.length = 0;
    }
    const out = ['['];
    for (let i = 0; i < this.blocks.length; i++) {
      if (i > 0) out.push(',');
      out.push(this.blocks[i]!);
    }
    out.push(']');
    return out;
  }

  text(): string {
    return this.pieces().join('');
  }
}

/**
 * Keyed state of one operator. While a snapshot is in progress, an entry is serialized before its
 * value can change: a lookup (operators mutate the state object they get), a replacement, a deletion.
 */
class KeyedMap<S> extends Map<string, S> implements DenseKeyedState<S> {
  capture: KeyedCapture | undefined;
  /**
   * The values again by dense key number, when a stage numbers its keys (`bind`); the map stays the
   * record of the entries, their order and the snapshot, and every change goes to both.
   */
  private slots: (S | undefined)[] = [];
  private index: DenseKeyIndex | undefined;
  /**
   * Change tracking since the last snapshot began, for a delta: entries looked up, set or added, by dense
   * number (`dirtyAt`) or key; `reordered` once an entry was deleted or values were handed out by
   * iteration, when the delta carries every entry (a key deleted and added again moves to the end).
   */
  private dirtyAt = new Uint8Array(0);
  private dirtyKeys = new Set<string>();
  /** Keys added since the last snapshot began, in the order the map holds them (while not `reordered`). */
  private added = new Set<string>();
  private reordered = false;

  private markAt(n: number): void {
    if (n >= this.dirtyAt.length) {
      const grown = new Uint8Array(Math.max(64, 2 * n + 2));
      grown.set(this.dirtyAt);
      this.dirtyAt = grown;
    }
    this.dirtyAt[n] = 1;
  }

  /** Starts tracking changes afresh (a snapshot begins, or the content was restored). */
  resetChanges(): void {
    this.dirtyAt.fill(0);
    this.dirtyKeys.clear();
    this.added = new Set();
    this.reordered = false;
  }

  /**
   * Hands over what changed since the last snapshot began, for a delta, and starts tracking the next one:
   * the trackers themselves, not a list of keys (the capture lists them in its steps), or every key
   * (`all`) once the order changed (an entry deleted, or values handed out by iteration).
   */
  detachChanges(): { all: string[] } | KeyedChanges {
    if (this.reordered) {
      const all = [...super.keys()];
      this.resetChanges();
      return { all };
    }
    const changes = {
      dirtyAt: this.dirtyAt,
      dirtyKeys: this.dirtyKeys,
      added: this.added,
      index: this.index,
    };
    this.dirtyAt = new Uint8Array(this.dirtyAt.length);
    this.dirtyKeys = new Set();
    this.added = new Set();
    return changes;
  }

  bind(index: DenseKeyIndex): void {
    if (this.index === index) return;
    if (this.index !== undefined) throw new Error('keyed state is numbered by another dense key index');
    this.index = index;
    this.reslot();
  }

  /** Rebuilds the slots from the map, for the numbers of the index as it is now. */
  reslot(): void {
    const index = this.index;
    if (index === undefined) return;
    this.slots = [];
    for (const [k, v] of super.entries()) this.slots[index.intern(k)] = v;
  }

  getAt(n: number, key: string): S | undefined {
    const value = this.slots[n];
    if (value !== undefined) {
      if (this.capture !== undefined) this.capture.copy(key, value, n);
      this.markAt(n);
    }
    return value;
  }

  setAt(n: number, key: string, value: S): void {
    const old = this.slots[n];
    // The same object again (mutated in place): the map holds it already.
    if (old === value) return;
    if (this.capture !== undefined && old !== undefined) this.capture.copy(key, old, n);
    super.set(key, value);
    this.slots[n] = value;
    if (old === undefined) this.added.add(key);
    else this.markAt(n);
  }

  deleteAt(n: number, key: string): void {
    const old = this.slots[n];
    if (old === undefined) return;
    if (this.capture !== undefined) {
      this.capture.listAll();
      this.capture.copy(key, old, n);
    }
    super.delete(key);
    this.slots[n] = undefined;
    this.reordered = true;
  }

  /** The value without copying it: for the snapshot itself. */
  peek(key: string): S | undefined {
    return super.get(key);
  }

  override get(key: string): S | undefined {
    const value = super.get(key);
    if (value !== undefined) {
      if (this.capture !== undefined) this.capture.copy(key, value);
      this.dirtyKeys.add(key);
    }
    return value;
  }

  override set(key: string, value: S): this {
    const old = super.get(key);
    if (this.capture !== undefined && old !== undefined) this.capture.copy(key, old);
    if (old === undefined && !super.has(key)) this.added.add(key);
    else this.dirtyKeys.add(key);
    if (this.index !== undefined) this.slots[this.index.intern(key)] = value;
    return super.set(key, value);
  }

  override delete(key: string): boolean {
    if (this.capture !== undefined) {
      this.capture.listAll();
      const old = super.get(key);
      if (old !== undefined) this.capture.copy(key, old);
    }
    if (this.index !== undefined) {
      const n = this.index.numberOf(key);
      if (n !== undefined) this.slots[n] = undefined;
    }
    const deleted = super.delete(key);
    if (deleted) this.reordered = true;
    return deleted;
  }

  override clear(): void {
    this.capture?.step(Number.POSITIVE_INFINITY);
    this.slots = [];
    super.clear();
    this.reordered = true;
  }

  // Iteration hands out values that may then change: the snapshot completes first, and a delta carries
  // every entry.
  override entries(): MapIterator<[string, S]> {
    this.capture?.step(Number.POSITIVE_INFINITY);
    this.reordered = true;
    return super.entries();
  }

  override values(): MapIterator<S> {
    this.capture?.step(Number.POSITIVE_INFINITY);
    this.reordered = true;
    return super.values();
  }

  override forEach(fn: (value: S, key: string, map: Map<string, S>) => void, thisArg?: unknown): void {
    this.capture?.step(Number.POSITIVE_INFINITY);
    this.reordered = true;
    super.forEach(fn, thisArg);
  }

  override [Symbol.iterator](): MapIterator<[string, S]> {
    this.capture?.step(Number.POSITIVE_INFINITY);
    this.reordered = true;
    return super[Symbol.iterator]();
  }
}

/** Keyed state also addressed by dense key number, for `keyedProcess` with a `DenseKey`. */
export interface DenseKeyedState<S> extends KeyedState<S> {
  /** The value of `key`, whose number is `n`. */
  getAt(n: number, key: string): S | undefined;
  setAt(n: number, key: string, value: S): void;
  deleteAt(n: number, key: string): void;
}

export class StateStore {
  private readonly keyedStates = new Map<string, KeyedMap<unknown>>();
  private readonly indexes = new Map<string, DenseKeyIndex>();
  private snapshotting: SnapshotInProgress | undefined;
  private readonly timerQueues = new Map<string, TimerQueue>();
  private readonly values = new Map<string, unknown>();
  private readonly rowSets = new Map<string, { rows: DenseRows; legacy?: LegacyRowsUpgrade }>();
  /** Rows of the last restored snapshot whose namespace was not registered yet. */
  private readonly pendingRows = new Map<string, RowsSnapshot>();
  private readonly vectorSets = new Map<string, DenseVectors>();
  /** Lists of the last restored snapshot whose namespace was not registered yet. */
  private readonly pendingVectors = new Map<string, VectorsSnapshot>();
  /** The values whose snapshot is a frozen copy printed in steps (see `value`). */
  private readonly freezers = new Map<string, (value: unknown) => readonly unknown[]>();
  /** A snapshot was restored: rows registered later that it lacks upgrade their legacy entries. */
  private restoredAny = false;
  /**
   * The rows the last restored snapshot lacked, by their legacy namespace: the entries its deltas carry
   * there are upgraded into them too.
   */
  private readonly upgrading = new Map<string, { rows: DenseRows; legacy: LegacyRowsUpgrade }>();
  /** The incremental chain the next delta extends (see `beginSnapshot`): its id, and its last index. */
  private chain: { id: string; index: number } | undefined;
  /** The chain of the last restored snapshot and its last delta applied, which the next delta must follow. */
  private restoredChain: { id: string; index: number } | undefined;
  /** How many keys each index held when the last snapshot began: a delta carries those added since. */
  private readonly indexBase = new Map<string, number>();

  /** Per-key state of the operator named `namespace`. */
  keyed<S>(namespace: string): KeyedState<S> {
    let map = this.keyedStates.get(namespace);
    if (map === undefined) {
      map = new KeyedMap();
      this.keyedStates.set(namespace, map);
    }
    return map as KeyedMap<S>;
  }

  /**
   * The dense key index named `name`, shared by every stage that numbers its keys with it and kept in
   * snapshots. It only grows: meant for a bounded key set (a fleet's meters), not for keys such as days.
   */
  denseKeys(name: string): DenseKeyIndex {
    let index = this.indexes.get(name);
    if (index === undefined) {
      index = new DenseKeyIndex();
      this.indexes.set(name, index);
    }
    return index;
  }

  /** Per-key state of `namespace`, also addressed by the numbers of the dense key index `index`. */
  denseKeyed<S>(namespace: string, index: string): DenseKeyedState<S> {
    const map = this.keyed<S>(namespace) as KeyedMap<S>;
    map.bind(this.denseKeys(index));
    return map;
  }

  /**
   * Fixed-width numeric rows of `namespace`, numbered by the dense key index `index` (see `DenseRows`).
   * `legacy` brings back a checkpoint written while the state was keyed JSON entries.
   */
  rows(namespace: string, index: string, width: number, legacy?: LegacyRowsUpgrade): DenseRows {
    const existing = this.rowSets.get(namespace);
    if (existing !== undefined) {
      if (existing.rows.width !== width || existing.rows.index !== index)
        throw new Error(`rows ${namespace} are registered with another width or index`);
      return existing.rows;
    }
    const rows = new DenseRows(index, width);
    this.denseKeys(index);
    this.rowSets.set(namespace, legacy === undefined ? { rows } : { rows, legacy });
    const pending = this.pendingRows.get(namespace);
    if (pending !== undefined) {
      this.pendingRows.delete(namespace);
      rows.restore(pending);
    } else if (this.restoredAny && legacy !== undefined) {
      this.upgradeLegacy(rows, legacy);
    }
    return rows;
  }

  /** Numeric lists of varying length of `namespace`, numbered by the dense key index `index` (see `DenseVectors`). */
  vectors(namespace: string, index: string): DenseVectors {
    const existing = this.vectorSets.get(namespace);
    if (existing !== undefined) {
      if (existing.index !== index) throw new Error(`vectors ${namespace} are registered with another index`);
      return existing;
    }
    const vectors = new DenseVectors(index);
    this.denseKeys(index);
    this.vectorSets.set(namespace, vectors);
    const pending = this.pendingVectors.get(namespace);
    if (pending !== undefined) {
      this.pendingVectors.delete(namespace);
      vectors.restore(pending);
    }
    return vectors;
  }

  /**
   * The share of rows and lists changed since the last snapshot began (0 without any): above half, a
   * delta costs about what a full snapshot does (a bulk run changes every meter between checkpoints).
   */
  changedShare(): number {
    let changed = 0;
    let total = 0;
    for (const { rows } of this.rowSets.values()) {
      changed += rows.changedCount();
      total += rows.size;
    }
    for (const lists of this.vectorSets.values()) {
      changed += lists.changedCount();
      total += lists.used;
    }
    return total === 0 ? 0 : changed / total;
  }

  /** Whether snapshots are binary (version 2): the store holds numeric rows or lists. */
  private get binary(): boolean {
    return this.rowSets.size > 0 || this.vectorSets.size > 0;
  }

  timers(namespace: string): TimerQueue {
    let queue = this.timerQueues.get(namespace);
    if (queue === undefined) {
      queue = new TimerQueue();
      this.timerQueues.set(namespace, queue);
    }
    return queue;
  }

  /**
   * A single operator-wide value (an input watermark, a source position). `freeze`, for a large list that
   * changes in place (a sort buffer), copies its items as they are at a snapshot's barrier, in the form a
   * checkpoint holds (a shallow copy of their arrays is enough when the rest never changes; a list that
   * keeps live objects packs them here): every snapshot takes the value through it, and a streamed one
   * prints the copy an item at a time in its steps, not in one piece at the barrier.
   */
  value<S>(name: string, initial: S, freeze?: (value: S) => readonly unknown[]): ValueState<S> {
    const values = this.values;
    if (freeze !== undefined) this.freezers.set(name, freeze as (value: unknown) => readonly unknown[]);
    return {
      // Falls back to `initial` so a value survives a restore from a snapshot taken before it existed.
      get: () => {
        // One lookup in the common case: operators read their value once per element.
        const v = values.get(name);
        return v !== undefined || values.has(name) ? (v as S) : initial;
      },
      set: (v: S) => {
        values.set(name, v);
      },
    };
  }

  /** A snapshot begun and not yet finished. */
  get snapshotInProgress(): boolean {
    return this.snapshotting !== undefined;
  }

  namespaces(): string[] {
    return [
      ...new Set([
        ...this.keyedStates.keys(),
        ...this.timerQueues.keys(),
        ...this.values.keys(),
        ...this.rowSets.keys(),
        ...this.vectorSets.keys(),
      ]),
    ];
  }

  snapshot(): StoreSnapshot {
    const keyed: Record<string, [string, Json][]> = {};
    for (const [ns, map] of this.keyedStates)
      keyed[ns] = [...map].map(([k, v]) => [k, structuredClone(v) as Json]);
    const timers: Record<string, Json> = {};
    for (const [ns, q] of this.timerQueues) timers[ns] = q.snapshot();
    const values: Record<string, Json> = {};
    for (const [k, v] of this.values) {
      const freeze = this.freezers.get(k);
      values[k] = structuredClone(freeze !== undefined && Array.isArray(v) ? freeze(v) : v) as Json;
    }
    const version = this.binary ? 2 : 1;
    if (this.indexes.size === 0) return { version, keyed, timers, values };
    const indexes: Record<string, string[]> = {};
    for (const [name, index] of this.indexes) indexes[name] = index.snapshot();
    if (!this.binary) return { version, keyed, timers, values, indexes };
    const rows: Record<string, RowsSnapshot> = {};
    for (const [ns, set] of this.rowSets) rows[ns] = set.rows.snapshot();
    if (this.vectorSets.size === 0) return { version, keyed, timers, values, indexes, rows };
    const vectors: Record<string, VectorsSnapshot> = {};
    for (const [ns, v] of this.vectorSets) vectors[ns] = v.snapshot();
    return { version, keyed, timers, values, indexes, rows, vectors };
  }

  /**
   * The JSON text of a snapshot — exactly `serializeSnapshot(this.snapshot())` — written from the live
   * state without copying it first. A checkpoint needs the text only, and cloning every key's state and
   * then stringifying it through a replacer cost ~10× the plain `JSON.stringify` (1.9 s against 0.2 s for
   * 5,000 meters, once per checkpoint). The replacer is kept only for a value holding a non-finite number.
   * A store with numeric rows is written as `serializeSnapshot` would (rows as plain arrays): checkpoints
   * take `beginSnapshot`'s binary encoding instead.
   */
  serialize(): string {
    if (this.binary) return serializeSnapshot(this.snapshot());
    return this.beginSnapshot().finish() as string;
  }

  /**
   * Starts a snapshot of the content as it is now, to be serialized a slice at a time while the graph
   * goes on (see `SnapshotInProgress`). Timers and values are small and taken at once; numeric rows are
   * copied and keyed entries serialized as `step` reaches them, or just before they change. The result is
   * JSON text (version 1) for a store without numeric rows, else the binary encoding (version 2, see
   * `snapshot-codec.ts`). One snapshot at a time.
   *
   * `incremental` (a store with numeric rows or lists only): the snapshot starts or extends a chain. A
   * full one names a new chain (its JSON's `chain` member); with `delta`, when a chain was started by this
   * store since its last restore, the result is a delta (`GSD1`) of what changed since the chain's
   * previous snapshot: the changed keyed entries, rows and lists, the timers set and deleted, the keys the
   * indexes gained, and every value. `SnapshotInProgress.delta` tells which it is.
   */
  beginSnapshot(options: { incremental?: boolean; delta?: boolean } = {}): SnapshotInProgress {
    if (this.snapshotting !== undefined) throw new Error('a state snapshot is already in progress');
    const binary = this.binary;
    const incremental = binary && options.incremental === true;
    const delta = incremental && options.delta === true && this.chain !== undefined;
    let chainMember = '';
    if (!incremental) this.chain = undefined;
    else if (!delta) {
      this.chain = { id: randomBytes(8).toString('hex'), index: 0 };
      chainMember = `,"chain":${JSON.stringify(this.chain.id)}`;
    } else this.chain!.index += 1;
    const chain = this.chain;
    // Timers are taken as their entries, whose key, name and time never change (a timer set again is a
    // new entry): printed later, in a step, not in this one piece at the barrier.
    const timerEntries = new Map<string, readonly Timer[]>();
    const timerChanges = new Map<string, ReturnType<TimerQueue['takeChanges']>>();
    for (const [ns, q] of this.timerQueues) {
      if (delta) timerChanges.set(ns, q.takeChanges());
      else timerEntries.set(ns, q.entries());
    }
    const timers: Record<string, string> = {};
    /** The text of a full snapshot's timers so far, by namespace, in pieces of `TIMERS_PER_PIECE`. */
    const timerTexts = new Map<string, string[]>();
    const values: Record<string, string | undefined> = {};
    // A frozen list is printed an item at a time in the steps below: its text is `[item,item,…]`.
    const frozen = new Map<string, { items: readonly unknown[]; texts: string[] }>();
    for (const [k, v] of this.values) {
      const freeze = this.freezers.get(k);
      if (freeze !== undefined && Array.isArray(v)) {
        frozen.set(k, { items: freeze(v), texts: [] });
        values[k] = '';
      } else values[k] = jsonOf(v);
    }
    // The indexes' keys as they are at the barrier (an index only grows: a copy of its list), printed in
    // the steps, a block at a time.
    const indexKeys: [name: string, from: number, keys: string[]][] = [];
    for (const [name, index] of this.indexes) {
      const from = delta ? (this.indexBase.get(name) ?? 0) : 0;
      const keys = delta ? index.snapshot().slice(from) : index.snapshot();
      indexKeys.push([name, from, keys]);
      this.indexBase.set(name, from + keys.length);
    }
    /** `,"indexes":{…}` in pieces of at most `KEYS_PER_PIECE` keys (nothing for a store without indexes). */
    function* indexParts(parts: string[]): Generator<void> {
      if (indexKeys.length === 0) return;
      parts.push(',"indexes":{');
      for (let i = 0; i < indexKeys.length; i++) {
        const [name, from, keys] = indexKeys[i]!;
        parts.push(`${i > 0 ? ',' : ''}${JSON.stringify(name)}:${delta ? `{"from":${from},"keys":[` : '['}`);
        for (let at = 0; at < keys.length; at += KEYS_PER_PIECE) {
          const block = JSON.stringify(keys.slice(at, at + KEYS_PER_PIECE));
          parts.push(`${at > 0 ? ',' : ''}${block.slice(1, -1)}`);
          yield;
        }
        parts.push(delta ? ']}' : ']');
      }
      parts.push('}');
    }
    /** `{"ns":…}` of the timers, a full snapshot's in its pieces (see the steps below). */
    function timerParts(parts: string[]): void {
      parts.push('{');
      let first = true;
      for (const ns of Object.keys(timers)) {
        parts.push(`${first ? '' : ','}${JSON.stringify(ns)}:`);
        first = false;
        const pieces = timerTexts.get(ns);
        if (pieces === undefined) {
          parts.push(timers[ns]!);
          continue;
        }
        parts.push('[');
        for (let i = 0; i < pieces.length; i++) parts.push(i > 0 ? `,${pieces[i]}` : pieces[i]!);
        parts.push(']');
      }
      parts.push('}');
    }
    const captures = new Map<string, KeyedCapture>();
    const replaced: string[] = [];
    for (const [ns, map] of this.keyedStates) {
      let capture: KeyedCapture;
      if (delta) {
        const changes = map.detachChanges();
        if ('all' in changes) replaced.push(ns);
        capture = new KeyedCapture(map, 'all' in changes ? changes.all : changes);
      } else {
        map.resetChanges();
        capture = new KeyedCapture(map, 'all', binary);
      }
      map.capture = capture;
      captures.set(ns, capture);
    }
    // Rows are copied before keyed entries are serialized: a copy is cheap and frees the rows' capture
    // (a check on every row opened) soonest.
    const rowCaptures = new Map<string, RowsCapture | RowsDeltaCapture>();
    for (const [ns, set] of this.rowSets)
      rowCaptures.set(ns, delta ? set.rows.beginDeltaCapture() : set.rows.beginCapture());
    const vectorCaptures = new Map<string, VectorsCapture | VectorsDeltaCapture>();
    for (const [ns, v] of this.vectorSets)
      vectorCaptures.set(ns, delta ? v.beginDeltaCapture() : v.beginCapture());
    const release = (): void => {
      for (const map of this.keyedStates.values()) map.capture = undefined;
      for (const capture of rowCaptures.values()) capture.finish();
      for (const capture of vectorCaptures.values()) capture.finish();
      this.snapshotting = undefined;
    };
    let result: SnapshotState | undefined;
    let encoding: Generator<void, SnapshotState> | undefined;
    // The JSON text in pieces, written one after the other into the snapshot's buffer: joined into one
    // string first, the keyed entries (most of it) would be copied twice more.
    function* keyedParts(parts: string[]): Generator<void> {
      let first = true;
      for (const [ns, capture] of captures) {
        parts.push(`${first ? '' : ','}${JSON.stringify(ns)}:`);
        for (const piece of capture.pieces()) parts.push(piece);
        first = false;
        yield;
      }
    }
    function* encodeFull(): Generator<void, SnapshotChunks> {
      const rows = new Map<string, RowsPieces>();
      for (const [ns, capture] of rowCaptures) rows.set(ns, (capture as RowsCapture).result());
      const headers: RowsHeader[] = [];
      for (const [ns, r] of rows) headers.push(yield* rowsHeaderSteps(ns, r));
      const lists = new Map<string, VectorsSnapshot>();
      for (const [ns, capture] of vectorCaptures) lists.set(ns, (capture as VectorsCapture).result());
      const listHeaders = vectorsHeaders(lists);
      const listsMember = lists.size === 0 ? '' : `,"vectors":${JSON.stringify(listHeaders)}`;
      // Version 3: keyed entries in columns (a build that reads version 2 only refuses it).
      const parts: string[] = [`{"version":${COLUMNS_VERSION},"keyed":{`];
      yield* keyedParts(parts);
      parts.push('},"timers":');
      timerParts(parts);
      parts.push(`,"values":${jsonObject(values)}`);
      yield* indexParts(parts);
      parts.push(`,"rows":${JSON.stringify(headers)}${listsMember}${chainMember}}`);
      // In pieces: the rows' capture buffers become the snapshot's own, and no buffer of the whole
      // state's size is made (at 50,000 meters it doubled the checkpoint's ~70 MB at its peak).
      return yield* encodeBinarySnapshotChunksSteps(
        parts,
        [...rows.values()],
        headers,
        [...lists.values()],
        listHeaders,
      );
    }
    function* encodeDelta(): Generator<void, Uint8Array> {
      const rows = new Map<string, RowsDeltaPieces>();
      for (const [ns, capture] of rowCaptures) rows.set(ns, (capture as RowsDeltaCapture).result());
      const headers: RowsDeltaHeader[] = [];
      for (const [ns, r] of rows) headers.push(yield* rowsDeltaHeaderSteps(ns, r));
      const lists = new Map<string, VectorsDelta>();
      for (const [ns, capture] of vectorCaptures) lists.set(ns, (capture as VectorsDeltaCapture).result());
      const listHeaders = vectorsDeltaHeaders(lists);
      yield;
      const parts: string[] = [
        `{"format":${JSON.stringify(DELTA_FORMAT)},"chain":${JSON.stringify(chain!.id)},"index":${chain!.index},"keyed":{`,
      ];
      yield* keyedParts(parts);
      parts.push(`},"replaced":${JSON.stringify(replaced)},"timers":`);
      timerParts(parts);
      parts.push(`,"values":${jsonObject(values)}`);
      yield* indexParts(parts);
      parts.push(`,"rows":${JSON.stringify(headers)},"vectors":${JSON.stringify(listHeaders)}}`);
      return yield* encodeSnapshotDeltaSteps(
        parts,
        [...rows.values()],
        headers,
        [...lists.values()],
        listHeaders,
      );
    }
    const job: SnapshotInProgress = {
      delta,
      step: (deadline) => {
        if (result !== undefined) return true;
        for (const capture of rowCaptures.values()) {
          if (!capture.step(deadline)) return false;
        }
        for (const capture of vectorCaptures.values()) {
          if (!capture.step(deadline)) return false;
        }
        for (const capture of captures.values()) {
          if (!capture.step(deadline)) return false;
        }
        for (const [k, list] of frozen) {
          const { items, texts } = list;
          while (texts.length < items.length) {
            texts.push(jsonOf(items[texts.length]) ?? 'null');
            if (performance.now() >= deadline && texts.length < items.length) return false;
          }
          values[k] = `[${texts.join(',')}]`;
          frozen.delete(k);
        }
        for (const [ns, entries] of timerEntries) {
          if (ns in timers) continue;
          // A piece of timers at a time: a namespace of a timer per meter printed at once held the loop
          // ~90 ms. Each piece is the text of its timers as items of the whole list.
          let pieces = timerTexts.get(ns);
          if (pieces === undefined) {
            pieces = [];
            timerTexts.set(ns, pieces);
          }
          while (pieces.length * TIMERS_PER_PIECE < entries.length) {
            const from = pieces.length * TIMERS_PER_PIECE;
            const piece = entries.slice(from, from + TIMERS_PER_PIECE).map((t) => [t.key, t.name, t.time]);
            pieces.push((jsonOf(piece) as string).slice(1, -1));
            if (performance.now() >= deadline && pieces.length * TIMERS_PER_PIECE < entries.length)
              return false;
          }
          // Its pieces stay pieces of the snapshot's JSON text (see `timerParts`).
          timers[ns] = '';
          if (performance.now() >= deadline && timerEntries.size > Object.keys(timers).length) return false;
        }
        for (const [ns, changes] of timerChanges) {
          if (ns in timers) continue;
          timers[ns] = jsonOf(
            'all' in changes
              ? { all: changes.all.map((t) => [t.key, t.name, t.time]) }
              : { set: changes.set.map((t) => [t.key, t.name, t.time]), deleted: changes.deleted },
          ) as string;
          if (performance.now() >= deadline && timerChanges.size > Object.keys(timers).length) return false;
        }
        if (!binary) {
          const keyed: Record<string, string> = {};
          for (const [ns, capture] of captures) keyed[ns] = capture.text();
          const tail: string[] = [];
          timerParts(tail);
          tail.push(`,"values":${jsonObject(values)}`);
          drain(indexParts(tail));
          result = `{"version":1,"keyed":${jsonObject(keyed)},"timers":${tail.join('')}}`;
        } else {
          // The encoding in steps too: at 50,000 meters it copies ~70 MB and writes ~20 MB of text, which in
          // one piece held the loop ~0.3 s.
          encoding ??= delta ? encodeDelta() : encodeFull();
          for (;;) {
            const next = encoding.next();
            if (next.done === true) {
              result = next.value;
              break;
            }
            if (performance.now() >= deadline) return false;
          }
        }
        release();
        return true;
      },
      finish: () => snapshotData(job.finishState()),
      finishState: () => {
        job.step(Number.POSITIVE_INFINITY);
        return result as SnapshotState;
      },
    };
    this.snapshotting = job;
    return job;
  }

  /**
   * Applies the deltas of an incremental chain, in order, on top of the content restored from the
   * chain's full snapshot (`restore`). Every delta is decoded and checked before any is applied: one that
   * is corrupt, truncated or of an unknown format fails with `SnapshotFormatError`, one of another chain,
   * missing or out of order with `SnapshotChainError`, and the content is then left as restored.
   */
  applyDeltas(deltas: readonly Uint8Array[]): void {
    if (deltas.length === 0) return;
    const chain = this.restoredChain;
    const decoded = deltas.map((bytes, i) => {
      const d = decodeSnapshotDelta(bytes);
      const parsed = parseSnapshotJson(d.json) as unknown as DeltaJson;
      const expected = (chain?.index ?? 0) + i + 1;
      if (chain === undefined || parsed.chain !== chain.id)
        throw new SnapshotChainError(
          `state delta ${i + 1} of ${deltas.length} belongs to chain ${String(parsed.chain)}, not to the restored snapshot's ${chain?.id ?? '(none: not an incremental snapshot)'}`,
          {
            context: { chain: chain?.id ?? null, found: String(parsed.chain), index: parsed.index, expected },
          },
        );
      if (parsed.index !== expected)
        throw new SnapshotChainError(
          `state delta ${i + 1} of ${deltas.length} of chain ${chain.id} is number ${String(parsed.index)}, expected ${expected}: a delta is missing or out of order`,
          { context: { chain: chain.id, found: chain.id, index: parsed.index, expected } },
        );
      return { ...d, parsed };
    });
    for (const d of decoded) this.applyDelta(d.parsed, d.rows, d.vectors);
    this.restoredChain = { id: chain!.id, index: chain!.index + deltas.length };
  }

  private applyDelta(
    d: DeltaJson,
    rows: ReadonlyMap<string, RowsDelta>,
    vectors: ReadonlyMap<string, VectorsDelta>,
  ): void {
    for (const [name, { from, keys }] of Object.entries(d.indexes ?? {})) {
      const index = this.denseKeys(name);
      if (index.size !== from)
        throw new SnapshotChainError(
          `state delta ${d.index}: index ${name} holds ${index.size} keys, the delta extends ${from}`,
          { context: { chain: d.chain, found: d.chain, index: d.index, expected: d.index } },
        );
      for (const key of keys) index.intern(key);
    }
    const replaced = new Set(d.replaced);
    for (const [ns, entries] of Object.entries(d.keyed)) {
      const map = this.keyed<unknown>(ns) as KeyedMap<unknown>;
      // A delta of a layout before the rows: its entries are the old ones, upgraded as the full snapshot's.
      const legacy = this.upgrading.get(ns);
      if (replaced.has(ns)) {
        map.clear();
        legacy?.rows.clear();
      }
      if (legacy === undefined) for (const [k, v] of entries) map.set(k, v);
      else for (const [k, v] of entries) this.upgradeEntry(map, legacy.rows, legacy.legacy, k, v);
    }
    for (const [ns, changes] of Object.entries(d.timers)) {
      const q = this.timers(ns);
      if ('all' in changes) q.restore(changes.all);
      else {
        for (const [key, name] of changes.deleted) q.delete(key, name);
        for (const [key, name, time] of changes.set) q.set(key, name, time);
      }
    }
    this.values.clear();
    for (const [k, v] of Object.entries(d.values)) this.values.set(k, v);
    for (const [ns, r] of rows) {
      const set = this.rowSets.get(ns);
      if (set !== undefined) set.rows.applyDelta(r);
      else {
        // Not registered yet: applied to the restored rows it waits with.
        const pending = new DenseRows(r.index, r.width);
        const base = this.pendingRows.get(ns);
        if (base !== undefined) pending.restore(base);
        pending.applyDelta(r);
        this.pendingRows.set(ns, pending.snapshot());
      }
    }
    for (const [ns, l] of vectors) {
      const set = this.vectorSets.get(ns);
      if (set !== undefined) set.applyDelta(l);
      else {
        const pending = new DenseVectors(l.index);
        const base = this.pendingVectors.get(ns);
        if (base !== undefined) pending.restore(base);
        pending.applyDelta(l);
        this.pendingVectors.set(ns, pending.snapshot());
      }
    }
    for (const map of this.keyedStates.values()) map.resetChanges();
  }

  /**
   * Replaces the whole content with a snapshot. Maps are refilled in place, so operators that already hold
   * a `KeyedState` keep working on the restored data.
   */
  restore(snapshot: StoreSnapshot): void {
    if (snapshot.version !== 1 && snapshot.version !== 2)
      throw new Error(`unsupported state snapshot version ${String(snapshot.version)}`);
    for (const map of this.keyedStates.values()) map.clear();
    // Before the entries: their slots take the restored numbers. Without indexes in the snapshot (one
    // written before they existed) keys are numbered afresh as their entries come back.
    for (const index of this.indexes.values()) index.restore([]);
    for (const [name, keys] of Object.entries(snapshot.indexes ?? {})) this.denseKeys(name).restore(keys);
    for (const [ns, entries] of Object.entries(snapshot.keyed)) {
      const map = this.keyed<unknown>(ns) as Map<string, unknown>;
      for (const [k, v] of entries) map.set(k, v);
    }
    for (const q of this.timerQueues.values()) q.restore([]);
    for (const [ns, data] of Object.entries(snapshot.timers)) this.timers(ns).restore(data);
    this.values.clear();
    for (const [k, v] of Object.entries(snapshot.values)) this.values.set(k, v);
    this.pendingRows.clear();
    const restored = snapshot.rows ?? {};
    for (const [ns, r] of Object.entries(restored)) {
      const rows = asRowsSnapshot(r);
      const set = this.rowSets.get(ns);
      if (set === undefined) this.pendingRows.set(ns, rows);
      else set.rows.restore(rows);
    }
    // Rows a snapshot lacks were not written yet when it was taken (or by a store without them): the
    // keyed entries of their legacy namespace hold what the rows hold now.
    this.restoredAny = true;
    this.upgrading.clear();
    for (const [ns, set] of this.rowSets) if (!(ns in restored)) set.rows.clear();
    this.pendingVectors.clear();
    const restoredLists = snapshot.vectors ?? {};
    for (const [ns, l] of Object.entries(restoredLists)) {
      const lists = asVectorsSnapshot(l);
      const set = this.vectorSets.get(ns);
      if (set === undefined) this.pendingVectors.set(ns, lists);
      else set.restore(lists);
    }
    for (const [ns, set] of this.vectorSets) if (!(ns in restoredLists)) set.clear();
    // After every clear: an upgrade may fill other rows than its own.
    for (const [ns, set] of this.rowSets) {
      if (!(ns in restored) && set.legacy !== undefined) this.upgradeLegacy(set.rows, set.legacy);
    }
    // The next incremental snapshot starts a chain of its own; deltas of the restored one may follow.
    this.chain = undefined;
    this.restoredChain = typeof snapshot.chain === 'string' ? { id: snapshot.chain, index: 0 } : undefined;
    for (const map of this.keyedStates.values()) map.resetChanges();
  }

  /**
   * Makes the next delta (`beginSnapshot({ incremental: true, delta: true })`) extend the chain of the
   * last restored snapshot and its deltas, as if this store had taken them: changes are tracked from the
   * restore on. False (nothing changes) when the restored snapshot starts no chain. For a worker whose
   * checkpoint store still holds that chain (`CheckpointStore.extendsLoaded`) and whose state layout is
   * the checkpoint's (an upgrade rewrites entries: its first checkpoint must be full).
   */
  continueRestoredChain(): boolean {
    const restored = this.restoredChain;
    if (restored === undefined) return false;
    this.chain = { id: restored.id, index: restored.index };
    // A delta carries the keys an index gained since the chain's last snapshot: here, since the restore.
    for (const [name, index] of this.indexes) this.indexBase.set(name, index.size);
    return true;
  }

  /** Moves the legacy keyed entries of a snapshot without these rows into them. */
  private upgradeLegacy(rows: DenseRows, legacy: LegacyRowsUpgrade): void {
    this.upgrading.set(legacy.namespace, { rows, legacy });
    const map = this.keyedStates.get(legacy.namespace);
    if (map === undefined || map.size === 0) return;
    for (const [key, value] of [...map.entries()]) this.upgradeEntry(map, rows, legacy, key, value);
  }

  /** Moves one legacy entry into its key's row; the entry keeps what the upgrade leaves for it. */
  private upgradeEntry(
    map: KeyedMap<unknown>,
    rows: DenseRows,
    legacy: LegacyRowsUpgrade,
    key: string,
    value: unknown,
  ): void {
    const n = this.denseKeys(rows.index).intern(key);
    const offset = rows.create(n);
    const next = legacy.upgrade(value, n, rows.data, offset);
    if (next === undefined) map.delete(key);
    else map.set(key, next);
  }
}

/** Rows from a decoded snapshot, or from JSON (`serializeSnapshot`), where the buffers are plain arrays. */
function asRowsSnapshot(r: RowsSnapshot): RowsSnapshot {
  const present =
    r.present instanceof Uint8Array ? r.present : Uint8Array.from(r.present as ArrayLike<number>);
  const data = r.data instanceof Float64Array ? r.data : Float64Array.from(r.data as ArrayLike<number>);
  return { index: r.index, width: r.width, count: r.count, present, data };
}

/** Lists from a decoded snapshot, or from JSON (`serializeSnapshot`), where the buffers are plain arrays. */
function asVectorsSnapshot(l: VectorsSnapshot): VectorsSnapshot {
  const lengths =
    l.lengths instanceof Int32Array ? l.lengths : Int32Array.from(l.lengths as ArrayLike<number>);
  const data = l.data instanceof Float64Array ? l.data : Float64Array.from(l.data as ArrayLike<number>);
  return { index: l.index, count: l.count, lengths, data };
}

/**
 * JSON text of a snapshot; ±Infinity and NaN (watermarks at the ends of time) survive the round trip, and
 * numeric rows become plain arrays (a -0 in them comes back as 0: `StateStore.serialize` keeps it).
 */
export function serializeSnapshot(snapshot: StoreSnapshot): string {
  return JSON.stringify(snapshot, keepNonFinite);
}

function keepNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return { $num: String(value) };
  if (value instanceof Float64Array || value instanceof Uint8Array || value instanceof Int32Array)
    return Array.from(value);
  return value;
}

/** `JSON.stringify(value, keepNonFinite)`, through the native path when no number needs the replacer. */
function jsonOf(value: unknown): string | undefined {
  return hasNonFinite(value) ? JSON.stringify(value, keepNonFinite) : JSON.stringify(value);
}

function hasNonFinite(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const x: unknown = value[i];
      if (
        typeof x === 'number' ? !Number.isFinite(x) : typeof x === 'object' && x !== null && hasNonFinite(x)
      )
        return true;
    }
    return false;
  }
  for (const key of Object.keys(value)) {
    const x: unknown = (value as Record<string, unknown>)[key];
    if (typeof x === 'number' ? !Number.isFinite(x) : typeof x === 'object' && x !== null && hasNonFinite(x))
      return true;
  }
  return false;
}

/** An object's JSON from its members' JSON texts, in the key order `JSON.stringify` would use. */
function jsonObject(members: Record<string, string | undefined>): string {
  const parts: string[] = [];
  for (const key of Object.keys(members)) {
    const text = members[key];
    if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

/**
 * A snapshot from what `serialize`, `beginSnapshot` or `serializeSnapshot` produced: JSON text (version 1,
 * also as written by releases before the binary encoding) or the binary encoding (version 2). A binary
 * one that is truncated or corrupted fails with `SnapshotFormatError`.
 */
export function deserializeSnapshot(state: SnapshotState): StoreSnapshot {
  const data = snapshotData(state);
  if (typeof data === 'string') return parseSnapshotJson(data);
  if (!isBinarySnapshot(data)) {
    // JSON text handed over as bytes (e.g. read from a file).
    return parseSnapshotJson(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  }
  const { json, rows, vectors } = decodeBinarySnapshot(data);
  const parsed = parseSnapshotJson(json) as Omit<StoreSnapshot, 'version'> & {
    version: unknown;
    rows?: unknown;
  };
  if (parsed.version !== 2 && parsed.version !== COLUMNS_VERSION)
    throw new SnapshotFormatError(`binary state snapshot says version ${String(parsed.version)}`, {
      context: { bytes: data.length, offset: 0, part: 'json' },
    });
  // Columns back into entries: from here on both versions are the same snapshot.
  const keyed: Record<string, [string, Json][]> = {};
  for (const [ns, held] of Object.entries(parsed.keyed ?? {})) keyed[ns] = entriesOf(ns, held);
  const result = { ...parsed, version: 2 as const, keyed, rows: Object.fromEntries(rows) };
  return vectors.size === 0 ? result : { ...result, vectors: Object.fromEntries(vectors) };
}

function parseSnapshotJson(text: string): StoreSnapshot {
  try {
    return JSON.parse(text, (_key, value: unknown) => {
      if (value !== null && typeof value === 'object' && '$num' in value) {
        return Number((value as { $num: string }).$num);
      }
      return value;
    }) as StoreSnapshot;
  } catch (err) {
    throw new SnapshotFormatError(
      `state snapshot (${text.length} characters of JSON): it does not parse (${(err as Error).message})`,
      { context: { bytes: text.length, offset: 0, part: 'json' }, cause: err },
    );
  }
}
