/** The chDB engine of the hot store: ClickHouse embedded in the process, inserts read from spool files. */

import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type ClickHouseClient, type ClickHouseClientConfigOptions, createClient } from '@clickhouse/client';
import { type ChdbConnection, createChdbConnection } from 'chdb/connection';
import type { RowFormat, TextSink } from '../codecs/clickhouse-encode.js';
import { sql, sqlIdent } from '../codecs/sql.js';
import { GreenStreamError } from '../core/errors.js';
import { clickhouseType } from '../schemas/clickhouse.js';
import { bodyOf, type Driver, firstLine } from './clickhouse-driver.js';

/** A spool file could not be written: the engine cannot be given the batch for now. */
export class SpoolError extends GreenStreamError {
  override readonly name = 'SpoolError';
}

/** Spool folders under the data directory that this process found and cleared (see below). */
const clearedSpoolRoots = new Set<string>();

/** Characters that make a `file()` path a pattern (`*`, `?`, `{a,b}`, `{1..9}`). */
const GLOB_CHARACTERS = /[*?{}]/;

/**
 * Settings of every chDB insert (newer than 18.16, so never sent to the server):
 * - `optimize_on_insert = 0`: a ReplacingMergeTree otherwise collapses the duplicate keys of each
 *   inserted block (a sort-merge pass) although background merges do the same later and every
 *   reader sees through duplicates anyway (`FINAL`, the `*_latest` views, `argMax`). It was ~15%
 *   of the engine's time for readings. Until a merge, a plain `count()` also counts the versions
 *   of a key that arrived in one batch (a fault's `active` and `cleared` rows).
 * - `input_format_parallel_parsing = 0`: a body of up to ~20 MB makes at most two 10 MB chunks,
 *   and on two cores, shared with the pipeline, handing them to threads cost more than it saved
 *   (~10% of the engine's time for readings).
 */
const SPOOL_EXTENSIONS = { TabSeparated: 'tsv', JSONEachRow: 'ndjson', ArrowStream: 'arrows' } as const;

const CHDB_INSERT_SETTINGS = 'optimize_on_insert = 0, input_format_parallel_parsing = 0';

export interface ChdbDriverOptions {
  /**
   * `max_memory_usage` of every query and insert, bytes: the engine's share of the worker's memory
   * budget (`engineMemory`). A statement that would pass it fails with MEMORY_LIMIT_EXCEEDED (retried
   * as a transient failure) instead of growing the process. The engine's default (none) when absent.
   */
  readonly maxMemoryUsageBytes?: number;
}

/**
 * chDB. Queries go through `@clickhouse/client` on chDB's connection. Inserts use neither the
 * client (it makes one string of the body) nor chDB's raw insert (the body inline after the
 * statement), which chDB runs through its embedded client: that scans inline data far more
 * slowly than the engine parses it (a day of 5,000 meters' readings, 104 MB, into a table that
 * discards rows: ~2.2 s of CPU inline, ~0.7 s from a file), and ends the data at the first
 * empty line. Instead each body is written, piece by piece as it is encoded, to a spool file
 * under the data directory, and the engine reads it with `INSERT … SELECT * FROM file(…)`, off
 * the event loop like the raw insert. The file's structure declares LowCardinality columns as
 * plain `String`: the engine then converts whole columns on insert instead of building the
 * dictionary while parsing each value, which halved its parse time for readings (same stored
 * values). Writing the pieces out also means the body is never one JavaScript string or
 * Buffer, which with large batches cost more in garbage collection than the encoding itself.
 */
export function chdbDriver(path: string, options: ChdbDriverOptions = {}): Driver {
  const memory = options.maxMemoryUsageBytes;
  if (memory !== undefined && !(Number.isSafeInteger(memory) && memory > 0))
    throw new RangeError(`maxMemoryUsageBytes must be a positive whole number, got ${memory}`);
  const connection: ChdbConnection = createChdbConnection({ path });
  // chdb types its connection against the @clickhouse/client-common package, the client against
  // its bundled copy of the same declarations; the shapes are identical (chdb re-exports them).
  const client: ClickHouseClient = createClient({
    connection: connection as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>,
    // chDB's connection turns these into `SET`s before each statement.
    ...(memory === undefined ? {} : { clickhouse_settings: { max_memory_usage: String(memory) } }),
  });
  const insertSettings = sql.raw(
    `SETTINGS ${CHDB_INSERT_SETTINGS}${memory === undefined ? '' : `, max_memory_usage = ${memory}`}`,
  );
  const spoolRoot = join(resolve(connection.chdb.session.path), 'greenstream-spool');
  let spool: string | undefined;
  let nextFile = 0;

  function spoolFolder(): string {
    if (spool === undefined) {
      try {
        // Every store of the process gets its own folder. chDB locks its data directory to one
        // process, so what a previous process left behind (a crash mid-insert) can go.
        if (!clearedSpoolRoots.has(spoolRoot)) {
          rmSync(spoolRoot, { recursive: true, force: true });
          clearedSpoolRoots.add(spoolRoot);
        }
        mkdirSync(spoolRoot, { recursive: true });
        spool = mkdtempSync(join(spoolRoot, 'store-'));
      } catch (error) {
        throw new SpoolError(`Cannot create a spool folder in ${spoolRoot}: ${firstLine(error)}`, {
          cause: error,
        });
      }
    }
    return spool;
  }

  function writeSpoolFile(file: string, encode: (sink: TextSink) => void): number {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (error) {
      throw new SpoolError(`Cannot create the spool file ${file}: ${firstLine(error)}`, { cause: error });
    }
    let bytes = 0;
    try {
      // Synchronous like the encoder that drives it; each piece lands in the page cache.
      encode((piece) => {
        try {
          bytes += typeof piece === 'string' ? writeSync(fd, piece) : writeAll(fd, piece);
        } catch (error) {
          throw new SpoolError(`Cannot write the spool file ${file}: ${firstLine(error)}`, { cause: error });
        }
      });
    } finally {
      closeSync(fd);
    }
    return bytes;
  }

  return {
    async query(text) {
      const result = await client.query({ query: text, format: 'JSONEachRow' });
      return result.json<unknown>();
    },
    // Through a spool file only: the inline fallback below sends text.
    readsArrow: !GLOB_CHARACTERS.test(spoolRoot),
    async command(text) {
      await client.command({ query: text });
    },
    stageInsert({ database, table, columns, format }, encode) {
      if (GLOB_CHARACTERS.test(spoolRoot)) {
        // file() would read the path as a pattern: send the body inline, the slower way.
        const body = bodyOf(encode);
        return {
          bytes: body.length,
          send: async () => {
            // chdb validates these as plain [A-Za-z0-9_] names and quotes nothing; ours already are.
            await connection.chdb.rawInsert({
              table: `${database}.${table}`,
              columns: columns.map((c) => c.name),
              // Never ArrowStream: this driver reads Arrow only from a spool file (`readsArrow`).
              format: format as RowFormat,
              values: body,
            });
          },
          release: async () => {},
        };
      }
      const file = join(spoolFolder(), `${nextFile++}.${SPOOL_EXTENSIONS[format]}`);
      let bytes: number;
      try {
        bytes = writeSpoolFile(file, encode);
      } catch (error) {
        rmSync(file, { force: true });
        throw error;
      }
      const structure = columns
        .map((c) => `${sqlIdent(c.name)} ${clickhouseType(c.type, { lowCardinality: false })}`)
        .join(', ');
      // An Arrow stream carries its own schema (dictionary columns, timestamps), converted on insert.
      const source =
        format === 'ArrowStream'
          ? sql`file(${file}, ArrowStream)`
          : sql`file(${file}, ${format}, ${structure})`;
      const statement = sql`INSERT INTO ${sql.ident(database, table)} (${sql.join(columns.map((c) => sql.ident(c.name)))}) SELECT * FROM ${source} ${insertSettings}`;
      return {
        bytes,
        send: async () => {
          await connection.chdb.queryAsync(statement.text);
        },
        // A file that cannot be removed now goes with the folder at close, or at the next start.
        release: () => rm(file, { force: true }).catch(() => {}),
      };
    },
    async close() {
      await client.close();
      // What cannot be removed now goes at the next start (see spoolFolder).
      if (spool !== undefined) await rm(spool, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/** Writes all of `bytes` (a write to a file may take fewer bytes than offered). */
function writeAll(fd: number, bytes: Uint8Array): number {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
  return done;
}
