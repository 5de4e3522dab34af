/**
 * `greenstream expect`: runs the expectation suites over the hot store and its models, prints one line
 * per expectation and a summary, stores the results (`expectation_results`) and the `quality_degradation`
 * alerts of failures, and writes a Markdown or HTML report when asked.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { findFolderOwner } from '../connectors/chdb-lock.js';
import { openHotStore } from '../connectors/clickhouse.js';
import {
  defaultExpectationThresholds,
  expectationReportHtml,
  expectationReportMarkdown,
  expectationSummary,
  runExpectations,
  SUITES,
} from '../pipelines/expectations.js';
import { type Command, UsageError } from './main.js';
import { loadProfile, parseHotTarget } from './options.js';
import { render } from './sql.js';

export const expectCommand: Command = {
  name: 'expect',
  summary: 'run the expectation suites over the hot store and its models, report and alert on failures',
  usage: [
    'Usage: greenstream expect [--suite daily|live]… [--hot chdb:<dir>|http(s)://host:8123] [--database <db>]',
    '                          [--report <file.md|file.html>] [--profile <rule profile json>]',
    '  Without --suite every suite runs. Results go to greenstream.expectation_results, failures raise',
    '  quality_degradation alerts. On chdb:<dir> the folder must not be held by a running worker.',
  ].join('\n'),
  run: async (argv) => {
    const { values } = parseArgs({
      args: argv,
      options: {
        suite: { type: 'string', multiple: true },
        hot: { type: 'string' },
        database: { type: 'string' },
        report: { type: 'string' },
        profile: { type: 'string' },
      },
    });
    const suites = values.suite ?? [];
    for (const s of suites)
      if (!(SUITES as readonly string[]).includes(s))
        throw new UsageError(`--suite must be one of ${SUITES.join(', ')}, got "${s}"`);
    const report = values.report;
    if (report !== undefined && !/\.(md|html?)$/i.test(report))
      throw new UsageError(`--report must name a .md or .html file, got "${report}"`);
    const profile = loadProfile(values.profile);
    const target = parseHotTarget(
      values.hot,
      process.env,
      values.database ?? process.env.CLICKHOUSE_DATABASE,
    );
    if (target.kind === 'chdb' && (await findFolderOwner(target.path)).state === 'live')
      throw new UsageError(
        `a running worker holds chdb:${target.path}; expectations write results, so run them once it stops (or on a server store)`,
      );
    const hot = openHotStore(target);
    try {
      await hot.migrate();
      const run = await runExpectations(hot, {
        thresholds: defaultExpectationThresholds(profile),
        suites,
        now: Date.now(),
      });
      process.stdout.write(
        render(
          run.results.map((r) => ({
            suite: r.suite,
            expectation: r.expectation,
            result: r.success ? 'pass' : 'FAIL',
            failing: r.failing,
            first_keys: r.failingKeys.slice(0, 3).join(', '),
          })),
          'table',
        ),
      );
      process.stdout.write(`${expectationSummary(run)}\n`);
      if (report !== undefined) {
        await writeFile(
          report,
          /\.html?$/i.test(report) ? expectationReportHtml(run) : expectationReportMarkdown(run),
        );
        process.stdout.write(`report: ${report}\n`);
      }
    } finally {
      await hot.close();
    }
    return 0;
  },
};
