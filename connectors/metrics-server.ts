/**
 * The worker's HTTP endpoint for Prometheus and for orchestrators:
 * - `GET /metrics`: the text exposition (version 0.0.4);
 * - `GET /healthz`: 200 while the process answers (liveness);
 * - `GET /readyz`: 200 while the job takes work, 503 before it has migrated its stores and opened its
 *   source, and after a fatal sink error or the end of the run (readiness).
 * - `/` and `/ping`: the embedded store's read-only query endpoint, when the worker serves one
 *   (`query-endpoint.ts`).
 * It knows nothing of the pipeline: it renders what `render` returns, asks `ready`, and hands queries on.
 *
 * It binds loopback unless told otherwise: the query endpoint answers with the store's data, and a
 * scraper outside the host or container is an explicit choice (`--metrics-host 0.0.0.0`).
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigurationError } from '../core/errors.js';

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsServerOptions {
  /** 0 picks a free port (see `MetricsServer.port`). */
  readonly port: number;
  /** Interface to bind; default `127.0.0.1` (`DEFAULT_METRICS_HOST`). */
  readonly host?: string;
  /** The exposition; may be asynchronous (prom-client's process metrics are). */
  readonly render: () => string | Promise<string>;
  readonly ready: () => boolean;
  /** Answers `/` and `/ping` (the query endpoint); without it they are 404. */
  readonly queries?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Further pages (the console, `/pipeline.json`): returns true when it answered the request. */
  readonly pages?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export const DEFAULT_METRICS_HOST = '127.0.0.1';

export interface MetricsServer {
  readonly port: number;
  /** The address actually bound, e.g. `127.0.0.1`, `0.0.0.0` or `::`. */
  readonly address: string;
  /** `http://host:port` to reach it from this host: loopback for a wildcard bind. */
  readonly url: string;
  close(): Promise<void>;
}

/** The metrics endpoint could not be served (a port in use, a host not bound): fix the flags. */
export class MetricsServerError extends ConfigurationError<{ readonly host: string; readonly port: number }> {
  override readonly name = 'MetricsServerError';
  constructor(
    message: string,
    context: { readonly host: string; readonly port: number },
    options?: { readonly cause?: unknown },
  ) {
    super(message, { retryable: false, context, cause: options?.cause });
  }
}

/** Starts listening; resolves once the port is bound, rejects (e.g. port in use) with a MetricsServerError. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? DEFAULT_METRICS_HOST;
  const server = createServer((req, res) => void handle(req, res, options));
  // A scrape that hangs must not keep the worker from exiting.
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new MetricsServerError(
          `cannot serve metrics on ${host}:${options.port}: ${err.code ?? err.message}`,
          { host, port: options.port },
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(options.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  const reachable = address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    url: `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`,
    close: () => {
      closing ??= closeServer(server);
      return closing;
    },
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: MetricsServerOptions,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (options.queries !== undefined && (path === '/' || path === '/ping')) {
    options.queries(req, res);
    return;
  }
  if (options.pages?.(req, res) === true) return;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    reply(req, res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    return;
  }
  switch (path) {
    case '/metrics': {
      let body: string;
      try {
        body = await options.render();
      } catch (err) {
        reply(req, res, 500, `cannot render metrics: ${(err as Error).message}\n`);
        return;
      }
      reply(req, res, 200, body, { 'Content-Type': EXPOSITION_CONTENT_TYPE });
      return;
    }
    case '/healthz':
      reply(req, res, 200, 'ok\n');
      return;
    case '/readyz':
      if (options.ready()) reply(req, res, 200, 'ready\n');
      else reply(req, res, 503, 'not ready\n');
      return;
    default:
      reply(
        req,
        res,
        404,
        `not found: try /metrics, /healthz or /readyz${options.queries === undefined ? '' : ', or a query on /'}\n`,
      );
  }
}

function reply(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    ...headers,
    'Content-Length': String(bytes.length),
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err === undefined ? resolve() : reject(err)));
    // Keep-alive connections of a scraper would hold `close` open until they time out.
    server.closeAllConnections();
  });
}
