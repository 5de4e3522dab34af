/**
 * What the console reads and writes through: the hot store itself (a ClickHouse server, or a chDB folder
 * no worker holds), or, while a worker holds the chDB folder, that worker's read-only query endpoint.
 * Every statement is an `sql` fragment (`codecs/sql.ts`): no data is spliced into SQL text here.
 */

import { createClient, type Logger } from '@clickhouse/client';
import { type SqlFragment, sql } from '../codecs/sql.js';
import { findFolderOwner } from '../connectors/chdb-lock.js';
import { type HotStore, type HotStoreTarget, openHotStore } from '../connectors/clickhouse.js';
import { HOT_DATABASE } from '../schemas/clickhouse.js';

export interface ConsoleStore {
  readonly database: string;
  /** Where the data comes from, for the page footer (no credentials). */
  readonly describe: string;
  /** The hot store for review actions; undefined when only read-only queries reach the data. */
  readonly hot: HotStore | undefined;
  /** `chdb:<dir>` held by a running worker: its endpoint, which also serves `/pipeline.json`. */
  readonly workerEndpoint: string | undefined;
  /** `<database>.<name>`. */
  table(name: string): SqlFragment;
  query<T = Record<string, unknown>>(query: SqlFragment): Promise<T[]>;
  close(): Promise<void>;
}

/** Opens the store behind `--hot`; a chDB folder a live worker holds is read through the worker. */
export async function openConsoleStore(target: HotStoreTarget): Promise<ConsoleStore> {
  const database = target.database ?? HOT_DATABASE;
  if (target.kind === 'chdb') {
    const owner = await findFolderOwner(target.path);
    if (owner.state === 'live') return endpointStore(owner.owner.endpoint, database, `chdb:${target.path}`);
  }
  const hot = openHotStore(target);
  await hot.migrate();
  return hotConsoleStore(hot, target.kind === 'chdb' ? `chdb:${target.path}` : 'ClickHouse server');
}

/** A hot store already open (and migrated) as the console's store; closing it closes the store. */
export function hotConsoleStore(hot: HotStore, describe: string): ConsoleStore {
  return {
    database: hot.database,
    describe,
    hot,
    workerEndpoint: undefined,
    table: (name) => sql.ident(hot.database, name),
    query: (query) => hot.query(query),
    close: () => hot.close(),
  };
}

/** Read-only queries on a ClickHouse-compatible HTTP endpoint (a worker's query endpoint). */
export function endpointStore(endpoint: string, database: string, describe: string): ConsoleStore {
  const client = createClient({
    url: endpoint,
    database,
    application: 'greenstream-console',
    request_timeout: 60_000,
    log: { LoggerClass: SilentLogger },
  });
  return {
    database,
    describe: `${describe} (read-only, through the worker at ${endpoint})`,
    hot: undefined,
    workerEndpoint: endpoint,
    table: (name) => sql.ident(database, name),
    async query<T>(query: SqlFragment): Promise<T[]> {
      const result = await client.query({ query: query.text, format: 'JSONEachRow' });
      return result.json<T>();
    },
    close: () => client.close(),
  };
}

class SilentLogger implements Logger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
}
