/**
 * The one audited place where data becomes ClickHouse SQL text.
 *
 * ClickHouse 18.16 (Debian's server) has no query parameters (`{name:Type}` fails with
 * "Unknown setting param_…"), so values cannot be bound: they are escaped here and nowhere
 * else. Every other module builds SQL with the {@link sql} tag, whose interpolations all pass
 * through {@link sqlLiteral}; trusted fragments must be marked explicitly with `sql.ident` or
 * `sql.raw`, which keeps every unescaped splice greppable.
 *
 * The escapes emitted are only those both engines decode identically (checked on 18.16.1 and
 * chDB 26.7): `\\`, `\'`, `\n`, `\r`, `\t`, `\0`, `\b`, `\f` and `\xHH`. Unknown escapes such as
 * `\z` are NOT portable — 18.16 drops the backslash, 26.x keeps it — so none is ever produced.
 *
 * DuckDB quotes differently (standard SQL: doubled quotes, no backslash escapes); its helpers
 * are at the end of this file and must not be mixed with the ClickHouse ones.
 */

/** A value that {@link sqlLiteral} can render. */
export type SqlValue = string | number | bigint | boolean | null | Date | readonly string[];

/** A value was refused before it could become SQL text. The value itself is not in the message. */
export class SqlValueError extends TypeError {
  override readonly name = 'SqlValueError';
  /** What kind of value was refused, e.g. `number NaN`, `string with a lone surrogate`. */
  readonly valueKind: string;

  constructor(message: string, valueKind: string) {
    super(message);
    this.valueKind = valueKind;
  }
}

// Characters that need an escape inside a single-quoted ClickHouse string: the quote, the
// backslash, C0 controls and DEL (raw newlines/tabs would also break line-oriented formats
// such as TabSeparated, where this quoting is reused for array elements).
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const NEEDS_ESCAPE = /[\\'\u0000-\u001f\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const ESCAPABLE = /[\\'\u0000-\u001f\u007f]/g;
// With the `u` flag a surrogate class matches only unpaired halves: a lone surrogate has no
// UTF-8 encoding and would silently turn into U+FFFD on the wire.
const LONE_SURROGATE = /\p{Cs}/u;

const NAMED_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  "'": "\\'",
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\0': '\\0',
  '\b': '\\b',
  '\f': '\\f',
};

function escapeChar(ch: string): string {
  return NAMED_ESCAPES[ch] ?? `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
}

/**
 * Quotes a string as a ClickHouse string literal. Also the text form of a string inside an
 * `Array(String)` value in TabSeparated, so the row encoder reuses it.
 */
export function quoteString(value: string): string {
  if (LONE_SURROGATE.test(value)) {
    throw new SqlValueError('A string with a lone UTF-16 surrogate cannot be sent as UTF-8', 'string');
  }
  return NEEDS_ESCAPE.test(value) ? `'${value.replace(ESCAPABLE, escapeChar)}'` : `'${value}'`;
}

function numberLiteral(value: number): string {
  if (!Number.isFinite(value)) {
    throw new SqlValueError(
      `Non-finite number ${value} has no portable ClickHouse literal`,
      `number ${value}`,
    );
  }
  // Parenthesised so that `a-${-5}` cannot become `a--5`, which ClickHouse reads as a comment.
  return value < 0 ? `(${String(value)})` : String(value);
}

const MAX_DATETIME_SECONDS = 2 ** 32;

function dateLiteral(value: Date): string {
  const ms = value.getTime();
  if (!Number.isFinite(ms)) {
    throw new SqlValueError('Invalid Date', 'Date invalid');
  }
  const seconds = Math.floor(ms / 1000);
  if (seconds < 0 || seconds >= MAX_DATETIME_SECONDS) {
    throw new SqlValueError(`Date ${value.toISOString()} is outside the DateTime range 1970–2106`, 'Date');
  }
  // DateTime has second precision on 18.16; sub-second parts are dropped on purpose.
  return `toDateTime(${seconds}, 'UTC')`;
}

/**
 * Renders one value as a ClickHouse literal: strings single-quoted and escaped, finite numbers
 * as written by JavaScript (negative ones parenthesised), booleans as 1/0 (18.16 has no Bool),
 * `null` as NULL, a Date as `toDateTime(<unix seconds>, 'UTC')`, and a string array as `[…]`.
 *
 * @throws SqlValueError for NaN/±Infinity, invalid or out-of-range dates, lone surrogates, or a
 *   value of an unsupported type (the check runs at runtime too, for callers without types).
 */
export function sqlLiteral(value: SqlValue): string {
  if (value === null) return 'NULL';
  switch (typeof value) {
    case 'string':
      return quoteString(value);
    case 'number':
      return numberLiteral(value);
    case 'bigint':
      return value < 0n ? `(${value.toString()})` : value.toString();
    case 'boolean':
      return value ? '1' : '0';
    default:
      break;
  }
  if (value instanceof Date) return dateLiteral(value);
  if (Array.isArray(value)) {
    const items = value as readonly unknown[];
    let out = '[';
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (typeof item !== 'string') {
        throw new SqlValueError(
          'Only arrays of strings can be rendered as literals',
          `array of ${typeof item}`,
        );
      }
      out += i === 0 ? quoteString(item) : `, ${quoteString(item)}`;
    }
    return `${out}]`;
  }
  throw new SqlValueError(`Unsupported value of type ${typeof value}`, typeof value);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

/**
 * Renders a database, table or column name as a backtick-quoted identifier. Names are
 * validated rather than escaped: only `[A-Za-z_][A-Za-z0-9_]*` is accepted, which every name in
 * the GreenStream schema satisfies, so anything else is a bug or an attack.
 *
 * @throws SqlValueError when the name is not a plain identifier.
 */
export function sqlIdent(name: string): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
    throw new SqlValueError(
      'Identifiers must match [A-Za-z_][A-Za-z0-9_]* (at most 255 characters)',
      'identifier',
    );
  }
  return `\`${name}\``;
}

const FRAGMENT_TOKEN = Symbol('SqlFragment');

/** SQL text whose every data part went through {@link sqlLiteral}. Built only by {@link sql}. */
export class SqlFragment {
  readonly text: string;

  /** @internal use the {@link sql} tag, `sql.ident` or `sql.raw`. */
  constructor(token: symbol, text: string) {
    if (token !== FRAGMENT_TOKEN) throw new TypeError('Build SQL with the sql`…` tag');
    this.text = text;
  }

  toString(): string {
    return this.text;
  }
}

/** What may be interpolated into the {@link sql} tag. */
export type SqlInterpolation = SqlValue | SqlFragment;

export interface SqlTag {
  /** Builds SQL; every interpolated value is escaped by {@link sqlLiteral}, fragments are spliced. */
  (strings: TemplateStringsArray, ...values: readonly SqlInterpolation[]): SqlFragment;
  /** A (possibly qualified) identifier: `sql.ident('greenstream', 'readings')` → `` `greenstream`.`readings` ``. */
  ident(...parts: readonly string[]): SqlFragment;
  /** Trusted SQL text spliced verbatim. Never pass data here. */
  raw(trustedSql: string): SqlFragment;
  /** Joins fragments with a trusted separator (default `, `). */
  join(fragments: readonly SqlFragment[], separator?: string): SqlFragment;
  /** Comma-separated literals for `IN (…)`; an empty list is refused, as `IN ()` is not valid SQL. */
  list(values: readonly SqlValue[]): SqlFragment;
}

function render(value: SqlInterpolation): string {
  return value instanceof SqlFragment ? value.text : sqlLiteral(value);
}

function tag(strings: TemplateStringsArray, ...values: readonly SqlInterpolation[]): SqlFragment {
  let text = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) {
    text += render(values[i] as SqlInterpolation) + (strings[i + 1] ?? '');
  }
  return new SqlFragment(FRAGMENT_TOKEN, text);
}

export const sql: SqlTag = Object.assign(tag, {
  ident(...parts: readonly string[]): SqlFragment {
    if (parts.length === 0) throw new SqlValueError('sql.ident needs at least one name', 'identifier');
    return new SqlFragment(FRAGMENT_TOKEN, parts.map(sqlIdent).join('.'));
  },
  raw(trustedSql: string): SqlFragment {
    return new SqlFragment(FRAGMENT_TOKEN, trustedSql);
  },
  join(fragments: readonly SqlFragment[], separator = ', '): SqlFragment {
    return new SqlFragment(FRAGMENT_TOKEN, fragments.map((f) => f.text).join(separator));
  },
  list(values: readonly SqlValue[]): SqlFragment {
    if (values.length === 0) throw new SqlValueError('sql.list needs at least one value', 'empty list');
    return new SqlFragment(FRAGMENT_TOKEN, values.map(sqlLiteral).join(', '));
  },
});

// ---------------------------------------------------------------------------------------------
// DuckDB (the Parquet lake). Prefer binding (`$name` parameters work in `COPY … TO $path` and in
// table functions such as `read_parquet($path)`); these are for the places DuckDB cannot bind,
// e.g. a view definition or an ENUM type's members.

/**
 * Quotes a string as a DuckDB string literal. DuckDB follows standard SQL here: a quote is
 * doubled and a backslash is an ordinary character (no `\` escapes, unlike ClickHouse), so the
 * ClickHouse quoting above must not be reused.
 *
 * @throws SqlValueError for a NUL character (DuckDB's parser reads the query as a C string and
 *   would cut it there) or a lone surrogate (no UTF-8 form).
 */
export function duckdbLiteral(value: string): string {
  if (typeof value !== 'string') {
    throw new SqlValueError('duckdbLiteral quotes strings only', typeof value);
  }
  if (value.includes('\u0000')) {
    throw new SqlValueError('A string with a NUL character cannot be a DuckDB literal', 'string with NUL');
  }
  if (LONE_SURROGATE.test(value)) {
    throw new SqlValueError('A string with a lone UTF-16 surrogate cannot be sent as UTF-8', 'string');
  }
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * Renders a DuckDB table or column name as a double-quoted identifier. Validated like
 * {@link sqlIdent}: only `[A-Za-z_][A-Za-z0-9_]*` is accepted.
 *
 * @throws SqlValueError when the name is not a plain identifier.
 */
export function duckdbIdent(name: string): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
    throw new SqlValueError(
      'Identifiers must match [A-Za-z_][A-Za-z0-9_]* (at most 255 characters)',
      'identifier',
    );
  }
  return `"${name}"`;
}
