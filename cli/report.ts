/**
 * `greenstream report`: the demo's summary (balance, faults, alerts, quality tiers, daily peaks,
 * quarantine reasons) for any hot store and event-time range, as Markdown or a self-contained HTML page.
 * Every query is built with the `sql` tag: the range and the database are values and identifiers, never text.
 */
import { writeFile } from 'node:fs/promises';
import { type SqlFragment, sql } from '../codecs/sql.js';
import type { HotRelationName } from '../connectors/clickhouse.js';
import { type HotStore, openHotStore } from '../connectors/clickhouse.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget, parseTime } from './options.js';

export const reportTable = optionTable({
  command: 'report',
  synopsis: [
    'Usage: greenstream report [--from TIME] [--to TIME] [--format md|html] [options]',
    '  Summarizes a hot store for an event-time range [from, to): the balance of records in against stored,',
    '  quarantined and dead-lettered (from quality_log, by processing time), faults by kind, alerts, quality',
    '  tiers, the daily peak hours and the quarantine reasons.',
  ],
  options: [
    ...hotStoreOptions(),
    {
      name: 'from',
      type: 'string',
      arg: 'time',
      env: 'GS_REPORT_FROM',
      defaultText: '1970-01-01',
      help: 'start of the range (ISO-8601), included',
    },
    {
      name: 'to',
      type: 'string',
      arg: 'time',
      env: 'GS_REPORT_TO',
      defaultText: 'now',
      help: 'end of the range (ISO-8601), excluded',
    },
    {
      name: 'format',
      type: 'string',
      choices: ['md', 'html'],
      env: 'GS_REPORT_FORMAT',
      default: 'md',
      help: 'Markdown or a self-contained HTML page',
    },
    {
      name: 'out',
      type: 'string',
      arg: 'file',
      env: 'GS_REPORT_OUT',
      defaultText: 'stdout',
      help: 'write the report to this file',
    },
  ],
});

export interface ReportRange {
  readonly from: Date;
  readonly to: Date;
}

export interface ReportSection {
  readonly title: string;
  readonly rows: readonly Record<string, unknown>[];
  /** A sentence under the title. */
  readonly note?: string;
}

export interface Report {
  readonly range: ReportRange;
  readonly database: string;
  readonly engine: string;
  readonly sections: readonly ReportSection[];
}

/** The queries of the report, by section; exported so the dashboards' test can run the same shapes. */
export function reportQueries(
  relation: (name: HotRelationName) => SqlFragment,
  range: ReportRange,
): readonly { readonly title: string; readonly note?: string; readonly query: SqlFragment }[] {
  const { from, to } = range;
  return [
    {
      title: 'Balance',
      note: 'records in = stored + quarantined + dead-lettered, over the batches logged in the range (processing time).',
      // Inner aliases differ from the columns: ClickHouse resolves a name to an alias first.
      query: sql`SELECT total_in AS records_in, total_stored AS stored, total_quarantined AS quarantined, total_dead AS dead_lettered, total_in = total_stored + total_quarantined + total_dead AS balanced, n AS batches FROM (SELECT sum(records_in) AS total_in, sum(stored) AS total_stored, sum(quarantined) AS total_quarantined, sum(dead_lettered) AS total_dead, count() AS n FROM ${relation('quality_log')} FINAL WHERE logged_at >= ${from} AND logged_at < ${to})`,
    },
    {
      title: 'Readings by status',
      query: sql`SELECT status, count() AS readings FROM ${relation('readings')} FINAL WHERE ts >= ${from} AND ts < ${to} GROUP BY status ORDER BY status`,
    },
    {
      title: 'Quality tiers',
      query: sql`SELECT quality_tier, count() AS readings, round(avg(quality_score), 1) AS avg_score FROM ${relation('readings')} FINAL WHERE ts >= ${from} AND ts < ${to} GROUP BY quality_tier ORDER BY quality_tier`,
    },
    {
      title: 'Faults by kind',
      query: sql`SELECT fault_type, count() AS faults, uniqExact(meter_id) AS meters FROM ${relation('faults')} FINAL WHERE window_start >= ${from} AND window_start < ${to} GROUP BY fault_type ORDER BY fault_type`,
    },
    {
      title: 'Alerts',
      query: sql`SELECT severity, kind, count() AS alerts FROM ${relation('alerts')} FINAL WHERE ts >= ${from} AND ts < ${to} GROUP BY severity, kind ORDER BY severity, kind`,
    },
    {
      title: 'Daily peak hours',
      query: sql`SELECT toString(day) AS peak_day, rank, hour, round(total_kw, 1) AS total_kw FROM ${relation('daily_peaks')} FINAL WHERE day >= ${from} AND day < ${to} ORDER BY day, rank`,
    },
    {
      title: 'Quarantine reasons',
      note: 'A record may have several reasons; by the time it was quarantined.',
      query: sql`SELECT reason, count() AS records FROM ${relation('quarantine')} FINAL ARRAY JOIN reasons AS reason WHERE quarantined_at >= ${from} AND quarantined_at < ${to} GROUP BY reason ORDER BY records DESC, reason`,
    },
  ];
}

export async function buildReport(store: HotStore, range: ReportRange): Promise<Report> {
  const sections: ReportSection[] = [];
  for (const q of reportQueries(store.relation, range)) {
    sections.push({
      title: q.title,
      rows: await store.query(q.query),
      ...(q.note === undefined ? {} : { note: q.note }),
    });
  }
  return { range, database: store.database, engine: store.engine, sections };
}

function cell(value: unknown): string {
  return value === null || value === undefined
    ? ''
    : typeof value === 'string'
      ? value
      : JSON.stringify(value);
}

function mdCell(value: unknown): string {
  // A value from the store (a quarantine reason) must not break the table or inject markup.
  return cell(value)
    .replace(/[\r\n]+/g, ' ')
    .replace(/\|/g, '\\|')
    .replace(/</g, '&lt;');
}

export function reportMarkdown(report: Report): string {
  const out = [
    `# GreenStream report`,
    '',
    `Store: \`${report.database}\` on ${report.engine}; range ${report.range.from.toISOString()} to ${report.range.to.toISOString()} (end excluded).`,
  ];
  for (const s of report.sections) {
    out.push('', `## ${s.title}`, '');
    if (s.note !== undefined) out.push(s.note, '');
    if (s.rows.length === 0) {
      out.push('(none)');
      continue;
    }
    const columns = Object.keys(s.rows[0]!);
    out.push(`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`);
    for (const row of s.rows) out.push(`| ${columns.map((c) => mdCell(row[c])).join(' | ')} |`);
  }
  return `${out.join('\n')}\n`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export function reportHtml(report: Report): string {
  const out = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><title>GreenStream report</title>',
    '<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#eef}</style>',
    '</head><body>',
    '<h1>GreenStream report</h1>',
    `<p>Store <code>${escapeHtml(report.database)}</code> on ${escapeHtml(report.engine)}; range ${escapeHtml(report.range.from.toISOString())} to ${escapeHtml(report.range.to.toISOString())} (end excluded).</p>`,
  ];
  for (const s of report.sections) {
    out.push(`<h2>${escapeHtml(s.title)}</h2>`);
    if (s.note !== undefined) out.push(`<p>${escapeHtml(s.note)}</p>`);
    if (s.rows.length === 0) {
      out.push('<p>(none)</p>');
      continue;
    }
    const columns = Object.keys(s.rows[0]!);
    out.push(`<table><tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`);
    for (const row of s.rows)
      out.push(`<tr>${columns.map((c) => `<td>${escapeHtml(cell(row[c]))}</td>`).join('')}</tr>`);
    out.push('</table>');
  }
  out.push('</body></html>');
  return `${out.join('\n')}\n`;
}

export const reportCommand: Command = {
  name: 'report',
  summary:
    'summarize a hot store for a time range: balance, faults, alerts, tiers, peaks, quarantine (md or html)',
  usage: optionsHelp(reportTable),
  run: async (argv) => {
    const { values } = parseOptions(reportTable, argv);
    const from = values.from === undefined ? new Date(0) : parseTime(values.from as string, '--from');
    const to = values.to === undefined ? new Date() : parseTime(values.to as string, '--to');
    if (!(to > from)) throw new UsageError('--to must be after --from');
    const target = parseHotTarget(values.hot as string, process.env, values.database as string | undefined);
    const store = openHotStore(target);
    let text: string;
    try {
      const report = await buildReport(store, { from, to });
      text = values.format === 'html' ? reportHtml(report) : reportMarkdown(report);
    } finally {
      await store.close();
    }
    if (values.out === undefined) process.stdout.write(text);
    else await writeFile(values.out as string, text);
    return 0;
  },
};
