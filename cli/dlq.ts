/**
 * `greenstream dlq list|redrive`: the landing folder's dead letters, and sending them through decoding
 * again after a fix (each back into the landing folder under a new name, logged in `review_log`).
 */
import { resolve } from 'node:path';
import { listDeadLetters, redriveDeadLetter } from '../console/review.js';
import { openConsoleStore } from '../console/store.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { parseHotTarget } from './options.js';
import { REVIEWER_OPTION, reviewerOf, STORE_OPTIONS } from './review.js';
import { render } from './sql.js';

export const dlqTable = optionTable({
  command: 'dlq',
  synopsis: [
    'Usage: greenstream dlq list [--dead-letter <dir>] [--format table|json|csv]',
    '       greenstream dlq redrive <file…>|--all --reason "<why>" [--dead-letter <dir>] [--reviewer <name>]',
    '         [--hot chdb:<dir>|http(s)://host:8123] [--database <db>]',
    '  A redriven file goes back into the landing folder beside where it came from, as',
    '  <name>.redrive-<ms><ext>, for the worker to decode again; a file that still fails is dead-lettered',
    '  again. Dead letters of the NATS source (READINGS_DLQ) are not handled here.',
  ],
  positionals: true,
  options: [
    {
      name: 'dead-letter',
      type: 'string',
      arg: 'dir',
      env: 'GS_LANDING_DEAD_LETTER',
      default: './data/landing/dead-letter',
      help: "the landing folder's dead-letter folder",
    },
    {
      name: 'format',
      type: 'string',
      choices: ['table', 'json', 'csv'],
      env: 'GS_DLQ_FORMAT',
      default: 'table',
      help: 'list: output format',
    },
    {
      name: 'all',
      type: 'boolean',
      env: 'GS_DLQ_ALL',
      help: 'redrive: every dead letter (instead of files)',
    },
    {
      name: 'reason',
      type: 'string',
      arg: 'text',
      env: 'GS_DLQ_REASON',
      help: 'redrive: why, logged in review_log (required)',
    },
    REVIEWER_OPTION,
    ...STORE_OPTIONS,
  ],
});

export const dlqCommand: Command = {
  name: 'dlq',
  summary: "list the landing folder's dead letters, or redrive them through decoding again",
  usage: optionsHelp(dlqTable),
  run: async (argv) => {
    const { values: v, positionals } = parseOptions(dlqTable, argv);
    const values = {
      'dead-letter': v['dead-letter'] as string,
      format: v.format as 'table' | 'json' | 'csv',
      all: v.all === true,
      reason: v.reason as string | undefined,
      reviewer: v.reviewer as string | undefined,
      hot: v.hot as string,
      database: v.database as string | undefined,
    };
    const [action, ...files] = positionals;
    const dir = resolve(values['dead-letter']);
    if (action === 'list') {
      const format = values.format;
      const rows = (await listDeadLetters(dir)).map((d) => ({
        file: d.path,
        source: d.source,
        reason: d.reason,
        bytes: d.bytes,
        since: new Date(d.since).toISOString(),
      }));
      process.stdout.write(render(rows, format));
      return 0;
    }
    if (action !== 'redrive') throw new UsageError(`dlq needs list or redrive, got "${action ?? ''}"`);
    if (values.reason === undefined || values.reason.trim() === '')
      throw new UsageError('dlq redrive needs --reason "<why>"');
    if (values.all === files.length > 0) throw new UsageError('give the files to redrive, or --all');
    const reviewer = reviewerOf(values.reviewer, process.env);
    const targets = values.all
      ? (await listDeadLetters(dir)).filter((d) => d.bytes > 0).map((d) => d.path)
      : files;
    const store = await openConsoleStore(parseHotTarget(values.hot, process.env, values.database));
    try {
      for (const path of targets) {
        const outcome = await redriveDeadLetter(store, dir, path, { reviewer, reason: values.reason });
        process.stdout.write(`${outcome.message}\n`);
      }
      if (targets.length === 0) process.stdout.write('no dead letters to redrive\n');
    } finally {
      await store.close();
    }
    return 0;
  },
};
