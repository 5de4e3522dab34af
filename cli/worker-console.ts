/**
 * The console's pages on a worker's metrics port, read-only: `/pipeline.json` (the running graph and its
 * figures) and `/console/…` over the worker's store, read through the worker's own query endpoint on a
 * chDB store, or on a connection of their own to a ClickHouse server. Reviews need `greenstream console`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type HotStoreTarget, openHotStore } from '../connectors/clickhouse.js';
import { consoleHandler } from '../console/server.js';
import { type ConsoleStore, endpointStore, hotConsoleStore } from '../console/store.js';
import type { JobMetrics } from '../pipelines/job-metrics.js';
import { HOT_DATABASE } from '../schemas/clickhouse.js';

export interface WorkerConsole {
  readonly pages: (req: IncomingMessage, res: ServerResponse) => boolean;
  close(): Promise<void>;
}

/** `url()` is the metrics server's own address, known once it listens. */
export function workerConsole(
  hot: HotStoreTarget,
  metrics: JobMetrics,
  url: () => string | undefined,
): WorkerConsole {
  let store: ConsoleStore | undefined;
  const storeOf = (): ConsoleStore | undefined => {
    if (store !== undefined) return store;
    const database = hot.database ?? HOT_DATABASE;
    if (hot.kind === 'chdb') {
      const endpoint = url();
      if (endpoint === undefined || !metrics.isReady()) return undefined;
      store = endpointStore(endpoint, database, `chdb:${hot.path}`);
    } else {
      store = hotConsoleStore(openHotStore(hot), 'ClickHouse server (read-only on the worker)');
    }
    return store;
  };
  const handle = consoleHandler({
    store: storeOf,
    pipeline: async () => metrics.pipelineStatus(),
    pipelineSource: 'Live figures of this worker, refreshed every 2 s.',
    readOnly: true,
    readOnlyWhy: "a worker's pages are read-only; run `greenstream console --allow-review` to act on records",
    describe: hot.kind === 'chdb' ? `chdb:${hot.path}` : 'ClickHouse server',
  });
  return {
    pages: (req, res) => {
      if ((req.url ?? '/').split('?')[0] === '/pipeline.json') {
        const body = Buffer.from(JSON.stringify(metrics.pipelineStatus()), 'utf8');
        res.writeHead(200, {
          'Content-Type': 'application/json',
          'Cache-Control': 'no-store',
          'Content-Length': String(body.length),
        });
        res.end(req.method === 'HEAD' ? undefined : body);
        return true;
      }
      return handle(req, res);
    },
    close: async () => {
      await store?.close();
    },
  };
}
