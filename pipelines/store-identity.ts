/**
 * A checkpoint knows its store: the identity of the sinks a checkpoint was taken with (each store's id,
 * kept in the store itself, with where it was found), recorded at every save and compared at load, so a
 * worker never resumes into a store its checkpoint does not describe (a new database, a recreated empty
 * store, another lake) and silently skips what that store never received.
 */

import { randomUUID } from 'node:crypto';
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from '../codecs/sql.js';
import type { HotStore, HotStoreTarget } from '../connectors/clickhouse.js';
import type { ParquetLake } from '../connectors/parquet-lake.js';
import { ConfigurationError } from '../core/errors.js';
import type { SnapshotState } from '../core/index.js';
import type { Checkpoint, CheckpointStore, StagedCheckpoint } from './runner.js';

/** Where a checkpoint's outputs went. Store ids decide; targets and paths are there to be read. */
export interface SinkIdentity {
  readonly hot: {
    /** `http://host:port` without credentials, or `chdb:<real path>`. */
    readonly target: string;
    readonly database: string;
    readonly storeId: string;
  };
  readonly lake: { readonly root: string; readonly storeId: string } | null;
}

/** A checkpoint as stored, with the sinks it was taken with (absent in checkpoints written before). */
export interface IdentifiedCheckpoint extends Checkpoint {
  readonly sinks?: SinkIdentity;
}

/** The one-row table holding a hot store's id, created beside the pipeline's tables. */
export const STORE_ID_TABLE = 'store_identity';
/** The file holding a lake's id, at its root. */
export const LAKE_ID_FILE = '_greenstream_store.json';

/** The run's sinks: the identity its checkpoints record, and every id its hot store answers to. */
export interface RunSinks {
  readonly identity: SinkIdentity;
  /**
   * Workers creating a store's id at once each insert one (ClickHouse has no compare-and-set); the store
   * answers to all of them, and a store recreated empty to none of the old ones.
   */
  readonly hotStoreIds: readonly string[];
}

/** Reads (creating them when missing) the ids of the run's stores. */
export async function sinkIdentity(
  target: HotStoreTarget,
  hot: HotStore,
  lake: ParquetLake | undefined,
): Promise<RunSinks> {
  const hotStoreIds = await hotStoreIdsOf(hot);
  const identity: SinkIdentity = {
    hot: {
      target: target.kind === 'chdb' ? `chdb:${await realpath(target.path)}` : withoutCredentials(target.url),
      database: hot.database,
      storeId: hotStoreIds[0]!,
    },
    lake:
      lake === undefined ? null : { root: await realpath(lake.dir), storeId: await lakeStoreId(lake.dir) },
  };
  return { identity, hotStoreIds };
}

function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** The hot store's ids (rows of `store_identity`), oldest first; one is created when there is none. */
async function hotStoreIdsOf(hot: HotStore): Promise<string[]> {
  const table = sql.ident(hot.database, STORE_ID_TABLE);
  await hot.command(
    sql`CREATE TABLE IF NOT EXISTS ${table} (store_id String, created_ms UInt64) ENGINE = MergeTree() ORDER BY created_ms`,
  );
  const read = async () =>
    (
      await hot.query<{ store_id: string }>(sql`SELECT store_id FROM ${table} ORDER BY created_ms, store_id`)
    ).map((r) => r.store_id);
  const found = await read();
  if (found.length > 0) return found;
  const created = randomUUID();
  await hot.command(sql`INSERT INTO ${table} (store_id, created_ms) VALUES (${created}, ${Date.now()})`);
  const ids = await read();
  // This worker records its own id: another one's, inserted at the same moment, may sort first.
  return [created, ...ids.filter((id) => id !== created)];
}

async function lakeStoreId(dir: string): Promise<string> {
  const path = join(dir, LAKE_ID_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      return (JSON.parse(await readFile(path, 'utf8')) as { storeId: string }).storeId;
    } catch (error) {
      // A file another worker is writing reads as torn JSON for a moment.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && attempt >= 5) throw error;
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
    }
    try {
      await writeFile(path, JSON.stringify({ storeId: randomUUID() }), { flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}

/** What differs between the sinks a checkpoint recorded and this run's, one line each; none when equal. */
export function identityDifferences(recorded: SinkIdentity, sinks: RunSinks): string[] {
  const current = sinks.identity;
  const out: string[] = [];
  const hotOf = (s: SinkIdentity) => `${s.hot.target} database ${s.hot.database}`;
  if (!sinks.hotStoreIds.includes(recorded.hot.storeId)) {
    out.push(
      hotOf(recorded) === hotOf(current)
        ? `hot store ${hotOf(current)} is not the one it was taken with: its id is ${current.hot.storeId}, the checkpoint's ${recorded.hot.storeId} (the store was recreated or emptied)`
        : `hot store: checkpoint taken with ${hotOf(recorded)}, this run writes to ${hotOf(current)}`,
    );
  }
  const lakeOf = (s: SinkIdentity) => (s.lake === null ? 'no lake (--no-cold)' : `lake ${s.lake.root}`);
  // A run without a lake skips nothing in it; a lake that missed what the checkpoint covers would.
  if (current.lake !== null && recorded.lake?.storeId !== current.lake.storeId) {
    out.push(
      lakeOf(recorded) === lakeOf(current)
        ? `${lakeOf(current)} is not the one it was taken with (its id file ${LAKE_ID_FILE} differs: recreated or emptied)`
        : `lake: checkpoint taken with ${lakeOf(recorded)}, this run writes to ${lakeOf(current)}`,
    );
  }
  return out;
}

/**
 * The last checkpoint was taken with other sinks than this run's: resuming would skip everything it
 * covers, which these stores never received. Not retryable: the operator decides how to proceed.
 */
export class CheckpointStoreMismatchError extends ConfigurationError<
  Readonly<Record<string, string | number>>
> {
  override readonly name = 'CheckpointStoreMismatchError';
  readonly differences: readonly string[];
  constructor(checkpointName: string, seq: number, differences: readonly string[]) {
    super(
      `checkpoint ${checkpointName} (seq ${seq}) belongs to other stores than this run's:\n  ${differences.join('\n  ')}\n` +
        'Resuming from it would skip every reading it covers. To proceed, either point the run at the stores ' +
        'it was taken with, or start a fresh checkpoint: a new --worker id, another --checkpoint file ' +
        '(files source), or --reset-checkpoint to discard this one and process the input from the start ' +
        '(the stores replace rows rather than double them).',
      { retryable: false, context: { checkpoint: checkpointName, seq } },
    );
    this.differences = differences;
  }
}

export interface IdentifiedCheckpointsOptions {
  /** Names the checkpoint in messages (its file or KV key). */
  readonly name: string;
  /** Ignore the stored checkpoint: start from scratch, and overwrite it at the first save. */
  readonly reset?: boolean;
  /** Called when `reset` discards a checkpoint. */
  readonly onReset?: (checkpoint: IdentifiedCheckpoint) => void;
}

/** A checkpoint store that stamps the run's identity on every save and refuses a checkpoint of other sinks. */
export function identifiedCheckpoints(
  store: CheckpointStore,
  sinks: RunSinks,
  options: IdentifiedCheckpointsOptions,
): CheckpointStore {
  return {
    ...(store.chains === true ? { chains: true } : {}),
    ...(store.extendsLoaded === true ? { extendsLoaded: true } : {}),
    async load() {
      // Loaded even when reset: a compare-and-set store learns the revision to write over.
      const checkpoint = (await store.load()) as IdentifiedCheckpoint | undefined;
      if (checkpoint === undefined) return undefined;
      if (options.reset === true) {
        options.onReset?.(checkpoint);
        return undefined;
      }
      // Checkpoints written before identities were recorded are trusted once, and stamped at the next save.
      if (checkpoint.sinks === undefined) return checkpoint;
      const differences = identityDifferences(checkpoint.sinks, sinks);
      if (differences.length > 0)
        throw new CheckpointStoreMismatchError(options.name, checkpoint.seq, differences);
      return checkpoint;
    },
    save: (checkpoint) => {
      const identified: IdentifiedCheckpoint = { ...checkpoint, sinks: sinks.identity };
      return store.save(identified);
    },
    ...(store.stage === undefined
      ? {}
      : {
          async stage(seq: number, state: SnapshotState): Promise<StagedCheckpoint> {
            const staged = await store.stage!(seq, state);
            return {
              commit: (checkpoint) => {
                const identified: Omit<IdentifiedCheckpoint, 'state' | 'deltas'> = {
                  ...checkpoint,
                  sinks: sinks.identity,
                };
                return staged.commit(identified);
              },
            };
          },
        }),
  };
}
