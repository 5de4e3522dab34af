import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { HotStoreTarget } from '../connectors/clickhouse.js';
import { type RuleProfile, resolveRuleProfile } from '../operators/rule-profile.js';
import { UsageError } from './main.js';
import type { OptionSpec } from './option-table.js';

/** The hot store flags every command that reads or writes it shares; only their help differs. */
export function hotStoreOptions(
  help: { readonly hot?: string; readonly database?: string } = {},
): OptionSpec[] {
  return [
    {
      name: 'hot',
      type: 'string',
      arg: 'spec',
      env: 'CLICKHOUSE_URL',
      default: 'chdb:./data/chdb',
      help: help.hot ?? 'chdb:<dir> or http(s)://host:8123',
    },
    {
      name: 'database',
      type: 'string',
      arg: 'name',
      env: 'CLICKHOUSE_DATABASE',
      defaultText: 'greenstream',
      help: help.database ?? 'ClickHouse database',
    },
  ];
}

/** `chdb:<dir>` (embedded) or `http(s)://host:8123` (server; credentials from the environment). */
export function parseHotTarget(
  value: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  database: string | undefined = env.CLICKHOUSE_DATABASE,
): HotStoreTarget {
  const spec = value ?? env.CLICKHOUSE_URL ?? 'chdb:./data/chdb';
  if (database !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
    throw new UsageError(`--database must be an identifier, got "${database}"`);
  }
  const db = database === undefined ? {} : { database };
  if (spec.startsWith('chdb:')) {
    const path = spec.slice('chdb:'.length);
    if (path === '') throw new UsageError('--hot chdb:<dir> needs a directory');
    return { kind: 'chdb', path: resolve(path), ...db };
  }
  if (/^https?:\/\//.test(spec)) {
    return {
      kind: 'server',
      ...db,
      url: spec,
      // Blank counts as unset, as for every variable the option tables read.
      ...(blank(env.CLICKHOUSE_USER) ? {} : { username: env.CLICKHOUSE_USER }),
      ...(blank(env.CLICKHOUSE_PASSWORD) ? {} : { password: env.CLICKHOUSE_PASSWORD }),
    };
  }
  throw new UsageError(`--hot must be chdb:<dir> or http(s)://host:port, got "${redactCredentials(spec)}"`);
}

function blank(value: string | undefined): value is undefined {
  return value === undefined || value === '';
}

/**
 * A location as it may be shown in an error or a log: the user-info part of any `scheme://user:pw@…`
 * (whatever the scheme, or none: `user:pw@host`) and secret-looking query parameters become `***`.
 */
export function redactCredentials(location: string): string {
  return location
    .replace(/^((?:[^:/?#\s]+:)?\/\/|)([^/?#@\s]*@)/, (_m, scheme: string) => `${scheme}***@`)
    .replace(
      /([?&;](?:password|passwd|pass|pwd|token|secret|key|api_key|apikey|access_token|auth)=)[^&;#]*/gi,
      '$1***',
    );
}

export function loadProfile(path: string | undefined): RuleProfile {
  if (path === undefined) return resolveRuleProfile();
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read rule profile ${path}: ${(err as Error).message}`);
  }
  return resolveRuleProfile(parsed);
}

export function parseTime(value: string, flag: string): Date {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new UsageError(`${flag} must be an ISO-8601 time, got "${value}"`);
  return new Date(t);
}
