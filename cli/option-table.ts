/**
 * One declarative option table per command, from which its flag parsing, its `--help` text, its
 * environment fallbacks, its `--config <file>` keys and its README table all come.
 *
 * A value is taken from the first of: the flag, its environment variable (every flag has one; blank
 * counts as unset), the config file (`--config <file>` or `$GS_CONFIG`, YAML or JSON, keys = flag
 * names), the table's default. Adding a flag is one entry: `{ name: 'replicas', type: 'integer',
 * default: 1, help: '…' }` (its variable is `$GS_REPLICAS` unless `env` names another).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { UsageError } from './main.js';

/**
 * - `integer`: a whole number ≥ `min` (default 1);
 * - `duration`: `500ms`, `30s`, `15m`, `48h`, `7d`, or a bare number in `unit`; parsed into `unit`;
 * - `size`: `512KiB`, `64MiB`, `2GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`, all binary), or a bare
 *   number in `unit`; parsed into `unit`, which must come out whole.
 */
export type OptionType = 'string' | 'boolean' | 'integer' | 'duration' | 'size';
export type DurationUnit = 'ms' | 's' | 'd';
export type SizeUnit = 'B' | 'KiB' | 'MiB';

export interface OptionSpec {
  /** The flag without its dashes: `max-memory`. */
  readonly name: string;
  readonly type: OptionType;
  readonly help: string;
  /** In the parsed unit for `duration`/`size`. None: the command decides (see `defaultText`). */
  readonly default?: string | number | boolean;
  /** How the help shows a default the command computes. */
  readonly defaultText?: string;
  /** Environment variables, first = the documented one; default `GS_<NAME>`. */
  readonly env?: string | readonly string[];
  /** Placeholder in the help: `--lease <ms>`; defaults by type. */
  readonly arg?: string;
  readonly unit?: DurationUnit | SizeUnit;
  /** Smallest accepted `integer`/`duration`/`size` value, in the parsed unit. Default 1 for integers. */
  readonly min?: number;
  readonly max?: number;
  /** Accepted values of a `string` flag. */
  readonly choices?: readonly string[];
  readonly short?: string;
  /**
   * A `string` flag that may be given more than once: its value is the comma-joined list (the variable
   * holds a comma-separated list, the config file that or a list); each item is checked against `choices`.
   */
  readonly multiple?: boolean;
}

export interface OptionTable {
  readonly command: string;
  /** The usage line(s) and description above the options. */
  readonly synopsis: readonly string[];
  readonly options: readonly OptionSpec[];
  /** Whether the command takes positional arguments. */
  readonly positionals?: boolean;
  /** The command whose section of a config file applies (default: this one): `check` reads `run`'s. */
  readonly configSection?: string;
  /** Help lines after the options (environment variables that are no flag, notes). */
  readonly notes?: readonly string[];
  /**
   * `false`: the command reads no config file and its own `--config` (if any) means something else —
   * so neither the flag nor `$GS_CONFIG` is taken as a config file.
   */
  readonly configFile?: boolean;
}

export type OptionValue = string | number | boolean;
export type OptionValues = Readonly<Record<string, OptionValue | undefined>>;

/** Where a value came from, for error messages and `greenstream check`. */
export type OptionOrigin = 'flag' | 'env' | 'config' | 'default';

export interface ParsedOptions {
  readonly values: OptionValues;
  readonly origins: Readonly<Record<string, OptionOrigin>>;
  readonly positionals: readonly string[];
  /** The config file read, if any. */
  readonly configPath?: string;
}

/** `--config`, which every table has. */
export const CONFIG_OPTION: OptionSpec = {
  name: 'config',
  type: 'string',
  arg: 'file',
  env: 'GS_CONFIG',
  help: 'read flag values from this YAML or JSON file (keys = flag names; a key naming a command holds that command’s own values); flags and environment variables win over it',
};

const tables: OptionTable[] = [];

/** Declares a command's table (with `--config` added unless it reads no config file) and registers it. */
export function optionTable(table: OptionTable): OptionTable {
  const withConfig: OptionTable =
    table.configFile === false ? table : { ...table, options: [...table.options, CONFIG_OPTION] };
  const names = new Set<string>();
  for (const o of withConfig.options) {
    if (names.has(o.name)) throw new Error(`option --${o.name} declared twice for ${table.command}`);
    names.add(o.name);
  }
  const at = tables.findIndex((t) => t.command === table.command);
  if (at >= 0) tables[at] = withConfig;
  else tables.push(withConfig);
  return withConfig;
}

export function registeredTables(): readonly OptionTable[] {
  return tables;
}

export function envNames(spec: OptionSpec): readonly string[] {
  if (spec.env === undefined) return [`GS_${spec.name.toUpperCase().replace(/-/g, '_')}`];
  return typeof spec.env === 'string' ? [spec.env] : spec.env;
}

const DURATION_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const SIZE_BYTES: Readonly<Record<string, number>> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
const UNIT_MS: Readonly<Record<DurationUnit, number>> = { ms: 1, s: 1000, d: 86_400_000 };
const UNIT_BYTES: Readonly<Record<SizeUnit, number>> = { B: 1, KiB: 1024, MiB: 1024 ** 2 };

/** `48h` → milliseconds (or the given unit); a bare number is already in `unit`. */
export function parseDuration(text: string, unit: DurationUnit = 'ms'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (m === null)
    throw new RangeError(`must be a duration such as 500ms, 30s, 15m, 48h or 7d, got "${text}"`);
  const n = Number(m[1]);
  if (m[2] === undefined) return n;
  return (n * (DURATION_MS[m[2]] as number)) / UNIT_MS[unit];
}

/** `512MiB` → the count of `unit`; a bare number is already in `unit`. */
export function parseSize(text: string, unit: SizeUnit = 'B'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)?\s*$/.exec(text);
  const factor = m?.[2] === undefined ? undefined : SIZE_BYTES[m[2].toLowerCase()];
  if (m === null || (m[2] !== undefined && factor === undefined))
    throw new RangeError(`must be a size such as 512MiB or 2GiB, got "${text}"`);
  const n = Number(m[1]);
  return factor === undefined ? n : (n * factor) / UNIT_BYTES[unit];
}

/** Converts one raw value (text from a flag or variable, or what a config file holds). */
export function convertValue(spec: OptionSpec, raw: unknown): OptionValue {
  if (spec.type === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    const t = String(raw).trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(t)) return true;
    if (['0', 'false', 'no', 'off'].includes(t)) return false;
    throw new RangeError(`must be true or false, got "${String(raw)}"`);
  }
  if (spec.type === 'string') {
    if (spec.multiple === true) {
      const items = (Array.isArray(raw) ? raw : [raw]).flatMap((item) => {
        if (typeof item !== 'string' && typeof item !== 'number') throw new RangeError('must be a string');
        return String(item)
          .split(',')
          .map((t) => t.trim())
          .filter((t) => t !== '');
      });
      const bad = items.find((t) => spec.choices !== undefined && !spec.choices.includes(t));
      if (bad !== undefined) throw new RangeError(`must be one of ${spec.choices!.join(', ')}, got "${bad}"`);
      return items.join(',');
    }
    if (typeof raw !== 'string' && typeof raw !== 'number') throw new RangeError('must be a string');
    const text = String(raw);
    if (spec.choices !== undefined && !spec.choices.includes(text))
      throw new RangeError(`must be one of ${spec.choices.join(', ')}, got "${text}"`);
    return text;
  }
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new RangeError('must be a number');
  const text = String(raw);
  let n: number;
  if (spec.type === 'integer') {
    if (!/^\s*-?\d+\s*$/.test(text)) throw new RangeError(`must be a whole number, got "${text}"`);
    n = Number(text);
  } else if (spec.type === 'duration') n = parseDuration(text, (spec.unit as DurationUnit) ?? 'ms');
  else n = parseSize(text, (spec.unit as SizeUnit) ?? 'B');
  if (!Number.isSafeInteger(n))
    throw new RangeError(`must come to a whole number of ${spec.unit ?? 'units'}, got "${text}"`);
  const min = spec.min ?? (spec.type === 'integer' ? 1 : 0);
  if (n < min) throw new RangeError(`must be at least ${min}${unitSuffix(spec)}, got "${text}"`);
  if (spec.max !== undefined && n > spec.max)
    throw new RangeError(`must be at most ${spec.max}${unitSuffix(spec)}, got "${text}"`);
  return n;
}

function unitSuffix(spec: OptionSpec): string {
  return spec.unit === undefined ? '' : ` ${spec.unit}`;
}

/** Reads a config file: an object whose keys are flag names (or command names holding such objects). */
export function readConfigFile(path: string): Readonly<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(
      `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  let parsed: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    parsed = parseYaml(text);
  } catch (error) {
    throw new UsageError(`config file ${path} is neither YAML nor JSON: ${(error as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new UsageError(`config file ${path} must hold a mapping of flag names to values`);
  return parsed as Record<string, unknown>;
}

/**
 * The config values that apply to `table`: top-level keys, then the command's own section. A key no
 * command knows is an error (a typo would otherwise be ignored); keys of other commands are skipped,
 * so one file can serve every command.
 */
export function configValuesFor(
  table: OptionTable,
  config: Readonly<Record<string, unknown>>,
  path: string,
): Map<string, unknown> {
  const known = new Set(registeredTables().flatMap((t) => t.options.map((o) => o.name)));
  const commands = new Set(registeredTables().map((t) => t.command));
  const own = new Set(table.options.map((o) => o.name));
  const out = new Map<string, unknown>();
  const take = (entries: Readonly<Record<string, unknown>>, where: string) => {
    for (const [key, value] of Object.entries(entries)) {
      if (commands.has(key) && where === '') continue;
      if (!known.has(key)) throw new UsageError(`config file ${path}: unknown key "${where}${key}"`);
      if (own.has(key) && key !== 'config') out.set(key, value);
    }
  };
  take(config, '');
  const name = table.configSection ?? table.command;
  const section = config[name];
  if (section !== undefined) {
    if (section === null || typeof section !== 'object' || Array.isArray(section))
      throw new UsageError(`config file ${path}: "${name}" must hold a mapping`);
    take(section as Record<string, unknown>, `${name}.`);
  }
  return out;
}

/** Parses argv against the table, filling in environment, config and defaults; UsageError on any bad value. */
export function parseOptions(
  table: OptionTable,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedOptions {
  const { values: flags, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: table.positionals === true,
    strict: true,
    options: Object.fromEntries(
      table.options.map((o) => [
        o.name,
        {
          type: o.type === 'boolean' ? ('boolean' as const) : ('string' as const),
          ...(o.multiple === true ? { multiple: true } : {}),
          ...(o.short === undefined ? {} : { short: o.short }),
        },
      ]),
    ),
  });
  const fromEnv = (spec: OptionSpec): [string, string] | undefined => {
    for (const name of envNames(spec)) {
      const v = env[name];
      if (v !== undefined && v.trim() !== '') return [name, v];
    }
    return undefined;
  };
  const configPath =
    table.configFile === false
      ? undefined
      : ((flags.config as string | undefined) ?? fromEnv(CONFIG_OPTION)?.[1]);
  const config =
    configPath === undefined
      ? new Map<string, unknown>()
      : configValuesFor(table, readConfigFile(configPath), configPath);
  const values: Record<string, OptionValue | undefined> = {};
  const origins: Record<string, OptionOrigin> = {};
  for (const spec of table.options) {
    const flag = flags[spec.name];
    let raw: unknown;
    let where: string;
    if (flag !== undefined) {
      raw = flag;
      where = `--${spec.name}`;
      origins[spec.name] = 'flag';
    } else if (fromEnv(spec) !== undefined) {
      const [name, v] = fromEnv(spec)!;
      raw = v;
      where = `$${name}`;
      origins[spec.name] = 'env';
    } else if (config.has(spec.name)) {
      raw = config.get(spec.name);
      where = `${spec.name} in ${configPath}`;
      origins[spec.name] = 'config';
    } else {
      values[spec.name] = spec.default;
      if (spec.default !== undefined) origins[spec.name] = 'default';
      continue;
    }
    try {
      values[spec.name] = convertValue(spec, raw);
    } catch (error) {
      throw new UsageError(`${where} ${(error as Error).message}`);
    }
  }
  return {
    values,
    origins,
    positionals,
    ...(configPath === undefined ? {} : { configPath }),
  };
}

/** Milliseconds in the largest unit that divides them: 900000 → `15m`. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function placeholder(spec: OptionSpec): string {
  if (spec.type === 'boolean') return '';
  const arg =
    spec.arg ??
    (spec.type === 'integer'
      ? 'n'
      : spec.type === 'duration'
        ? 'duration'
        : spec.type === 'size'
          ? 'size'
          : spec.choices !== undefined
            ? spec.choices.join('|')
            : 'value');
  return spec.multiple === true ? ` <${arg}>…` : ` <${arg}>`;
}

function shownDefault(spec: OptionSpec): string | undefined {
  if (spec.defaultText !== undefined) return spec.defaultText;
  if (spec.default === undefined || spec.default === false) return undefined;
  if (spec.type === 'duration' || spec.type === 'size')
    return `${spec.default}${spec.unit ?? (spec.type === 'duration' ? 'ms' : 'B')}`;
  return String(spec.default);
}

/** What the help says after a flag's own text: its default and variable. */
function helpSuffix(spec: OptionSpec): string {
  const parts: string[] = [];
  const d = shownDefault(spec);
  if (d !== undefined) parts.push(`default ${d}`);
  parts.push(
    envNames(spec)
      .map((e) => `$${e}`)
      .join(', '),
  );
  return ` (${parts.join('; ')})`;
}

const HELP_WIDTH = 104;
const FLAG_COLUMN = 26;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The `--help` text of a command. */
export function optionsHelp(table: OptionTable): string {
  const out = [...table.synopsis, '', 'Options:'];
  for (const spec of table.options) {
    const flag = `  --${spec.name}${placeholder(spec)}`;
    const body = wrap(`${spec.help}${helpSuffix(spec)}`, HELP_WIDTH - FLAG_COLUMN);
    if (flag.length < FLAG_COLUMN - 1) out.push(`${flag.padEnd(FLAG_COLUMN)}${body[0]}`);
    else out.push(flag, `${' '.repeat(FLAG_COLUMN)}${body[0]}`);
    for (const more of body.slice(1)) out.push(`${' '.repeat(FLAG_COLUMN)}${more}`);
  }
  if (table.notes !== undefined && table.notes.length > 0) out.push('', ...table.notes);
  return out.join('\n');
}

/** Text in a Markdown table cell: a pipe would end the cell, `<dir>` would read as an HTML tag. */
function cellText(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/</g, '&lt;');
}

/** The README table of a command's options (generated; a test keeps README equal to it). */
export function optionsMarkdown(table: OptionTable): string {
  const rows = table.options.map((spec) => {
    const type =
      spec.type === 'duration'
        ? `duration (bare: ${spec.unit ?? 'ms'})`
        : spec.type === 'size'
          ? `size (bare: ${spec.unit ?? 'B'})`
          : spec.choices !== undefined
            ? `${spec.multiple === true ? 'one or more' : 'one'} of ${spec.choices.join(', ')}`
            : spec.multiple === true
              ? 'strings'
              : spec.type;
    return `| \`--${spec.name}${placeholder(spec).replace(/\|/g, '\\|')}\` | ${cellText(type)} | ${cellText(shownDefault(spec) ?? '')} | ${envNames(
      spec,
    )
      .map((e) => `\`${e}\``)
      .join(', ')} | ${cellText(spec.help)} |`;
  });
  return [
    '| flag | type | default | environment | meaning |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** README markers around a command's generated table. */
export function readmeMarkers(command: string): { readonly begin: string; readonly end: string } {
  return {
    begin: `<!-- options:${command} (generated by cli/option-table.ts) -->`,
    end: `<!-- /options:${command} -->`,
  };
}

/** Replaces every generated section of a README text by the current tables (used by the docs test). */
export function withGeneratedTables(
  readme: string,
  list: readonly OptionTable[] = registeredTables(),
): string {
  let text = readme;
  for (const table of list) {
    const { begin, end } = readmeMarkers(table.command);
    const from = text.indexOf(begin);
    const to = text.indexOf(end);
    if (from < 0 || to < from) continue;
    text = `${text.slice(0, from + begin.length)}\n${optionsMarkdown(table)}\n${text.slice(to)}`;
  }
  return text;
}
