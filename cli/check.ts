/**
 * `greenstream check`: validates what `run` would start with — flags and config file, rule profile,
 * registry, source and hot store — without running anything, and lists every problem, not the first.
 * Given a NATS URL it connects and checks JetStream and the readings stream; given a hot store it
 * connects and checks that the user may write and that the schema is one this build knows.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { sql } from '../codecs/sql.js';
import { openHotStore } from '../connectors/clickhouse.js';
import { connectNats, READINGS_STREAM } from '../connectors/jetstream.js';
import { loadRegistry } from '../pipelines/job.js';
import { hotStoreMigrations, SCHEMA_MIGRATIONS_TABLE } from '../schemas/clickhouse.js';
import { EXIT } from './exit-codes.js';
import { type Command, redactUserInfo, UsageError } from './main.js';
import { natsConfigFrom } from './nats-source.js';
import { type OptionValues, optionsHelp, optionTable, parseOptions } from './option-table.js';
import { loadProfile, parseHotTarget, redactCredentials } from './options.js';
import { runOptionSpecs, workerIdOf } from './run.js';

export const checkTable = optionTable({
  command: 'check',
  synopsis: [
    'Usage: greenstream check [run options]',
    '  Checks the configuration `run` would start with: flags, config file, rule profile, registry; connects',
    '  to NATS (a nats:// source) and to the hot store, checks that the store user may write and that its',
    '  schema is one this build knows. Prints every finding; exits 0 when there is no problem, 3 otherwise.',
  ],
  options: runOptionSpecs,
  configSection: 'run',
});

export interface Finding {
  readonly ok: boolean;
  readonly item: string;
  readonly detail: string;
}

function messageOf(error: unknown): string {
  return redactUserInfo(error instanceof Error ? error.message : String(error));
}

/** Runs every check; never throws for a problem of the configuration, it becomes a finding. */
export async function checkConfiguration(values: OptionValues, env: NodeJS.ProcessEnv): Promise<Finding[]> {
  const findings: Finding[] = [];
  const ok = (item: string, detail: string) => findings.push({ ok: true, item, detail });
  const problem = (item: string, detail: string) => findings.push({ ok: false, item, detail });
  const text = (name: string) => values[name] as string | undefined;

  if (text('profile') === undefined) ok('profile', 'defaults');
  else
    try {
      loadProfile(text('profile'));
      ok('profile', text('profile')!);
    } catch (error) {
      problem('profile', messageOf(error));
    }

  const registryPath = resolve(text('registry')!);
  try {
    const registry = await loadRegistry(registryPath);
    if (registry.size === 0) problem('registry', `${registryPath} names no meter`);
    else ok('registry', `${registry.size} meters in ${registryPath}`);
  } catch (error) {
    problem('registry', messageOf(error));
  }

  if (
    !/^[A-Za-z0-9_]+$/.test(
      workerIdOf(text('worker'), text('stage') === 'cross-meter' ? 'cross-meter' : 'all'),
    )
  )
    problem('worker', '--worker may hold letters, digits and _ only');

  const source = text('source')!;
  if (source.startsWith('files:')) {
    const root = resolve(source.slice('files:'.length));
    if (existsSync(root) && statSync(root).isDirectory()) ok('source', `landing folder ${root}`);
    else problem('source', `landing folder ${root} does not exist`);
  } else if (source.startsWith('nats://') || source.startsWith('tls://')) {
    await checkNats(source, env, ok, problem);
  } else problem('source', `must be files:<dir> or nats://host:port, got "${redactCredentials(source)}"`);

  let target: ReturnType<typeof parseHotTarget> | undefined;
  try {
    target = parseHotTarget(text('hot'), env, text('database'));
  } catch (error) {
    problem('hot store', messageOf(error));
  }
  if (target !== undefined) await checkHotStore(target, ok, problem);
  return findings;
}

async function checkNats(
  url: string,
  env: NodeJS.ProcessEnv,
  ok: (item: string, detail: string) => void,
  problem: (item: string, detail: string) => void,
): Promise<void> {
  let nc: Awaited<ReturnType<typeof connectNats>> | undefined;
  try {
    nc = await connectNats({
      ...natsConfigFrom(url, env),
      maxReconnectAttempts: 0,
      connectTimeoutMs: 10_000,
    });
    ok('nats', `connected to ${redactCredentials(url)} (server ${nc.info?.version ?? '?'})`);
  } catch (error) {
    problem('nats', messageOf(error));
    return;
  }
  try {
    const jsm = await jetstream(nc).jetstreamManager();
    const account = await jsm.getAccountInfo();
    ok('jetstream', `enabled; ${account.streams} stream(s) in the account`);
    try {
      const info = await jsm.streams.info(READINGS_STREAM);
      ok(
        'readings stream',
        `${READINGS_STREAM}: ${info.state.messages} messages, subjects ${info.config.subjects.join(',')}`,
      );
    } catch {
      ok('readings stream', `${READINGS_STREAM} is missing: run or publish creates it`);
    }
  } catch (error) {
    problem('jetstream', `not usable with these credentials: ${messageOf(error)}`);
  } finally {
    await nc.close();
  }
}

async function checkHotStore(
  target: ReturnType<typeof parseHotTarget>,
  ok: (item: string, detail: string) => void,
  problem: (item: string, detail: string) => void,
): Promise<void> {
  // One attempt: a check reports an unreachable store rather than waiting out the retries.
  const store = openHotStore(target, { retry: { retries: 0 }, requestTimeoutMs: 10_000 });
  try {
    const caps = await store.capabilities();
    ok('hot store', `${store.engine} ClickHouse ${caps.version}, database ${store.database}`);
    const [readonly] = await store.query<{ value: string }>(
      sql`SELECT value FROM system.settings WHERE name = 'readonly'`,
    );
    if (readonly !== undefined && readonly.value !== '0')
      problem(
        'hot store permissions',
        `the user is read-only (readonly=${readonly.value}): the worker cannot write`,
      );
    else ok('hot store permissions', 'the user may write');
    const [exists] = await store.query<{ n: string | number }>(
      sql`SELECT count() AS n FROM system.tables WHERE database = ${store.database} AND name = ${SCHEMA_MIGRATIONS_TABLE}`,
    );
    if (Number(exists?.n ?? 0) === 0) {
      ok('schema', `database ${store.database} has no schema yet: run creates it`);
      return;
    }
    const recorded = (
      await store.query<{ version: string | number }>(
        sql`SELECT DISTINCT version FROM ${store.relation(SCHEMA_MIGRATIONS_TABLE)} ORDER BY version`,
      )
    ).map((r) => Number(r.version));
    const known = new Set(hotStoreMigrations.map((m) => m.version));
    const unknown = recorded.filter((v) => !known.has(v));
    const pending = [...known].filter((v) => !recorded.includes(v));
    if (unknown.length > 0)
      problem(
        'schema',
        `the store has migrations this build does not know (${unknown.join(', ')}): a newer GreenStream wrote it`,
      );
    else
      ok(
        'schema',
        pending.length === 0
          ? `up to date (versions ${recorded.join(', ')})`
          : `versions ${recorded.join(', ') || 'none'}; run applies ${pending.join(', ')}`,
      );
  } catch (error) {
    problem('hot store', messageOf(error));
  } finally {
    await store.close();
  }
}

export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(...findings.map((f) => f.item.length));
  const lines = findings.map((f) => `${f.ok ? 'ok     ' : 'PROBLEM'}  ${f.item.padEnd(width)}  ${f.detail}`);
  const problems = findings.filter((f) => !f.ok).length;
  lines.push(problems === 0 ? 'no problems found' : `${problems} problem(s) found`);
  return `${lines.join('\n')}\n`;
}

export const checkCommand: Command = {
  name: 'check',
  summary:
    'check a configuration (flags, config file, profile, registry, NATS, ClickHouse) before running it',
  usage: optionsHelp(checkTable),
  run: async (argv) => {
    let values: OptionValues;
    try {
      values = parseOptions(checkTable, argv).values;
    } catch (error) {
      // A bad flag or config value is a finding like any other: print it in the same form.
      if (!(error instanceof UsageError)) throw error;
      process.stdout.write(formatFindings([{ ok: false, item: 'flags', detail: error.message }]));
      return EXIT.configuration;
    }
    const findings = await checkConfiguration(values, process.env);
    process.stdout.write(formatFindings(findings));
    return findings.every((f) => f.ok) ? EXIT.ok : EXIT.configuration;
  },
};
