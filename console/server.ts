/**
 * The console's HTTP routes under `/console/`: the four pages, the pipeline status as JSON, the review
 * actions (POST, JSON only), and the static assets (uPlot from `node_modules`, the console's own script
 * and style): nothing is fetched from the network at run time and nothing is built. The same handler
 * serves `greenstream console` and a worker's metrics port (read-only there).
 */

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BehaviorSubject } from 'rxjs';
import { sql } from '../codecs/sql.js';
import { errorMessage } from '../core/errors.js';
import { type GraphTopology, SideInput, StateStore } from '../core/index.js';
import type { MeterRegistry } from '../operators/outputs.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import type { PipelineStatus } from '../pipelines/job-metrics.js';
import { meterQualityGraph } from '../pipelines/meter-quality.js';
import {
  emptyStorePage,
  messagePage,
  meterForm,
  meterPage,
  type PageContext,
  type PageName,
  pipelinePage,
  qualityPage,
  reviewPage,
} from './pages.js';
import { lowScoreReadings, meterData, qualityData, recentReviews, storeCounts } from './queries.js';
import {
  approveQuarantined,
  listDeadLetters,
  listQuarantine,
  overrideScore,
  ReviewRefusedError,
  redriveDeadLetter,
  rejectQuarantined,
} from './review.js';
import type { ConsoleStore } from './store.js';

export const CONSOLE_BASE = '/console';

export interface ConsoleOptions {
  /** The store, or undefined while it is not open yet (a worker before its stores are migrated). */
  readonly store: () => ConsoleStore | undefined;
  /** The running graph's status; undefined when no worker is known. */
  readonly pipeline?: () => Promise<PipelineStatus>;
  /** Where the pipeline figures come from, shown on the Pipeline page. */
  readonly pipelineSource: string;
  readonly readOnly: boolean;
  readonly readOnlyWhy?: string;
  readonly deadLetterDir?: string;
  /** Where the data comes from, until the store is open. */
  readonly describe: string;
}

const ASSET_TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

function assetPath(name: string): string | undefined {
  if (name === 'uPlot.iife.min.js' || name === 'uPlot.min.css') {
    const pkg = createRequire(import.meta.url).resolve('uplot/package.json');
    return join(dirname(pkg), 'dist', name);
  }
  if (name === 'console.js' || name === 'console.css') return join(assetsDir(), name);
  return undefined;
}

/** `console/assets` of the repository, whether this file runs from the sources or from `dist/`. */
function assetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.endsWith(join('dist', 'console'))
    ? join(here, '..', '..', 'console', 'assets')
    : join(here, 'assets');
}

let staticGraph: GraphTopology | undefined;

/** The graph `run` builds, with no state: what the Pipeline page draws when no worker is reachable. */
export function pipelineTopology(): GraphTopology {
  staticGraph ??= meterQualityGraph({
    profile: resolveRuleProfile(),
    registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(new Map())),
    store: new StateStore(),
    lineage: { pipelineVersion: 'console', processedAt: () => 0 },
    replay: false,
  }).graph.topology();
  return staticGraph;
}

/** The console's request handler; answers `/console/…` and returns false for anything else. */
export function consoleHandler(
  options: ConsoleOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://console');
    if (url.pathname !== CONSOLE_BASE && !url.pathname.startsWith(`${CONSOLE_BASE}/`)) return false;
    route(url, req, res, options).catch((error: unknown) => {
      if (!res.headersSent)
        send(res, 500, 'text/plain; charset=utf-8', `console error: ${errorMessage(error)}\n`);
      else res.end();
    });
    return true;
  };
}

async function route(
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
  options: ConsoleOptions,
): Promise<void> {
  const path = url.pathname.slice(CONSOLE_BASE.length).replace(/\/+$/, '') || '/';
  const ctx: PageContext = {
    base: CONSOLE_BASE,
    describe: options.store()?.describe ?? options.describe,
    readOnly: options.readOnly,
    ...(options.readOnlyWhy === undefined ? {} : { readOnlyWhy: options.readOnlyWhy }),
  };
  if (path === '/api/review') {
    if (req.method !== 'POST')
      return send(res, 405, 'text/plain; charset=utf-8', 'POST only\n', { Allow: 'POST' });
    return review(req, res, options);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD' });
  if (path === '/') return redirect(res, `${CONSOLE_BASE}/pipeline`);
  if (path.startsWith('/assets/')) {
    const name = path.slice('/assets/'.length);
    const file = assetPath(name);
    if (file === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'no such asset\n');
    const type = ASSET_TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream';
    return send(res, 200, type, readFileSync(file), { 'Cache-Control': 'max-age=300' });
  }
  if (path === '/api/pipeline') {
    const status = await pipelineJson(options);
    return send(res, 200, 'application/json', JSON.stringify(status));
  }
  const pages: Record<string, PageName> = {
    '/pipeline': 'pipeline',
    '/quality': 'quality',
    '/meter': 'meter',
    '/review': 'review',
  };
  const page = pages[path];
  if (page === undefined) return html(res, 404, messagePage(ctx, 'error', 'Not found', `no page ${path}`));
  if (page === 'pipeline') return html(res, 200, pipelinePage(ctx, options.pipelineSource));
  const store = options.store();
  if (store === undefined)
    return html(
      res,
      503,
      messagePage(ctx, page, title(page), 'The hot store is not open yet; try again in a moment.'),
    );
  const counts = await storeCounts(store);
  if (counts.readings === 0 && counts.quarantine === 0)
    return html(res, 200, emptyStorePage(ctx, page, title(page)));
  if (page === 'quality') return html(res, 200, qualityPage(ctx, await qualityData(store)));
  if (page === 'meter') {
    const id = (url.searchParams.get('id') ?? '').trim();
    if (id === '') {
      const [first] = await store.query<{ meter_id: string }>(
        sql`SELECT meter_id FROM ${store.table('readings')} ORDER BY meter_id LIMIT 1`,
      );
      return html(
        res,
        200,
        messagePage(ctx, 'meter', 'Meter', 'Choose a meter.', `${meterForm(ctx, first?.meter_id ?? '')}`),
      );
    }
    const from = timeParam(url.searchParams.get('from'));
    const to = timeParam(url.searchParams.get('to'));
    const data = await meterData(store, id, {
      ...(from === undefined ? {} : { from }),
      ...(to === undefined ? {} : { to }),
    });
    if (data === undefined)
      return html(
        res,
        404,
        messagePage(
          ctx,
          'meter',
          `Meter ${id}`,
          `Unknown meter "${id}": it is neither in the registry nor in the readings.`,
          meterForm(ctx, id),
        ),
      );
    return html(res, 200, meterPage(ctx, id, data));
  }
  const filter = {
    meter: (url.searchParams.get('meter') ?? '').trim(),
    reason: (url.searchParams.get('reason') ?? '').trim(),
    decision: url.searchParams.get('decision') ?? 'undecided',
  };
  const decision = filter.decision === 'all' || filter.decision === 'decided' ? filter.decision : 'undecided';
  const [quarantine, lowScores, recent, deadLetters] = await Promise.all([
    listQuarantine(store, { meter: filter.meter, reason: filter.reason, decision, limit: 200 }),
    lowScoreReadings(store, { meter: filter.meter, limit: 50 }),
    recentReviews(store),
    options.deadLetterDir === undefined ? Promise.resolve(undefined) : listDeadLetters(options.deadLetterDir),
  ]);
  return html(
    res,
    200,
    reviewPage(ctx, { filter: { ...filter, decision }, quarantine, lowScores, recent, deadLetters }),
  );
}

function title(page: PageName): string {
  return page[0]!.toUpperCase() + page.slice(1);
}

function timeParam(text: string | null): number | undefined {
  if (text === null || text.trim() === '') return undefined;
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(t) ? undefined : Math.floor(t / 1000);
}

async function pipelineJson(
  options: ConsoleOptions,
): Promise<Partial<PipelineStatus> & { source: string; error?: string }> {
  if (options.pipeline === undefined)
    return { source: options.pipelineSource, topology: pipelineTopology(), stages: {} };
  try {
    return { source: options.pipelineSource, ...(await options.pipeline()) };
  } catch (error) {
    return {
      source: options.pipelineSource,
      topology: pipelineTopology(),
      stages: {},
      error: errorMessage(error),
    };
  }
}

const MAX_BODY = 64 * 1024;

async function review(req: IncomingMessage, res: ServerResponse, options: ConsoleOptions): Promise<void> {
  const reply = (status: number, body: unknown) =>
    send(res, status, 'application/json', JSON.stringify(body));
  if (options.readOnly)
    return reply(403, { error: `read-only: ${options.readOnlyWhy ?? 'reviews are not enabled here'}` });
  // JSON only: a cross-site form cannot send it without a preflight this server never grants.
  if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
    return reply(415, { error: 'send the review as application/json' });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return reply(413, { error: 'review too large' });
    chunks.push(chunk as Buffer);
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    return reply(400, { error: 'the body is not JSON' });
  }
  const store = options.store();
  if (store === undefined) return reply(503, { error: 'the hot store is not open yet' });
  const text = (k: string) => (typeof body[k] === 'string' ? (body[k] as string) : '');
  const who = { reviewer: text('reviewer'), reason: text('reason') };
  try {
    const action = text('action');
    const outcome =
      action === 'approve'
        ? await approveQuarantined(store, text('id'), {
            ...who,
            ...(text('value').trim() === '' ? {} : { valueKw: Number(text('value')) }),
          })
        : action === 'reject'
          ? await rejectQuarantined(store, text('id'), who)
          : action === 'override'
            ? await overrideScore(store, text('meter'), Number(text('ts')) * 1000, {
                ...who,
                score: Number(text('score')),
              })
            : action === 'redrive' && options.deadLetterDir !== undefined
              ? await redriveDeadLetter(store, options.deadLetterDir, text('path'), who)
              : undefined;
    if (outcome === undefined) return reply(400, { error: `unknown action "${action}"` });
    return reply(200, { message: outcome.message });
  } catch (error) {
    if (error instanceof ReviewRefusedError) return reply(409, { error: error.message });
    throw error;
  }
}

function html(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'text/html; charset=utf-8', body);
}

function redirect(res: ServerResponse, to: string): void {
  res.writeHead(303, { Location: to, 'Content-Length': '0' });
  res.end();
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, {
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
    'Content-Length': String(bytes.length),
  });
  res.end(res.req?.method === 'HEAD' ? undefined : bytes);
}

export interface ConsoleServer {
  readonly url: string;
  close(): Promise<void>;
}

/** `greenstream console`: the console on its own port; `/` leads to the Pipeline page. */
export async function startConsoleServer(
  options: ConsoleOptions & { readonly port: number; readonly host: string },
): Promise<ConsoleServer> {
  const handle = consoleHandler(options);
  const server: Server = createServer((req, res) => {
    if (handle(req, res)) return;
    if ((req.url ?? '/').split('?')[0] === '/') return redirect(res, `${CONSOLE_BASE}/pipeline`);
    send(res, 404, 'text/plain; charset=utf-8', 'not found: the console is under /console/\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  const host =
    address === '0.0.0.0'
      ? '127.0.0.1'
      : address === '::'
        ? '[::1]'
        : address.includes(':')
          ? `[${address}]`
          : address;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        server.closeAllConnections();
      }),
  };
}

/** Fetches a worker's `/pipeline.json`. */
export function workerPipeline(metricsUrl: string): () => Promise<PipelineStatus> {
  return async () => {
    const response = await fetch(new URL('/pipeline.json', metricsUrl), {
      signal: AbortSignal.timeout(3000),
    });
    if (!response.ok) throw new Error(`worker answered ${response.status} on /pipeline.json`);
    return (await response.json()) as PipelineStatus;
  };
}
