/**
 * Where checkpoints live: a JSON file for the files source, chunked entries in a NATS KV bucket for
 * JetStream, or memory. Each keeps incremental chains: a full state, then the deltas saved on it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CheckpointStoreError } from '../connectors/jetstream-errors.js';
import type { CheckpointKv } from '../connectors/jetstream-kv.js';
import {
  isSnapshotChunks,
  isSnapshotDelta,
  type Json,
  SnapshotChainError,
  type SnapshotData,
  type SnapshotState,
  snapshotData,
} from '../core/index.js';
import type { Checkpoint, CheckpointStore, RunTotals, StagedCheckpoint } from './runner.js';
import type { IdentifiedCheckpoint, SinkIdentity } from './store-identity.js';

/** The checkpoint file's `stateEncoding` when it holds deltas after the full state. */
const CHAIN_ENCODING = 'base64+deltas';

/** Checkpoints in a local file (the files source): written to a temporary name, synced, then renamed. */
export function fileCheckpointStore(path: string): CheckpointStore {
  /** The chain in the file (loaded or saved last): its full state and deltas as base64, written again with each delta. */
  let chain: { state: string; deltas: string[] } | undefined;
  return {
    chains: true,
    extendsLoaded: true,
    async load() {
      try {
        const saved = JSON.parse(await readFile(path, 'utf8')) as Checkpoint & {
          stateEncoding?: string;
          deltas?: unknown;
        };
        if (saved.stateEncoding === undefined) return saved;
        if (
          (saved.stateEncoding !== 'base64' && saved.stateEncoding !== CHAIN_ENCODING) ||
          typeof saved.state !== 'string'
        )
          throw new Error(`unknown state encoding ${String(saved.stateEncoding)}`);
        const deltas = saved.deltas ?? [];
        if (!Array.isArray(deltas) || deltas.some((d) => typeof d !== 'string'))
          throw new Error('its deltas are not a list of base64 texts');
        chain = { state: saved.state, deltas: deltas as string[] };
        const { stateEncoding: _, deltas: __, ...rest } = saved;
        return {
          ...rest,
          state: new Uint8Array(Buffer.from(saved.state, 'base64')),
          ...(deltas.length === 0
            ? {}
            : { deltas: (deltas as string[]).map((d) => new Uint8Array(Buffer.from(d, 'base64'))) }),
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new Error(`cannot read checkpoint ${path}: ${(err as Error).message}`, { cause: err });
      }
    },
    async save(checkpoint) {
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.partial`;
      // The file stays one JSON document (tools and people read its position); binary state goes in it
      // as base64, a delta after the full state of its chain.
      let text: string;
      let next: typeof chain;
      const { state: saved, deltas: _, ...meta } = checkpoint;
      // Base64 in one JSON document needs the state in one piece.
      const state = snapshotData(saved);
      if (typeof state === 'string') {
        text = JSON.stringify(
          checkpoint.deltas === undefined ? { ...checkpoint, state } : { ...meta, state },
        );
        next = undefined;
      } else {
        if (isSnapshotDelta(state)) {
          if (chain === undefined) throw noChain(path, checkpoint.seq);
          next = { state: chain.state, deltas: [...chain.deltas, Buffer.from(state).toString('base64')] };
        } else next = { state: Buffer.from(state).toString('base64'), deltas: [] };
        // The base64 texts spliced in, not through `JSON.stringify` (which would copy the full state once more).
        // With deltas, an encoding a build without chains refuses rather than restoring the full state alone.
        const encoding = next.deltas.length === 0 ? 'base64' : CHAIN_ENCODING;
        const head = JSON.stringify({ ...meta, stateEncoding: encoding });
        const deltas = next.deltas.length === 0 ? '' : `,"deltas":["${next.deltas.join('","')}"]`;
        text = `${head.slice(0, -1)},"state":"${next.state}"${deltas}}`;
      }
      const handle = await open(tmp, 'w');
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
      chain = next;
    },
  };
}

/** A delta saved to a store that holds no full state to extend. */
function noChain(store: string, seq: number): SnapshotChainError {
  return new SnapshotChainError(
    `checkpoint ${seq} for ${store} is a delta, but the store holds no full state of its chain to extend`,
    { context: { chain: null, found: 'delta', index: -1, expected: 0 } },
  );
}

/** Keeps checkpoints in memory only: for tests and one-shot runs that must not resume. */
export function memoryCheckpointStore(): CheckpointStore & { last: Checkpoint | undefined } {
  const store = {
    chains: true,
    extendsLoaded: true,
    /** The last checkpoint: with a delta saved, the chain's full state and its deltas. */
    last: undefined as Checkpoint | undefined,
    async load() {
      return store.last;
    },
    async save(saved: Checkpoint) {
      // Kept as a load returns it: in one piece.
      const checkpoint = { ...saved, state: snapshotData(saved.state) };
      if (isSnapshotDelta(checkpoint.state)) {
        const last = store.last;
        if (last === undefined || typeof last.state === 'string') throw noChain('memory', checkpoint.seq);
        store.last = { ...checkpoint, state: last.state, deltas: [...(last.deltas ?? []), checkpoint.state] };
      } else {
        const { deltas: _, ...full } = checkpoint;
        store.last = full;
      }
    },
  };
  return store;
}

/**
 * The part of the KV bucket a checkpoint store uses; `getBytes` is needed to load a binary state (a
 * store without it loads text states only).
 */
export type CheckpointKvStore = Pick<CheckpointKv, 'get' | 'put' | 'compareAndSet' | 'delete'> &
  Partial<Pick<CheckpointKv, 'getBytes'>>;

export interface KvCheckpointOptions {
  /**
   * Bytes of serialized state per KV value. A value must fit in the server's `max_payload` (1 MiB by
   * default) with its headers; default 512 KiB.
   */
  readonly chunkBytes?: number;
  /**
   * Chunks of a save in flight at once (default 2): what the save can queue on the connection ahead of
   * the source's pulls and acks, which share it.
   */
  readonly lanes?: number;
}

/** What `<key>` holds: the commit record. The state itself lives in chunk keys it names. */
interface CheckpointManifest {
  readonly format: typeof MANIFEST_FORMAT | typeof CHAIN_MANIFEST_FORMAT;
  readonly seq: number;
  readonly position: Json;
  readonly totals: RunTotals;
  readonly stateFormat?: string;
  /** The sinks the checkpoint was taken with (see `store-identity.ts`). */
  readonly sinks?: SinkIdentity;
  /** The full state (of the incremental chain, when `deltas` follow). */
  readonly chunks: ChunkSet;
  /** The deltas saved on `chunks`, in order (absent: none). */
  readonly deltas?: readonly ChunkSet[];
}

/** Chunk `i` of a set is `<key>.state.<writer>.<slot>.<i>`, of delta `d` `<key>.state.<writer>.<slot>.d<d>.<i>`. */
interface ChunkSet {
  readonly writer: string;
  readonly slot: number;
  /** The set holds the `delta`-th delta of the chain whose full state is in the same slot. */
  readonly delta?: number;
  readonly count: number;
  /** UTF-8 bytes of the whole state, and its SHA-256: a torn or foreign chunk fails the load. */
  readonly bytes: number;
  /** `binary`: the state is bytes (a binary snapshot), its chunks raw slices of them; absent: UTF-8 text. */
  readonly encoding?: 'binary';
  readonly sha256: string;
  /** The most chunks this writer ever put in one slot: what a successor deletes after it. */
  readonly writerMaxChunks: number;
}

/** `<key>.writer`: the chunks a writer may have left behind, should it die before committing them. */
interface WriterRecord {
  readonly writer: string;
  readonly maxChunks: number;
  /** The most deltas on one chain, and chunks in one delta, this writer ever put. */
  readonly maxDeltas?: number;
  readonly maxDeltaChunks?: number;
}

const MANIFEST_FORMAT = 'greenstream-checkpoint/2';
/**
 * A manifest with deltas: a build without incremental chains refuses it (unknown format) rather than
 * restoring the full state alone.
 */
const CHAIN_MANIFEST_FORMAT = 'greenstream-checkpoint/3';
const DEFAULT_CHUNK_BYTES = 512 * 1024;
/** Chunk reads and deletes at once: a load or a clean-up, never on a live loop's critical path. */
const CHUNK_CONCURRENCY = 8;
/**
 * Chunks of a save in flight at once. Eight put ~4 MB at a time on the connection the source pulls
 * through: a pull request or ack waited behind them, and eight chunks hashed and packed in one turn of
 * the loop held a live worker's loop ~200 ms per full checkpoint (the live tail's worst second).
 */
const SAVE_LANES = 2;

/**
 * Checkpoints in the NATS KV bucket. Operator state runs to many MB while a KV value is capped by the
 * server's `max_payload`, so the state goes into chunk keys first and a small manifest under `key` is then
 * written with compare-and-set: that write is the commit. A stale worker (one that lost its partitions
 * to another) cannot overwrite a newer checkpoint and fails instead.
 *
 * Chunk keys carry a random writer id, so a stale writer never overwrites chunks a live manifest names,
 * and alternate between two slots, so a writer reuses a bounded set of keys (a KV delete leaves a marker
 * per key). After a commit the superseded chunks are deleted; so, after its first commit, are the chunks
 * of the writer that came before (those a killed worker wrote but never committed included).
 */
export function kvCheckpointStore(
  kv: CheckpointKvStore,
  key: string,
  options: KvCheckpointOptions = {},
): CheckpointStore & { readonly chains: true; readonly extendsLoaded: true } {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!(Number.isInteger(chunkBytes) && chunkBytes >= 4)) {
    throw new RangeError(`chunkBytes must be an integer of at least 4, got ${chunkBytes}`);
  }
  const lanes = options.lanes ?? SAVE_LANES;
  if (!(Number.isInteger(lanes) && lanes >= 1)) {
    throw new RangeError(`lanes must be a positive integer, got ${lanes}`);
  }
  const writer = randomBytes(6).toString('hex');
  const writerKey = `${key}.writer`;
  const chunkKey = (set: Pick<ChunkSet, 'writer' | 'slot' | 'delta'>, i: number) =>
    `${key}.state.${set.writer}.${set.slot}${set.delta === undefined ? '' : `.d${set.delta}`}.${i}`;
  let revision = 0;
  let committed: ChunkSet | undefined;
  /** The deltas committed on `committed`. */
  let committedDeltas: ChunkSet[] = [];
  let maxChunks = 0;
  let maxDeltas = 0;
  let maxDeltaChunks = 0;
  /** Keys to delete after the next commit: predecessors' chunks, and deletes that failed. */
  let garbage = new Set<string>();
  let predecessorsQueued = false;
  const predecessors: WriterRecord[] = [];
  /** Commits so far: a staged state commits only if none came between its stage and its commit. */
  let commits = 0;

  const fail = (message: string, context: Record<string, string | number | null>) =>
    new CheckpointStoreError(message, { key, ...context });

  const deleteAll = async (keys: readonly string[]): Promise<string[]> => {
    const failed: string[] = [];
    await forEachLimited(keys, CHUNK_CONCURRENCY, async (k) => {
      try {
        await kv.delete(k);
      } catch {
        failed.push(k);
      }
    });
    return failed;
  };

  return {
    chains: true,
    extendsLoaded: true,
    async load() {
      const [entry, writerEntry] = await Promise.all([kv.get(key), kv.get(writerKey)]);
      if (writerEntry !== null) predecessors.push(parseWriterRecord(writerEntry.value));
      if (entry === null) return undefined;
      revision = entry.revision;
      const parsed = JSON.parse(entry.value) as CheckpointManifest | Checkpoint;
      // A checkpoint written whole, before state was chunked.
      if (!('format' in parsed)) return parsed;
      if (parsed.format !== MANIFEST_FORMAT && parsed.format !== CHAIN_MANIFEST_FORMAT) {
        throw fail(`checkpoint ${key} has unknown format ${String(parsed.format)}`, {});
      }
      const set = parsed.chunks;
      predecessors.push({
        writer: set.writer,
        maxChunks: set.writerMaxChunks,
        maxDeltas: parsed.deltas?.length ?? 0,
        maxDeltaChunks: Math.max(0, ...(parsed.deltas ?? []).map((d) => d.count)),
      });
      const deltaSets = parsed.deltas ?? [];
      const readSet = async (set: ChunkSet, what: string): Promise<SnapshotData> => {
        const binary = set.encoding === 'binary';
        if (binary && kv.getBytes === undefined)
          throw fail(`checkpoint ${key} (seq ${parsed.seq}) holds binary state this store cannot read`, {
            seq: parsed.seq,
          });
        const parts = new Array<string | Uint8Array>(set.count);
        await forEachLimited(range(set.count), CHUNK_CONCURRENCY, async (i) => {
          const chunk = binary ? await kv.getBytes!(chunkKey(set, i)) : await kv.get(chunkKey(set, i));
          if (chunk === null) {
            throw fail(
              `checkpoint ${key} (seq ${parsed.seq}) is missing ${what} chunk ${i + 1} of ${set.count} ` +
                `(${chunkKey(set, i)}): it cannot be restored`,
              { seq: parsed.seq, chunk: i, chunks: set.count },
            );
          }
          parts[i] = chunk.value;
        });
        const state: SnapshotData = binary
          ? concatBytes(parts as Uint8Array[], set.bytes)
          : (parts as string[]).join('');
        const digest = sha256(state);
        const size = typeof state === 'string' ? Buffer.byteLength(state) : state.byteLength;
        if (digest !== set.sha256 || size !== set.bytes) {
          throw fail(
            `checkpoint ${key} (seq ${parsed.seq}): its ${what} chunks do not match the manifest ` +
              `(${size} bytes, sha256 ${digest}; expected ${set.bytes}, ${set.sha256})`,
            { seq: parsed.seq },
          );
        }
        return state;
      };
      const state = await readSet(set, 'state');
      const deltas: Uint8Array[] = [];
      for (const [j, d] of deltaSets.entries()) {
        const bytes = await readSet(d, `delta ${j + 1}`);
        if (typeof bytes === 'string' || d.delta !== j + 1 || d.slot !== set.slot)
          throw fail(`checkpoint ${key} (seq ${parsed.seq}): its delta ${j + 1} is not the chain's next`, {
            seq: parsed.seq,
          });
        deltas.push(bytes);
      }
      committed = set;
      committedDeltas = [...deltaSets];
      return {
        seq: parsed.seq,
        position: parsed.position,
        totals: parsed.totals,
        state,
        ...(deltas.length === 0 ? {} : { deltas }),
        ...(parsed.stateFormat === undefined ? {} : { stateFormat: parsed.stateFormat }),
        ...(parsed.sinks === undefined ? {} : { sinks: parsed.sinks }),
      } satisfies IdentifiedCheckpoint;
    },

    save: async (checkpoint: IdentifiedCheckpoint) => {
      const { state, deltas: _, ...rest } = checkpoint;
      await (await stage(checkpoint.seq, state)).commit(rest);
    },
    stage,
  };

  /**
   * The part of a save before its commit: the writer record (when this save puts more chunks than any
   * before, so whoever comes after a crash learns which keys to clean up), then the state's chunks under
   * this writer's keys, which no manifest names until the commit. A writer killed before the commit
   * leaves them to its successor's clean-up, as a save's.
   */
  async function stage(seq: number, state: SnapshotState): Promise<StagedCheckpoint> {
    const delta = isSnapshotDelta(state);
    // A delta extends the chain committed last: this writer's, or the one loaded. A loaded chain's chunks
    // are live (the clean-up after our first commit spares them) until a full state of ours supersedes
    // them; the delta's own chunks carry our writer id, so a stale predecessor never writes over them,
    // and its commit is the same compare-and-set over the revision we loaded.
    if (delta && committed === undefined) throw noChain(`checkpoint ${key}`, seq);
    const stagedAfter = commits;
    const slot = delta ? committed!.slot : committed?.writer === writer ? 1 - committed.slot : 0;
    const deltaIndex = delta ? committedDeltas.length + 1 : undefined;
    // Binary state goes out in raw slices of its buffer (or of its pieces): no text encoding, no copy.
    const { parts, written } = statePieces(state, chunkBytes);
    const grows = delta ? deltaIndex! > maxDeltas || parts.length > maxDeltaChunks : parts.length > maxChunks;
    if (grows) {
      if (delta) {
        maxDeltas = Math.max(maxDeltas, deltaIndex!);
        maxDeltaChunks = Math.max(maxDeltaChunks, parts.length);
      } else maxChunks = parts.length;
      await kv.put(
        writerKey,
        JSON.stringify({ writer, maxChunks, maxDeltas, maxDeltaChunks } satisfies WriterRecord),
      );
    }
    // Hashed chunk by chunk as the lanes take them (in order), so no one piece of the save holds the
    // event loop for the whole state.
    const hash = createHash('sha256');
    const nameless = { writer, slot, ...(deltaIndex === undefined ? {} : { delta: deltaIndex }) };
    let bytes = 0;
    const turns = new LoopTurns();
    await forEachLimited(range(parts.length), lanes, async (i) => {
      const part = parts[i]!;
      // One chunk (hashed, packed, handed to the socket: a few ms) per turn of the event loop, whatever
      // the lanes: the pulls, acks and writes of a live worker run between two chunks. Turns are granted
      // in the order the lanes took their chunks, so the hash still sees them in order.
      await turns.next();
      hash.update(part);
      bytes += typeof part === 'string' ? Buffer.byteLength(part) : part.byteLength;
      await kv.put(chunkKey(nameless, i), part);
      written(i);
    });
    const set: ChunkSet = {
      ...nameless,
      count: parts.length,
      bytes,
      ...(typeof state === 'string' ? {} : { encoding: 'binary' as const }),
      sha256: hash.digest('hex'),
      writerMaxChunks: maxChunks,
    };
    let committing = false;
    return {
      commit: async (checkpoint: Omit<IdentifiedCheckpoint, 'state' | 'deltas'>) => {
        // The slot, the delta's index and the manifest's chain were chosen against the last commit.
        if (committing || commits !== stagedAfter || checkpoint.seq !== seq)
          throw fail(
            `checkpoint ${key}: the state staged for checkpoint ${seq} is not the next to commit ` +
              `(committing checkpoint ${checkpoint.seq}${committing ? ', a second time' : ''})`,
            { seq: checkpoint.seq, stagedSeq: seq },
          );
        committing = true;
        await commit(checkpoint, set, delta);
      },
    };
  }

  /**
   * The manifest naming a staged chunk set, written with compare-and-set over the revision this store
   * loaded or committed last: the commit. Then the superseded chunks are deleted.
   */
  async function commit(
    checkpoint: Omit<IdentifiedCheckpoint, 'state' | 'deltas'>,
    set: ChunkSet,
    delta: boolean,
  ): Promise<void> {
    const manifest: CheckpointManifest = {
      format: delta ? CHAIN_MANIFEST_FORMAT : MANIFEST_FORMAT,
      seq: checkpoint.seq,
      position: checkpoint.position,
      totals: checkpoint.totals,
      ...(checkpoint.stateFormat === undefined ? {} : { stateFormat: checkpoint.stateFormat }),
      ...(checkpoint.sinks === undefined ? {} : { sinks: checkpoint.sinks }),
      chunks: delta ? committed! : set,
      ...(delta ? { deltas: [...committedDeltas, set] } : {}),
    };
    const result = await kv.compareAndSet(key, JSON.stringify(manifest), revision);
    if (!result.ok) {
      // Ours alone (the writer id is unique); the error below stops this worker either way.
      await deleteAll(range(set.count).map((i) => chunkKey(set, i)));
      throw fail(
        `checkpoint ${key} was written by another worker (revision ${String(result.currentRevision)}, ` +
          `expected ${revision}); stopping`,
        { expectedRevision: revision, currentRevision: result.currentRevision },
      );
    }
    revision = result.revision;
    commits += 1;
    // The commit stands; cleaning up is best effort, and what fails is retried after the next commit.
    const stale = new Set(garbage);
    if (delta) committedDeltas.push(set);
    else {
      // A full state supersedes the whole chain before it.
      for (const superseded of committed === undefined ? committedDeltas : [committed, ...committedDeltas])
        for (let i = 0; i < superseded.count; i++) stale.add(chunkKey(superseded, i));
      committed = set;
      committedDeltas = [];
    }
    if (!predecessorsQueued) {
      // Committing over the revision we loaded proves no writer before us can still commit.
      predecessorsQueued = true;
      for (const p of predecessors) {
        if (p.writer === writer) continue;
        for (const s of [0, 1]) {
          for (let i = 0; i < p.maxChunks; i++) stale.add(chunkKey({ writer: p.writer, slot: s }, i));
          for (let d = 1; d <= (p.maxDeltas ?? 0); d++)
            for (let i = 0; i < (p.maxDeltaChunks ?? 0); i++)
              stale.add(chunkKey({ writer: p.writer, slot: s, delta: d }, i));
        }
      }
    }
    for (const live of [committed!, ...committedDeltas])
      for (let i = 0; i < live.count; i++) stale.delete(chunkKey(live, i));
    garbage = new Set(await deleteAll([...stale]));
  }
}

function parseWriterRecord(text: string): WriterRecord {
  const record = JSON.parse(text) as WriterRecord;
  return {
    writer: String(record.writer),
    maxChunks: Number(record.maxChunks) || 0,
    maxDeltas: Number(record.maxDeltas) || 0,
    maxDeltaChunks: Number(record.maxDeltaChunks) || 0,
  };
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const NO_BYTES = new Uint8Array(0);

/**
 * The chunks a state goes out in: text split at character boundaries, bytes (or each piece of a state in
 * pieces) as views of at most `maxBytes`. A load joins them, so where they are cut does not matter.
 * `written(i)` lets go of chunk `i` once it is stored, and of a piece of a state in pieces once all its
 * chunks are: the save empties the state's list of pieces as it goes (its pieces are the capture's
 * copies of the typed state, ~0.1 GB at 50,000 meters, held until the whole save had ended), so the
 * state must not be read after it is saved.
 */
function statePieces(
  state: SnapshotState,
  maxBytes: number,
): { parts: (string | Uint8Array)[]; written: (i: number) => void } {
  if (typeof state === 'string') return { parts: splitUtf8(state, maxBytes), written: () => undefined };
  if (!isSnapshotChunks(state)) {
    const parts: Uint8Array[] = sliceBytes(state, maxBytes);
    return {
      parts,
      written: (i) => {
        parts[i] = NO_BYTES;
      },
    };
  }
  const pieces = state.chunks as Uint8Array[];
  const parts: Uint8Array[] = [];
  /** The piece each chunk is cut from, and each piece's chunks not yet stored. */
  const pieceOf: number[] = [];
  const left = new Int32Array(pieces.length);
  for (let p = 0; p < pieces.length; p++) {
    for (const part of sliceBytes(pieces[p]!, maxBytes)) {
      parts.push(part);
      pieceOf.push(p);
      left[p] = left[p]! + 1;
    }
  }
  return {
    parts,
    written: (i) => {
      parts[i] = NO_BYTES;
      const p = pieceOf[i]!;
      left[p] = left[p]! - 1;
      if (left[p] === 0) pieces[p] = NO_BYTES;
    },
  };
}

/** `bytes` as consecutive views of at most `maxBytes` each (none when empty). */
export function sliceBytes(bytes: Uint8Array, maxBytes: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += maxBytes) parts.push(bytes.subarray(at, at + maxBytes));
  return parts;
}

function concatBytes(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    // A foreign or torn chunk set may not add up to `total`: the size check after reports it.
    if (at + p.byteLength > total) return Buffer.concat(parts);
    out.set(p, at);
    at += p.byteLength;
  }
  return at === total ? out : out.subarray(0, at);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Splits `text` into pieces of at most `maxBytes` UTF-8 bytes each, never inside a surrogate pair, so each
 * piece is a valid string on its own and the pieces joined give `text` back.
 */
export function splitUtf8(text: string, maxBytes: number): string[] {
  const parts: string[] = [];
  let start = 0;
  while (start < text.length) {
    // JSON is mostly ASCII: one char per byte is the first guess, shrunk until the piece fits.
    let end = Math.min(text.length, start + maxBytes);
    for (;;) {
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) {
        // Keep the pair whole: drop its first half, or take both when it is all the piece holds.
        end += end - start === 1 ? 1 : -1;
      }
      const bytes = Buffer.byteLength(text.slice(start, end));
      if (bytes <= maxBytes) break;
      end = start + Math.max(1, Math.floor(((end - start) * maxBytes) / bytes) - 1);
    }
    parts.push(text.slice(start, end));
    start = end;
  }
  return parts;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * Grants turns one per iteration of the event loop, in the order they were asked for: a turn's work runs
 * in the loop's check phase, and the next turn's in the next iteration, after its I/O callbacks.
 */
export class LoopTurns {
  private readonly waiting: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  next(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.head >= this.waiting.length) return;
    this.scheduled = true;
    // An immediate scheduled while immediates run waits for the next iteration of the loop.
    setImmediate(() => {
      this.scheduled = false;
      const grant = this.waiting[this.head++]!;
      if (this.head === this.waiting.length) {
        this.waiting.length = 0;
        this.head = 0;
      }
      grant();
      this.schedule();
    });
  }
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await task(item);
    }
  });
  await Promise.all(lanes);
}
