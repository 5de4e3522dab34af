/**
 * The worker's side of "query the embedded store while it runs": the flags, and the lifecycle of the
 * query endpoint and the folder's owner file around a run (`run` and `replay` use it).
 *
 * A worker on `--hot chdb:<dir>` always serves read-only queries on its HTTP endpoint, on the metrics
 * port when one is given, otherwise on an ephemeral loopback port, so `greenstream sql --hot chdb:<dir>`
 * works whenever the worker runs. Once the job holds the folder (the source is open, the stores
 * migrated) the endpoint opens its engine connections and `<dir>/greenstream-owner.json` names it; a
 * clean stop removes the file.
 */

import { randomUUID } from 'node:crypto';
import { type OwnerLock, writeOwnerLock } from '../connectors/chdb-lock.js';
import type { HotStoreTarget } from '../connectors/clickhouse.js';
import { DEFAULT_METRICS_HOST } from '../connectors/metrics-server.js';
import {
  createQueryEndpoint,
  DEFAULT_QUERY_LIMITS,
  type QueryEndpoint,
} from '../connectors/query-endpoint.js';
import type { MetricsRegistry } from '../pipelines/metrics.js';
import { queryMetrics } from '../pipelines/query-metrics.js';
import { logger } from './log.js';
import { UsageError } from './main.js';
import type { OptionSpec } from './option-table.js';

/** Flags `run` and `replay` take for the endpoint. */
export const serveOptionSpecs: readonly OptionSpec[] = [
  {
    name: 'metrics-host',
    type: 'string',
    arg: 'ip',
    default: DEFAULT_METRICS_HOST,
    help: 'interface of the HTTP endpoint; 0.0.0.0 for a scraper outside the host: queries from other hosts then need $GS_QUERY_PASSWORD',
  },
  {
    name: 'query-max-rows',
    type: 'integer',
    default: DEFAULT_QUERY_LIMITS.maxResultRows,
    help: 'rows a query on the endpoint may return',
  },
  {
    name: 'query-timeout',
    type: 'duration',
    unit: 's',
    arg: 's',
    min: 1,
    default: DEFAULT_QUERY_LIMITS.maxExecutionSeconds,
    help: 'how long a query on the endpoint may run',
  },
];

type Flags = Readonly<Record<string, string | number | boolean | undefined>>;

/** `--metrics-host`, then `$GS_METRICS_HOST`, then loopback. */
export function metricsHostOf(values: Flags, env: NodeJS.ProcessEnv): string {
  const given = values['metrics-host'];
  const host = typeof given === 'string' ? given : env.GS_METRICS_HOST?.trim() || DEFAULT_METRICS_HOST;
  if (host === '' || /[\s/]/.test(host))
    throw new UsageError(`--metrics-host must be an address, got "${host}"`);
  return host;
}

export interface EmbeddedQueries {
  readonly endpoint: QueryEndpoint;
  /** Opens the endpoint and writes the owner file naming `url`; errors are logged, the run goes on. */
  start(url: string): void;
  /** Closes the endpoint and removes the owner file. */
  close(): Promise<void>;
}

/** The endpoint of a chDB hot store; undefined for a server (it answers queries itself). */
export function embeddedQueries(
  hot: HotStoreTarget,
  values: Flags,
  env: NodeJS.ProcessEnv,
  registry: MetricsRegistry,
): EmbeddedQueries | undefined {
  if (hot.kind !== 'chdb') return undefined;
  const maxResultRows = positive(values, 'query-max-rows');
  const maxExecutionSeconds = positive(values, 'query-timeout');
  const nonce = randomUUID();
  const password =
    env.GS_QUERY_PASSWORD === undefined || env.GS_QUERY_PASSWORD === '' ? undefined : env.GS_QUERY_PASSWORD;
  const endpoint = createQueryEndpoint({
    path: hot.path,
    database: hot.database ?? 'greenstream',
    ownerNonce: nonce,
    onQuery: queryMetrics(registry),
    ...(password === undefined ? {} : { password }),
    limits: {
      ...(maxResultRows === undefined ? {} : { maxResultRows }),
      ...(maxExecutionSeconds === undefined ? {} : { maxExecutionSeconds }),
    },
  });
  let lock: OwnerLock | undefined;
  let starting: Promise<void> | undefined;
  return {
    endpoint,
    start(url) {
      starting ??= (async () => {
        try {
          await endpoint.open();
          lock = writeOwnerLock(hot.path, url, nonce);
          logger.info('serving queries', { url, ownerFile: lock.path });
        } catch (error) {
          logger.error('cannot serve queries', { error: (error as Error).message });
        }
      })();
    },
    async close() {
      await starting;
      lock?.release();
      await endpoint.close();
    },
  };
}

function positive(values: Flags, name: string): number | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isInteger(n) && n > 0))
    throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  return n;
}
