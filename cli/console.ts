/**
 * `greenstream console`: the web console over the hot store (and, when known, a worker's live graph),
 * served until SIGINT/SIGTERM. Read-only unless `--allow-review`.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { raiseReviewBacklogAlerts } from '../console/review.js';
import { CONSOLE_BASE, startConsoleServer, workerPipeline } from '../console/server.js';
import { openConsoleStore } from '../console/store.js';
import { errorMessage } from '../core/errors.js';
import { logger } from './log.js';
import { type Command, UsageError } from './main.js';
import { parseHotTarget, redactCredentials } from './options.js';

const BACKLOG_CHECK_MS = 10 * 60_000;

export const consoleCommand: Command = {
  name: 'console',
  summary: 'serve the web console: live pipeline, data quality, meter drill-down, quarantine review',
  usage: [
    'Usage: greenstream console [--hot chdb:<dir>|http(s)://host:8123] [--database <db>] [--metrics-url http://worker:port]',
    '                           [--port 8080] [--host 127.0.0.1] [--allow-review] [--dead-letter <dir>]',
    '  --hot            the hot store (default $CLICKHOUSE_URL, else chdb:./data/chdb); a chDB folder a worker',
    '                   holds is read through that worker, read-only',
    "  --metrics-url    a worker's metrics endpoint, for the live Pipeline page (default: the worker holding",
    '                   the chDB folder, if any)',
    '  --allow-review   enable approve / reject / override / redrive (needs the store itself, not a worker)',
    "  --dead-letter    the landing folder's dead-letter folder, listed on the Review page",
  ].join('\n'),
  run: async (argv) => {
    const { values } = parseArgs({
      args: argv,
      options: {
        hot: { type: 'string' },
        database: { type: 'string' },
        'metrics-url': { type: 'string' },
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        'allow-review': { type: 'boolean', default: false },
        'dead-letter': { type: 'string' },
      },
    });
    const port = Number(values.port);
    if (!(Number.isInteger(port) && port >= 0 && port < 65536))
      throw new UsageError(`--port must be a port number, got "${values.port}"`);
    const metricsUrl = values['metrics-url'];
    if (metricsUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(metricsUrl))
      throw new UsageError(
        `--metrics-url must be http(s)://host:port, got "${redactCredentials(metricsUrl)}"`,
      );
    const target = parseHotTarget(
      values.hot,
      process.env,
      values.database ?? process.env.CLICKHOUSE_DATABASE,
    );
    const store = await openConsoleStore(target);
    const worker = metricsUrl ?? store.workerEndpoint;
    const readOnlyWhy =
      store.hot === undefined
        ? 'a worker holds this chDB folder; the console reads it through the worker'
        : values['allow-review']
          ? undefined
          : 'start the console with --allow-review to act on records';
    const deadLetterDir = values['dead-letter'] === undefined ? undefined : resolve(values['dead-letter']);
    const server = await startConsoleServer({
      port,
      host: values.host!,
      store: () => store,
      ...(worker === undefined ? {} : { pipeline: workerPipeline(worker) }),
      pipelineSource:
        worker === undefined
          ? 'No worker given (--metrics-url): the graph as `run` builds it, without live figures.'
          : `Live figures from the worker at ${redactCredentials(worker)}, refreshed every 2 s.`,
      readOnly: readOnlyWhy !== undefined,
      ...(readOnlyWhy === undefined ? {} : { readOnlyWhy }),
      ...(deadLetterDir === undefined ? {} : { deadLetterDir }),
      describe: store.describe,
    });
    const checkBacklog = async () => {
      try {
        const alerts = await raiseReviewBacklogAlerts(store, {
          ...(deadLetterDir === undefined ? {} : { deadLetterDir }),
        });
        for (const alert of alerts) logger.warn('alert', { ...alert });
      } catch (error) {
        logger.error('cannot check the review backlog', { error: errorMessage(error) });
      }
    };
    // Writing the alert is a write: only a console allowed to write does it.
    const timer = readOnlyWhy === undefined ? setInterval(checkBacklog, BACKLOG_CHECK_MS) : undefined;
    if (readOnlyWhy === undefined) await checkBacklog();
    logger.info('serving console', {
      url: `${server.url}${CONSOLE_BASE}/`,
      readOnly: readOnlyWhy !== undefined,
    });
    process.stdout.write(`console: ${server.url}${CONSOLE_BASE}/\n`);
    await new Promise<void>((done) => {
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
    });
    clearInterval(timer);
    await server.close();
    await store.close();
    return 0;
  },
};
