/**
 * Decides whether a query sent to the worker's query endpoint may run: one read statement
 * (`SELECT`, `WITH … SELECT`, `SHOW`, `DESCRIBE`/`DESC`, `EXPLAIN`, `EXISTS`), nothing that reads or
 * writes files, and which output format it asks for.
 *
 * The text is tokenized the way ClickHouse's lexer reads it (checked on chDB 26.7): `--` and `#`
 * line comments, nestable block comments, single-quoted strings, `"…"` and `` `…` `` identifiers
 * (backslash escapes and doubled quotes), `$tag$…$tag$` heredocs. Reading it like the engine matters
 * more than the allowlist itself: a comment the engine nests but a naive scanner ends early would hide
 * a second statement. Whatever is not understood (an unterminated string or comment) is refused.
 *
 * This is the first of two fences: the engine connection that runs the accepted statements is also
 * set `readonly = 1` (see `query-endpoint.ts`). The filter still matters because `readonly` lets
 * through two things that touch the worker's files: the scalar `file()` function and
 * `INTO OUTFILE`, and it gives a clear refusal before the engine is asked at all.
 */

/** ClickHouse error codes used in refusals, so clients map them as they would a server's. */
export const REFUSAL_CODES = {
  SYNTAX_ERROR: 62,
  READONLY: 164,
  ACCESS_DENIED: 497,
} as const;

export type RefusalType = keyof typeof REFUSAL_CODES;

export type StatementCheck =
  | {
      readonly ok: true;
      /** The statement without trailing semicolons. */
      readonly statement: string;
      /** The `FORMAT` clause's format, when the statement has one. */
      readonly format?: string;
    }
  | { readonly ok: false; readonly type: RefusalType; readonly code: number; readonly reason: string };

type TokenKind = 'word' | 'quoted' | 'string' | 'punct';

interface Token {
  readonly kind: TokenKind;
  /** Words as written; quoted identifiers unquoted. */
  readonly text: string;
  /** Parenthesis depth before the token. */
  readonly depth: number;
  /** Offset just after the token in the text. */
  readonly end: number;
}

/** Statements whose first keyword makes them reads. */
const READ_KEYWORDS = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN', 'EXISTS']);

/**
 * Functions that reach outside the store. `readonly = 1` already refuses the table functions among
 * them; the scalar `file()` it lets through reads any file the worker can.
 */
const IO_FUNCTIONS = new Set(
  [
    'file',
    'fileCluster',
    'url',
    'urlCluster',
    's3',
    's3Cluster',
    'gcs',
    'hdfs',
    'hdfsCluster',
    'azureBlobStorage',
    'azureBlobStorageCluster',
    'remote',
    'remoteSecure',
    'cluster',
    'clusterAllReplicas',
    'mysql',
    'postgresql',
    'mongodb',
    'redis',
    'sqlite',
    'jdbc',
    'odbc',
    'executable',
    'input',
    'python',
  ].map((name) => name.toLowerCase()),
);

/** Keywords that make a read write or read a file (`INTO OUTFILE`, `FROM INFILE`). */
const FILE_KEYWORDS = new Set(['OUTFILE', 'INFILE']);

class LexError extends Error {}

const WORD_START = /[A-Za-z_]/;
const WORD_PART = /[A-Za-z0-9_$]/;
const NUMBER_PART = /[A-Za-z0-9_.]/;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let depth = 0;
  let i = 0;
  const n = text.length;
  const quotedUntil = (quote: string, from: number): { end: number; value: string } => {
    let value = '';
    let j = from + 1;
    for (;;) {
      if (j >= n) throw new LexError(`an unterminated ${quote === "'" ? 'string' : 'quoted name'}`);
      const ch = text[j]!;
      if (ch === '\\') {
        value += text[j + 1] ?? '';
        j += 2;
      } else if (ch === quote) {
        if (text[j + 1] === quote) {
          value += quote;
          j += 2;
        } else return { end: j + 1, value };
      } else {
        value += ch;
        j++;
      }
    }
  };
  while (i < n) {
    const ch = text[i]!;
    const next = text[i + 1];
    if (/\s/.test(ch)) {
      i++;
    } else if ((ch === '-' && next === '-') || ch === '#') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (ch === '/' && next === '*') {
      // ClickHouse nests block comments: `/* a /* b */ c */` is one comment.
      let level = 1;
      let j = i + 2;
      while (level > 0) {
        if (j >= n) throw new LexError('an unterminated comment');
        if (text[j] === '/' && text[j + 1] === '*') {
          level++;
          j += 2;
        } else if (text[j] === '*' && text[j + 1] === '/') {
          level--;
          j += 2;
        } else j++;
      }
      i = j;
    } else if (ch === "'") {
      const { end, value } = quotedUntil("'", i);
      tokens.push({ kind: 'string', text: value, depth, end });
      i = end;
    } else if (ch === '"' || ch === '`') {
      const { end, value } = quotedUntil(ch, i);
      tokens.push({ kind: 'quoted', text: value, depth, end });
      i = end;
    } else if (ch === '$' && /^\$[A-Za-z0-9_]*\$/.test(text.slice(i, i + 258))) {
      const tag = /^\$[A-Za-z0-9_]*\$/.exec(text.slice(i, i + 258))![0];
      const end = text.indexOf(tag, i + tag.length);
      if (end === -1) throw new LexError('an unterminated $$ string');
      tokens.push({ kind: 'string', text: text.slice(i + tag.length, end), depth, end: end + tag.length });
      i = end + tag.length;
    } else if (WORD_START.test(ch)) {
      let j = i + 1;
      while (j < n && WORD_PART.test(text[j]!)) j++;
      tokens.push({ kind: 'word', text: text.slice(i, j), depth, end: j });
      i = j;
    } else if (/[0-9]/.test(ch)) {
      let j = i + 1;
      while (j < n && NUMBER_PART.test(text[j]!)) j++;
      tokens.push({ kind: 'punct', text: text.slice(i, j), depth, end: j });
      i = j;
    } else {
      if (ch === ')') depth = Math.max(0, depth - 1);
      tokens.push({ kind: 'punct', text: ch, depth, end: i + 1 });
      if (ch === '(') depth++;
      i++;
    }
  }
  return tokens;
}

function refuse(type: RefusalType, reason: string): StatementCheck {
  return { ok: false, type, code: REFUSAL_CODES[type], reason };
}

/** Checks one query text; see the module comment for what passes. */
export function checkReadOnlyStatement(text: string): StatementCheck {
  let tokens: Token[];
  try {
    tokens = tokenize(text);
  } catch (error) {
    if (error instanceof LexError) return refuse('SYNTAX_ERROR', `The query has ${error.message}`);
    throw error;
  }
  let last = tokens.length;
  while (last > 0 && tokens[last - 1]!.kind === 'punct' && tokens[last - 1]!.text === ';') last--;
  const body = tokens.slice(0, last);
  if (body.length === 0) return refuse('SYNTAX_ERROR', 'Empty query');
  if (body.some((t) => t.kind === 'punct' && t.text === ';')) {
    return refuse('SYNTAX_ERROR', 'Multi-statements are not allowed: send one statement per request');
  }
  // `(SELECT …) UNION ALL (SELECT …)` starts with parentheses.
  const head = body.find((t) => !(t.kind === 'punct' && t.text === '('));
  const keyword = head?.kind === 'word' ? head.text.toUpperCase() : '';
  if (!READ_KEYWORDS.has(keyword)) {
    return refuse(
      'READONLY',
      `Cannot execute query in readonly mode: the worker's query endpoint runs SELECT, WITH … SELECT, SHOW, DESCRIBE, EXPLAIN and EXISTS only, got ${keyword === '' ? 'no statement keyword' : keyword}`,
    );
  }
  if (keyword === 'WITH' && !body.some((t) => t.kind === 'word' && t.text.toUpperCase() === 'SELECT')) {
    return refuse('READONLY', 'Cannot execute query in readonly mode: WITH must lead to a SELECT');
  }
  for (let k = 0; k < body.length; k++) {
    const token = body[k]!;
    if (token.kind !== 'word' && token.kind !== 'quoted') continue;
    const following = body[k + 1];
    if (following?.kind === 'punct' && following.text === '(' && IO_FUNCTIONS.has(token.text.toLowerCase())) {
      return refuse(
        'ACCESS_DENIED',
        `${token.text}() reaches outside the store and is not served by the worker's query endpoint`,
      );
    }
    if (token.kind === 'word' && FILE_KEYWORDS.has(token.text.toUpperCase())) {
      return refuse(
        'ACCESS_DENIED',
        `${token.text.toUpperCase()} touches the worker's files and is not served by the query endpoint`,
      );
    }
  }
  // Trailing semicolons and comments are dropped: the engine gets the one statement only.
  const statement = text.slice(0, body[body.length - 1]!.end);
  const format = formatClause(body);
  return format === undefined ? { ok: true, statement } : { ok: true, statement, format };
}

/** `FORMAT <name>` at depth 0, at the end or before `SETTINGS`. */
function formatClause(body: readonly Token[]): string | undefined {
  for (let k = body.length - 2; k >= 1; k--) {
    const token = body[k]!;
    if (token.depth !== 0 || token.kind !== 'word' || token.text.toUpperCase() !== 'FORMAT') continue;
    const name = body[k + 1]!;
    const after = body[k + 2];
    if (
      (name.kind === 'word' || name.kind === 'quoted') &&
      (after === undefined || (after.kind === 'word' && after.text.toUpperCase() === 'SETTINGS'))
    ) {
      return name.text;
    }
  }
  return undefined;
}
