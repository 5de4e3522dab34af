import { parseArgs } from 'node:util';
import { openHotStore } from '../connectors/clickhouse.js';
import { sql } from '../connectors/sql.js';
import { type Command, UsageError } from './main.js';
import { parseHotTarget } from './options.js';

export const sqlCommand: Command = {
  name: 'sql',
  summary: 'query the hot store (embedded chDB or a ClickHouse server)',
  usage: [
    'Usage: greenstream sql "<query>" [--hot chdb:<dir>|http(s)://host:8123] [--database <db>] [--format table|json|csv]',
    '  The query runs in the `greenstream` database; --hot defaults to $CLICKHOUSE_URL, else chdb:./data/chdb.',
  ].join('\n'),
  run: async (argv) => {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        hot: { type: 'string' },
        database: { type: 'string' },
        format: { type: 'string', default: 'table' },
      },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one query, quoted');
    const format = values.format;
    if (format !== 'table' && format !== 'json' && format !== 'csv') {
      throw new UsageError(`--format must be table, json or csv, got "${format}"`);
    }
    const hot = openHotStore(
      parseHotTarget(values.hot, process.env, values.database ?? process.env.CLICKHOUSE_DATABASE),
    );
    try {
      // The user's own query text is the statement: nothing is interpolated into it.
      const rows = await hot.query(sql.raw(positionals[0]!));
      process.stdout.write(render(rows, format));
    } finally {
      await hot.close();
    }
    return 0;
  },
};

export function render(rows: Record<string, unknown>[], format: 'table' | 'json' | 'csv'): string {
  if (format === 'json') return `${JSON.stringify(rows, null, 2)}\n`;
  const columns = rows.length === 0 ? [] : Object.keys(rows[0]!);
  const cell = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  if (format === 'csv') {
    const quote = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    return `${[columns.join(','), ...rows.map((r) => columns.map((c) => quote(cell(r[c]))).join(','))].join('\n')}\n`;
  }
  if (rows.length === 0) return '(no rows)\n';
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return `${[line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}
