/**
 * `greenstream sql`: one query against the hot store, printed as a table, JSON or CSV.
 *
 * On `--hot chdb:<dir>` the folder may belong to a running worker (chDB lets one process hold it): when
 * its owner file names a live worker, the query goes to that worker's query endpoint (read-only); when
 * the file is stale (the worker was killed) or absent, the folder is opened here as usual.
 */
import { createClient, type Logger } from '@clickhouse/client';
import { sql } from '../codecs/sql.js';
import { findFolderOwner } from '../connectors/chdb-lock.js';
import { openHotStore } from '../connectors/clickhouse.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget } from './options.js';

export const sqlTable = optionTable({
  command: 'sql',
  synopsis: [
    'Usage: greenstream sql "<query>" [options]',
    '  Qualify tables with the database (greenstream.readings): neither engine has it as its default, so an',
    '  unqualified name is looked up in `default`. While a worker runs on chdb:<dir>, the query goes to that',
    '  worker (read-only statements only), where --database is the default database.',
  ],
  positionals: true,
  options: [
    ...hotStoreOptions({
      database: 'the GreenStream database (checked; the default for unqualified names on a running worker)',
    }),
    {
      name: 'format',
      type: 'string',
      choices: ['table', 'json', 'csv'],
      env: 'GS_SQL_FORMAT',
      default: 'table',
      help: 'output format',
    },
  ],
});

export const sqlCommand: Command = {
  name: 'sql',
  summary: 'query the hot store (embedded chDB or a ClickHouse server)',
  usage: optionsHelp(sqlTable),
  run: async (argv) => {
    const { values, positionals } = parseOptions(sqlTable, argv);
    if (positionals.length !== 1) throw new UsageError('give exactly one query, quoted');
    const format = values.format as 'table' | 'json' | 'csv';
    const target = parseHotTarget(values.hot as string, process.env, values.database as string | undefined);
    const query = positionals[0]!;
    if (target.kind === 'chdb') {
      const owner = await findFolderOwner(target.path);
      if (owner.state === 'live') {
        const rows = await queryWorker(owner.owner.endpoint, target.database, query);
        process.stdout.write(render(rows, format));
        return 0;
      }
      if (owner.state === 'stale') {
        process.stderr.write(
          `greenstream sql: ignoring a stale owner file in ${target.path}: ${owner.why}\n`,
        );
      }
    }
    const hot = openHotStore(target);
    try {
      // The user's own query text is the statement: nothing is interpolated into it.
      const rows = await hot.query(sql.raw(query));
      process.stdout.write(render(rows, format));
    } finally {
      await hot.close();
    }
    return 0;
  },
};

/** Runs the query on a worker's query endpoint, as rows of JSON objects (64-bit integers as strings). */
async function queryWorker(
  endpoint: string,
  database: string | undefined,
  query: string,
): Promise<Record<string, unknown>[]> {
  const client = createClient({
    url: endpoint,
    application: 'greenstream-sql',
    // Beyond the endpoint's own time limit (30 s by default), so its error arrives rather than a timeout.
    request_timeout: 300_000,
    // The error reaches the user once, as the command's message; the client would also print it.
    log: { LoggerClass: SilentLogger },
    ...(database === undefined ? {} : { database }),
  });
  try {
    // The client appends its FORMAT clause: a trailing semicolon would make that a second statement.
    const result = await client.query({ query: query.replace(/[\s;]+$/, ''), format: 'JSONEachRow' });
    return await result.json<Record<string, unknown>>();
  } finally {
    await client.close();
  }
}

class SilentLogger implements Logger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A cell as shown in a terminal: control and bidirectional-override characters made visible. */
function printable(text: string): string {
  return text.replace(UNPRINTABLE, (ch) => NAMED[ch] ?? `\\u{${ch.codePointAt(0)!.toString(16)}}`);
}

const JSON_UNSAFE = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Renders rows. The table escapes control characters (a value could otherwise move the cursor or
 * rewrite the terminal); JSON escapes those `JSON.stringify` leaves raw (DEL, C1, bidirectional
 * overrides), which keeps it the same JSON; CSV stays byte-faithful, quoted per RFC 4180.
 * Loops only, no spread of rows into arguments: 200,000 rows would overflow the stack.
 */
export function render(rows: readonly Record<string, unknown>[], format: 'table' | 'json' | 'csv'): string {
  if (format === 'json') {
    const text = JSON.stringify(rows, null, 2).replace(
      JSON_UNSAFE,
      (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    return `${text}\n`;
  }
  const columns = rows.length === 0 ? [] : Object.keys(rows[0]!);
  const cell = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v));
  const lines: string[] = [];
  if (format === 'csv') {
    const quote = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    lines.push(columns.map(quote).join(','));
    for (const row of rows) lines.push(columns.map((c) => quote(cell(row[c]))).join(','));
    return `${lines.join('\n')}\n`;
  }
  if (rows.length === 0) return '(no rows)\n';
  const header = columns.map(printable);
  const widths = header.map((c) => c.length);
  const body: string[][] = new Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const cells = new Array<string>(columns.length);
    for (let c = 0; c < columns.length; c++) {
      const text = printable(cell(rows[r]![columns[c]!]));
      cells[c] = text;
      if (text.length > widths[c]!) widths[c] = text.length;
    }
    body[r] = cells;
  }
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  lines.push(line(header), line(widths.map((w) => '-'.repeat(w))));
  for (const cells of body) lines.push(line(cells));
  lines.push(`(${rows.length} row${rows.length === 1 ? '' : 's'})`);
  return `${lines.join('\n')}\n`;
}
