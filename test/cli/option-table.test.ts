import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../cli/commands.js';
import { expectTable } from '../../cli/expect.js';
import { registeredCommands, UsageError } from '../../cli/main.js';
import {
  envNames,
  optionsHelp,
  parseDuration,
  parseOptions,
  parseSize,
  readmeMarkers,
  registeredTables,
  withGeneratedTables,
} from '../../cli/option-table.js';
import { pollTable } from '../../cli/poll.js';
import { publishTable } from '../../cli/publish.js';
import { reviewTable } from '../../cli/review.js';
import { runTable } from '../../cli/run.js';
import { sqlTable } from '../../cli/sql.js';
import { DEFAULT_READINGS_RETENTION } from '../../connectors/jetstream-streams.js';

const bin = new URL('../../bin/greenstream.js', import.meta.url).pathname;

describe('the option tables', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-options-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives every registered command a table, and takes its --help from it', () => {
    const commands = registeredCommands();
    expect(commands.length).toBeGreaterThanOrEqual(16);
    for (const command of commands) {
      const table = registeredTables().find((t) => t.command === command.name);
      expect(table, `option table of ${command.name}`).toBeDefined();
      expect(command.usage, `--help of ${command.name}`).toBe(optionsHelp(table!));
    }
    expect(
      registeredTables()
        .map((t) => t.command)
        .sort(),
    ).toEqual(commands.map((c) => c.name).sort());
  });

  it('README holds the generated table of every command, unchanged', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    for (const table of registeredTables()) {
      const { begin, end } = readmeMarkers(table.command);
      expect(readme, `README section for ${table.command}`).toContain(begin);
      expect(readme).toContain(end);
    }
    expect(readme).toBe(withGeneratedTables(readme));
  });

  it('gives every flag an environment variable and documents each in --help', () => {
    for (const table of registeredTables()) {
      const help = optionsHelp(table);
      for (const spec of table.options) {
        expect(envNames(spec).length).toBeGreaterThan(0);
        expect(help).toContain(`--${spec.name}`);
        expect(help).toContain(`$${envNames(spec)[0]}`);
      }
    }
  });

  it('takes a value from the flag, else the environment, else the config file, else the default', async () => {
    const config = join(dir, 'precedence.yaml');
    await writeFile(config, 'flush-rows: 300\npull: 64\nrun:\n  lease: 20s\n');
    const parse = (argv: string[], env: NodeJS.ProcessEnv) => parseOptions(runTable, argv, env);
    // default
    expect(parse([], {}).values['flush-rows']).toBe(100_000);
    // config over default, a command section included
    const fromConfig = parse(['--config', config], {});
    expect(fromConfig.values['flush-rows']).toBe(300);
    expect(fromConfig.values.lease).toBe(20_000);
    expect(fromConfig.origins['flush-rows']).toBe('config');
    // $GS_CONFIG names the file as well
    expect(parse([], { GS_CONFIG: config }).values.pull).toBe(64);
    // env over config; a blank variable counts as unset
    const fromEnv = parse(['--config', config], { GS_FLUSH_ROWS: '200', GS_PULL: '  ' });
    expect(fromEnv.values['flush-rows']).toBe(200);
    expect(fromEnv.values.pull).toBe(64);
    expect(fromEnv.origins['flush-rows']).toBe('env');
    // flag over env
    const fromFlag = parse(['--config', config, '--flush-rows', '100'], { GS_FLUSH_ROWS: '200' });
    expect(fromFlag.values['flush-rows']).toBe(100);
    expect(fromFlag.origins['flush-rows']).toBe('flag');
  });

  it('reads JSON config files and refuses unknown keys, naming the file', async () => {
    const json = join(dir, 'c.json');
    await writeFile(json, JSON.stringify({ 'checkpoint-interval': '2m', 'no-cold': true, format: 'csv' }));
    const parsed = parseOptions(runTable, ['--config', json], {});
    expect(parsed.values['checkpoint-interval']).toBe(120_000);
    expect(parsed.values['no-cold']).toBe(true);
    // `format` belongs to other commands: skipped here, taken there
    expect(parseOptions(sqlTable, ['--config', json], {}).values.format).toBe('csv');
    const typo = join(dir, 'typo.yaml');
    await writeFile(typo, 'flush-rowz: 5\n');
    expect(() => parseOptions(runTable, ['--config', typo], {})).toThrow(
      /typo\.yaml: unknown key "flush-rowz"/,
    );
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'lease: soon\n');
    expect(() => parseOptions(runTable, ['--config', bad], {})).toThrow(UsageError);
    expect(() => parseOptions(runTable, ['--config', bad], {})).toThrow(
      /lease in .*bad\.yaml must be a duration/,
    );
    expect(() => parseOptions(runTable, ['--config', join(dir, 'none.yaml')], {})).toThrow(
      /cannot read config/,
    );
  });

  it('reads a repeatable flag as a list, from flags, the environment or a config list', async () => {
    const suites = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
      parseOptions(expectTable, argv, env).values.suite;
    expect(suites([])).toBeUndefined();
    expect(suites(['--suite', 'daily', '--suite', 'live'])).toBe('daily,live');
    expect(suites([], { GS_EXPECT_SUITE: 'live, daily' })).toBe('live,daily');
    const config = join(dir, 'suites.yaml');
    await writeFile(config, 'expect:\n  suite: [live]\n');
    expect(suites(['--config', config])).toBe('live');
    expect(() => suites(['--suite', 'daily', '--suite', 'weekly'])).toThrow(
      /--suite must be one of daily, live, got "weekly"/,
    );
    expect(optionsHelp(expectTable)).toContain('--suite <daily|live>…');
  });

  it('reads the shared config file in poll and review as in every other command', async () => {
    const shared = join(dir, 'shared.yaml');
    await writeFile(shared, 'checkpoint: ./elsewhere.json\nformat: csv\n');
    // poll: its feeds file is --feeds; a config file's keys are its flags, as everywhere
    const poll = parseOptions(pollTable, ['--feeds', 'feeds.json'], { GS_CONFIG: shared });
    expect(poll.values.feeds).toBe('feeds.json');
    expect(poll.values.checkpoint).toBe('./elsewhere.json');
    expect(parseOptions(pollTable, [], { GS_POLL_FEEDS: 'f.json' }).values.feeds).toBe('f.json');
    // review reads the same file as every other command
    expect(parseOptions(reviewTable, ['list'], { GS_CONFIG: shared }).values.format).toBe('csv');
    expect(parseOptions(reviewTable, ['approve', '7'], {}).positionals).toEqual(['approve', '7']);
    expect(() => parseOptions(reviewTable, ['--score', '101'], {})).toThrow(/--score must be at most 100/);
  });

  it('reads durations and sizes with units, a bare number in the flag’s unit', () => {
    expect(parseDuration('48h')).toBe(172_800_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1500')).toBe(1500);
    expect(parseDuration('2d', 'd')).toBe(2);
    expect(parseDuration('90s', 's')).toBe(90);
    expect(() => parseDuration('15 minutes')).toThrow(RangeError);
    expect(parseSize('2GiB', 'MiB')).toBe(2048);
    expect(parseSize('512', 'MiB')).toBe(512);
    expect(parseSize('1k')).toBe(1024);
    expect(() => parseSize('1 parsec')).toThrow(RangeError);
    const run = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseOptions(runTable, argv, env).values;
    expect(run(['--lease', '1m']).lease).toBe(60_000);
    expect(run(['--max-memory', '1GiB'])['max-memory']).toBe(1024);
    expect(() => run(['--max-memory', '63'])).toThrow(/--max-memory must be at least 64 MiB/);
    expect(() => run([], { GS_LEASE_MS: '1.5' })).toThrow(/\$GS_LEASE_MS must come to a whole number/);
    expect(() => run(['--flush-interval', '0'])).toThrow(/--flush-interval must be at least 1/);
    expect(() => run(['--metrics-port', '70000'])).toThrow(/--metrics-port must be at most 65535/);
  });

  it('quotes the stream limits the code sets in publish --help, and sql --help claims no default database', () => {
    const publish = optionsHelp(publishTable);
    expect(DEFAULT_READINGS_RETENTION.maxBytes).toBe(-1);
    expect(publish).toContain('7 days, no size limit');
    expect(publish).toContain('duplicate window (1 h)');
    expect(publish).not.toMatch(/10 GiB|2 min/);
    const sql = optionsHelp(sqlTable);
    expect(sql).not.toMatch(/runs in the `greenstream` database/);
    expect(sql).toContain('greenstream.readings');
  });

  it('applies a config file end to end, with the environment winning over it', async () => {
    const config = join(dir, 'graph.yaml');
    await writeFile(config, 'graph:\n  format: dot\n');
    const go = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(go(['graph', '--config', config]).stdout.startsWith('digraph')).toBe(true);
    expect(go(['graph'], { GS_CONFIG: config }).stdout.startsWith('digraph')).toBe(true);
    expect(
      go(['graph', '--config', config], { GS_GRAPH_FORMAT: 'mermaid' }).stdout.startsWith('flowchart'),
    ).toBe(true);
    // a ported subcommand: its folder from the variable, its format from the config file, then the variable
    const deadLetters = join(dir, 'dead-letters');
    await mkdir(deadLetters);
    const dlqConfig = join(dir, 'dlq.yaml');
    await writeFile(dlqConfig, 'dlq:\n  format: json\n');
    const listed = go(['dlq', 'list', '--config', dlqConfig], { GS_LANDING_DEAD_LETTER: deadLetters });
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toBe('[]\n');
    const csv = go(['dlq', 'list', '--config', dlqConfig], {
      GS_LANDING_DEAD_LETTER: deadLetters,
      GS_DLQ_FORMAT: 'csv',
    });
    expect(csv.stdout).toBe('\n');
    const port = go(['console'], { GS_CONSOLE_PORT: '70000' });
    expect(port.status).toBe(2);
    expect(port.stderr).toContain('$GS_CONSOLE_PORT must be at most 65535');
    const bad = go(['graph', '--format', 'svg']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--format must be one of mermaid, dot, got "svg"');
  });
});
