/**
 * `greenstream dlq list|redrive`: the landing folder's dead letters, and sending them through decoding
 * again after a fix (each back into the landing folder under a new name, logged in `review_log`).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { listDeadLetters, redriveDeadLetter } from '../console/review.js';
import { openConsoleStore } from '../console/store.js';
import { type Command, UsageError } from './main.js';
import { parseHotTarget } from './options.js';
import { reviewerOf } from './review.js';
import { render } from './sql.js';

export const dlqCommand: Command = {
  name: 'dlq',
  summary: "list the landing folder's dead letters, or redrive them through decoding again",
  usage: [
    'Usage: greenstream dlq list [--dead-letter <dir>] [--format table|json|csv]',
    '       greenstream dlq redrive <file…>|--all --reason "<why>" [--dead-letter <dir>] [--reviewer <name>]',
    '         [--hot chdb:<dir>|http(s)://host:8123] [--database <db>]',
    '  --dead-letter defaults to ./data/landing/dead-letter. A redriven file goes back into the landing',
    '  folder beside where it came from, as <name>.redrive-<ms><ext>, for the worker to decode again; a',
    '  file that still fails is dead-lettered again. Dead letters of the NATS source (READINGS_DLQ) are',
    '  not handled here.',
  ].join('\n'),
  run: async (argv) => {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'dead-letter': { type: 'string', default: './data/landing/dead-letter' },
        format: { type: 'string', default: 'table' },
        all: { type: 'boolean', default: false },
        reason: { type: 'string' },
        reviewer: { type: 'string' },
        hot: { type: 'string' },
        database: { type: 'string' },
      },
    });
    const [action, ...files] = positionals;
    const dir = resolve(values['dead-letter']!);
    if (action === 'list') {
      const format = values.format;
      if (format !== 'table' && format !== 'json' && format !== 'csv')
        throw new UsageError(`--format must be table, json or csv, got "${format}"`);
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
    const store = await openConsoleStore(
      parseHotTarget(values.hot, process.env, values.database ?? process.env.CLICKHOUSE_DATABASE),
    );
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
