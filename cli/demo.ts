import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { sql } from '../codecs/sql.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import {
  defaultExpectationThresholds,
  expectationSummary,
  runExpectations,
} from '../pipelines/expectations.js';
import { runMeterQualityJob } from '../pipelines/job.js';
import { simulate } from '../simulator/index.js';
import type { Command } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { render } from './sql.js';

export const demoTable = optionTable({
  command: 'demo',
  synopsis: [
    'Usage: greenstream demo [options]',
    '  Starts from an empty --dir each time: simulated landing folder, chDB store, Parquet lake, checkpoint.',
  ],
  options: [
    {
      name: 'dir',
      type: 'string',
      arg: 'dir',
      env: 'GS_DEMO_DIR',
      default: './data/demo',
      help: 'working folder (emptied first)',
    },
    { name: 'meters', type: 'integer', env: 'GS_DEMO_METERS', default: 1000, help: 'simulated meters' },
    { name: 'days', type: 'integer', env: 'GS_DEMO_DAYS', default: 1, help: 'simulated days' },
    { name: 'seed', type: 'integer', min: 0, env: 'GS_DEMO_SEED', default: 1, help: 'simulation seed' },
  ],
});

export const demoCommand: Command = {
  name: 'demo',
  summary: 'simulate a day of 1,000 meters, run the whole pipeline embedded, print a summary (npm start)',
  usage: optionsHelp(demoTable),
  run: async (argv) => {
    const { values } = parseOptions(demoTable, argv);
    const dir = resolve(values.dir as string);
    await rm(dir, { recursive: true, force: true });
    const landing = join(dir, 'landing');
    const started = Date.now();
    const sim = await simulate({
      out: landing,
      meters: values.meters as number,
      days: values.days as number,
      start: '2024-03-11',
      seed: values.seed as number,
    });
    const simulatedMs = Date.now() - started;
    process.stdout.write(
      `simulated ${sim.meters} meters × ${sim.days} day(s): ${sim.lines} lines in ${sim.files} files (${simulatedMs} ms)\n`,
    );
    const { totals, hot, lake } = await runMeterQualityJob({
      source: { kind: 'files', root: landing },
      registryPath: join(landing, 'registry.csv'),
      hot: { kind: 'chdb', path: join(dir, 'chdb') },
      coldDir: join(dir, 'lake'),
      checkpointPath: join(dir, 'checkpoint.json'),
      untilIdle: true,
      replay: false,
      profile: resolveRuleProfile(),
      workerId: 'demo',
    });
    const pipelineMs = Date.now() - started - simulatedMs;
    try {
      const q = (text: string) => hot.query(sql.raw(text));
      const out: string[] = [];
      out.push('', `GreenStream demo — pipeline ran in ${(pipelineMs / 1000).toFixed(1)} s`, '');
      out.push(
        `records in:     ${totals.recordsIn}`,
        `stored:         ${totals.measured} received readings (+${totals.readings - totals.measured} interpolated/missing interval rows)`,
        `quarantined:    ${totals.quarantined}`,
        `dead-lettered:  ${totals.deadLettered}`,
        `balance:        ${totals.recordsIn} = ${totals.measured} + ${totals.quarantined} + ${totals.deadLettered} ${
          totals.recordsIn === totals.measured + totals.quarantined + totals.deadLettered ? '✓' : '✗ MISMATCH'
        }`,
        '',
        'faults by kind:',
      );
      out.push(
        render(
          await q(
            'SELECT fault_type, count() AS faults FROM greenstream.faults FINAL GROUP BY fault_type ORDER BY fault_type',
          ),
          'table',
        ),
      );
      out.push('alerts:');
      out.push(
        render(
          await q(
            'SELECT severity, kind, count() AS alerts FROM greenstream.alerts FINAL GROUP BY severity, kind ORDER BY severity, kind',
          ),
          'table',
        ),
      );
      out.push('quality tiers:');
      out.push(
        render(
          await q(
            'SELECT quality_tier, count() AS readings FROM greenstream.readings FINAL GROUP BY quality_tier ORDER BY quality_tier',
          ),
          'table',
        ),
      );
      out.push('top 3 peak hours:');
      out.push(
        render(
          await q(
            'SELECT day, rank, hour, round(total_kw, 1) AS total_kw FROM greenstream.daily_peaks FINAL ORDER BY day, rank',
          ),
          'table',
        ),
      );
      const expected = await runExpectations(hot, {
        thresholds: defaultExpectationThresholds(resolveRuleProfile()),
        suites: ['daily'],
        now: Date.now(),
      });
      out.push(
        `${expectationSummary(expected)} (greenstream expect --hot chdb:${join(dir, 'chdb')} --report r.md)`,
        '',
      );
      out.push(
        `Parquet lake: ${join(dir, 'lake')} (${(await lake?.listFiles('readings'))?.length ?? 0} readings files)`,
        `Query it:     npx greenstream sql --hot chdb:${join(dir, 'chdb')} "SELECT count() FROM greenstream.readings FINAL"`,
        '',
      );
      process.stdout.write(out.join('\n'));
    } finally {
      await lake?.close();
      await hot.close();
    }
    return 0;
  },
};
