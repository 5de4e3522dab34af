/**
 * `greenstream expect`: runs the expectation suites over the hot store and its models, prints one line
 * per expectation and a summary, stores the results (`expectation_results`) and the `quality_degradation`
 * alerts of failures, and writes a Markdown or HTML report when asked.
 */
import { writeFile } from 'node:fs/promises';
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
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, loadProfile, parseHotTarget } from './options.js';
import { render } from './sql.js';

export const expectTable = optionTable({
  command: 'expect',
  synopsis: [
    'Usage: greenstream expect [--suite daily|live]… [options]',
    '  Results go to greenstream.expectation_results, failures raise quality_degradation alerts. On',
    '  chdb:<dir> the folder must not be held by a running worker.',
  ],
  options: [
    {
      name: 'suite',
      type: 'string',
      choices: SUITES,
      multiple: true,
      env: 'GS_EXPECT_SUITE',
      defaultText: 'every suite',
      help: 'the suites to run (repeat the flag, or a comma-separated list)',
    },
    ...hotStoreOptions(),
    {
      name: 'report',
      type: 'string',
      arg: 'file.md|file.html',
      env: 'GS_EXPECT_REPORT',
      help: 'also write the results as Markdown or a self-contained HTML page',
    },
    {
      name: 'profile',
      type: 'string',
      arg: 'json',
      help: 'rule profile overrides (the expectation thresholds follow it)',
    },
  ],
});

export const expectCommand: Command = {
  name: 'expect',
  summary: 'run the expectation suites over the hot store and its models, report and alert on failures',
  usage: optionsHelp(expectTable),
  run: async (argv) => {
    const { values } = parseOptions(expectTable, argv);
    const suiteList = values.suite as string | undefined;
    const suites = suiteList === undefined || suiteList === '' ? [] : suiteList.split(',');
    const report = values.report as string | undefined;
    if (report !== undefined && !/\.(md|html?)$/i.test(report))
      throw new UsageError(`--report must name a .md or .html file, got "${report}"`);
    const profile = loadProfile(values.profile as string | undefined);
    const target = parseHotTarget(values.hot as string, process.env, values.database as string | undefined);
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
