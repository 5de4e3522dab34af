/**
 * `greenstream console`: the web console over the hot store (and, when known, a worker's live graph),
 * served until SIGINT/SIGTERM. Read-only unless `--allow-review`.
 */
import { resolve } from 'node:path';
import { raiseReviewBacklogAlerts } from '../console/review.js';
import { CONSOLE_BASE, startConsoleServer, workerPipeline } from '../console/server.js';
import { openConsoleStore } from '../console/store.js';
import { errorMessage } from '../core/errors.js';
import { logger } from './log.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget, redactCredentials } from './options.js';

const BACKLOG_CHECK_MS = 10 * 60_000;

export const consoleTable = optionTable({
  command: 'console',
  synopsis: [
    'Usage: greenstream console [options]',
    '  Serves the web console until SIGINT/SIGTERM: live pipeline, data quality, meter drill-down, quarantine',
    '  review. Read-only unless --allow-review.',
  ],
  options: [
    ...hotStoreOptions({
      hot: 'chdb:<dir> or http(s)://host:8123; a chDB folder a worker holds is read through that worker, read-only',
    }),
    {
      name: 'metrics-url',
      type: 'string',
      arg: 'url',
      env: 'GS_CONSOLE_METRICS_URL',
      defaultText: 'the worker holding the chDB folder, if any',
      help: "a worker's metrics endpoint (http(s)://host:port), for the live Pipeline page",
    },
    {
      name: 'port',
      type: 'integer',
      min: 0,
      max: 65535,
      env: 'GS_CONSOLE_PORT',
      default: 8080,
      help: 'port to listen on (0: any free port)',
    },
    {
      name: 'host',
      type: 'string',
      arg: 'address',
      env: 'GS_CONSOLE_HOST',
      default: '127.0.0.1',
      help: 'address to listen on',
    },
    {
      name: 'allow-review',
      type: 'boolean',
      env: 'GS_CONSOLE_ALLOW_REVIEW',
      help: 'enable approve / reject / override / redrive (needs the store itself, not a worker)',
    },
    {
      name: 'dead-letter',
      type: 'string',
      arg: 'dir',
      env: 'GS_LANDING_DEAD_LETTER',
      help: "the landing folder's dead-letter folder, listed on the Review page",
    },
  ],
});

export const consoleCommand: Command = {
  name: 'console',
  summary: 'serve the web console: live pipeline, data quality, meter drill-down, quarantine review',
  usage: optionsHelp(consoleTable),
  run: async (argv) => {
    const { values } = parseOptions(consoleTable, argv);
    const port = values.port as number;
    const metricsUrl = values['metrics-url'] as string | undefined;
    if (metricsUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(metricsUrl))
      throw new UsageError(
        `--metrics-url must be http(s)://host:port, got "${redactCredentials(metricsUrl)}"`,
      );
    const target = parseHotTarget(values.hot as string, process.env, values.database as string | undefined);
    const store = await openConsoleStore(target);
    const worker = metricsUrl ?? store.workerEndpoint;
    const readOnlyWhy =
      store.hot === undefined
        ? 'a worker holds this chDB folder; the console reads it through the worker'
        : values['allow-review'] === true
          ? undefined
          : 'start the console with --allow-review to act on records';
    const deadLetter = values['dead-letter'] as string | undefined;
    const deadLetterDir = deadLetter === undefined ? undefined : resolve(deadLetter);
    const server = await startConsoleServer({
      port,
      host: values.host as string,
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
