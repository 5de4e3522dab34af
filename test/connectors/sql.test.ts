import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SqlFragment, SqlValueError, sql, sqlIdent, sqlLiteral } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import type { ReadingFlag } from '../../schemas/reading.js';
import { chdbDataDir, makeReadings, testDatabase } from './clickhouse-fixtures.js';

describe('sqlLiteral', () => {
  it('quotes strings, escaping the quote, the backslash and control characters', () => {
    expect(sqlLiteral('plain')).toBe("'plain'");
    expect(sqlLiteral('')).toBe("''");
    expect(sqlLiteral("it's")).toBe("'it\\'s'");
    expect(sqlLiteral('C:\\dir\\')).toBe("'C:\\\\dir\\\\'");
    expect(sqlLiteral('a\nb\rc\td\0e\bf\fg')).toBe("'a\\nb\\rc\\td\\0e\\bf\\fg'");
    expect(sqlLiteral('\u0001\u001f\u007f')).toBe("'\\x01\\x1f\\x7f'");
    expect(sqlLiteral('Zähler ✓ 🔌')).toBe("'Zähler ✓ 🔌'");
  });

  it('never emits an escape outside the portable set', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const body = sqlLiteral(s).slice(1, -1);
        const escapes = body.match(/\\(x[0-9a-f]{2}|.)/g) ?? [];
        for (const e of escapes) expect(e).toMatch(/^\\(\\|'|n|r|t|0|b|f|x[01][0-9a-f]|x7f)$/);
        // Outside escapes, no raw quote or control character survives.
        // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
        expect(body.replace(/\\(x[0-9a-f]{2}|.)/g, '')).not.toMatch(/['\\\u0000-\u001f\u007f]/);
      }),
    );
  });

  it('renders numbers, bigints, booleans, NULL, dates and string arrays', () => {
    expect(sqlLiteral(42)).toBe('42');
    expect(sqlLiteral(1.5e-7)).toBe('1.5e-7');
    expect(sqlLiteral(-5)).toBe('(-5)');
    expect(sqlLiteral(-0)).toBe('0');
    expect(sqlLiteral(12345678901234567890n)).toBe('12345678901234567890');
    expect(sqlLiteral(-3n)).toBe('(-3)');
    expect(sqlLiteral(true)).toBe('1');
    expect(sqlLiteral(false)).toBe('0');
    expect(sqlLiteral(null)).toBe('NULL');
    expect(sqlLiteral(new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 999)))).toBe("toDateTime(1767225600, 'UTC')");
    expect(sqlLiteral([])).toBe('[]');
    expect(sqlLiteral(['a', "b'c"])).toBe("['a', 'b\\'c']");
  });

  it('keeps a negative number from turning `a-` into a comment', () => {
    expect(sql`SELECT 1-${-5}`.text).toBe('SELECT 1-(-5)');
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['an invalid Date', new Date(Number.NaN)],
    ['a Date before 1970', new Date(-1000)],
    ['a Date after 2106', new Date(Date.UTC(2107, 0, 1))],
    ['a lone surrogate', 'bad\ud800'],
    ['an array with a lone surrogate', ['ok', '\udc00']],
    ['an array of numbers', [1, 2] as unknown as string[]],
    ['an object', { a: 1 } as unknown as string],
    ['undefined', undefined as unknown as string],
  ])('refuses %s with a SqlValueError', (_label, value) => {
    expect(() => sqlLiteral(value)).toThrow(SqlValueError);
  });
});

describe('sqlIdent', () => {
  it('backtick-quotes plain identifiers', () => {
    expect(sqlIdent('readings')).toBe('`readings`');
    expect(sqlIdent('_x9')).toBe('`_x9`');
  });

  it.each(['', '9lives', 'a.b', 'a`b', 'a b', 'drop;', 'zähler', 'x'.repeat(256), "a'--"])(
    'refuses %j',
    (name) => {
      expect(() => sqlIdent(name)).toThrow(SqlValueError);
    },
  );
});

describe('the sql tag', () => {
  it('escapes every interpolation and splices fragments', () => {
    const id = "x'; DROP TABLE t; --";
    const where = sql`meter_id = ${id}`;
    const q = sql`SELECT * FROM ${sql.ident('greenstream', 'readings')} WHERE ${where} AND kw > ${1.5} LIMIT ${10}`;
    expect(q.text).toBe(
      "SELECT * FROM `greenstream`.`readings` WHERE meter_id = 'x\\'; DROP TABLE t; --' AND kw > 1.5 LIMIT 10",
    );
    expect(String(q)).toBe(q.text);
  });

  it('offers raw, join and list for trusted text and IN lists', () => {
    expect(sql`SELECT ${sql.raw('count()')}`.text).toBe('SELECT count()');
    expect(sql.join([sql`a`, sql`${'b'}`], ' OR ').text).toBe("a OR 'b'");
    expect(sql`x IN (${sql.list(['a', "b'"])})`.text).toBe("x IN ('a', 'b\\'')");
    expect(() => sql.list([])).toThrow(SqlValueError);
    expect(() => sql.ident()).toThrow(SqlValueError);
    expect(() => sql.ident('ok', 'not ok')).toThrow(SqlValueError);
  });

  it('cannot be bypassed by constructing a fragment by hand', () => {
    expect(() => new SqlFragment(Symbol('SqlFragment'), 'DROP TABLE x')).toThrow(TypeError);
  });
});

/** Ids an attacker or a broken meter could send. */
const HOSTILE_IDS: readonly string[] = [
  "'; DROP TABLE greenstream.readings; --",
  "\\'; DROP TABLE x; --",
  "O'Brien''s meter",
  'trailing backslash\\',
  '\\N',
  '\\x41 is not A',
  'new\nline\r\nand\ttab',
  'nul\u0000byte',
  '\u0001\u0002\u001b[31m\u007f',
  'Zähler-✓-東京-🔌-\u202eRTL-e\u0301-\u2028',
  '`backtick` "double" $1 {id:String} ? /* c */ -- c',
  'x'.repeat(10_000),
  '',
];

describe.each([
  ['clickhouse-server 18.16', 'server'],
  ['chDB 26.x', 'chdb'],
] as const)('hostile values round-trip through %s', (_name, engine) => {
  const database = testDatabase('sql');
  // Made in beforeAll, not at collection: a filtered run skips the hooks and would leak it.
  let dataDir: ReturnType<typeof chdbDataDir> | undefined;
  let store: HotStore;

  beforeAll(async () => {
    dataDir = engine === 'chdb' ? chdbDataDir() : undefined;
    store =
      engine === 'server'
        ? openHotStore({ kind: 'server', url: inject('clickhouseUrl'), database })
        : openHotStore({ kind: 'chdb', path: dataDir!.path, database });
    await store.migrate();
    await store.command(
      sql`CREATE TABLE ${sql.ident(database, 'hostile')} (n UInt32, s String) ENGINE = Memory`,
    );
  });

  afterAll(async () => {
    await store?.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
    await store?.close();
    dataDir?.remove();
  });

  it('inserts each hostile id as a literal and selects it back equal, by equality on the literal', async () => {
    const rows = HOSTILE_IDS.map((s, n) => sql`(${n}, ${s})`);
    await store.command(sql`INSERT INTO ${sql.ident(database, 'hostile')} (n, s) VALUES ${sql.join(rows)}`);
    for (const [n, s] of HOSTILE_IDS.entries()) {
      const found = await store.query<{ n: number; s: string }>(
        sql`SELECT n, s FROM ${sql.ident(database, 'hostile')} WHERE s = ${s}`,
      );
      expect(found).toEqual([{ n, s }]);
    }
    const tables = await store.query<{ name: string }>(
      sql`SELECT name FROM system.tables WHERE database = ${database} AND name = 'readings'`,
    );
    expect(tables).toHaveLength(1);
  });

  it('stores hostile meter ids through the row encoder and finds them with sql``', async () => {
    const readings = makeReadings(HOSTILE_IDS.length, { meters: 1 }).map((r, i) => ({
      ...r,
      meterId: HOSTILE_IDS[i] as string,
      // Not real flags: the array encoding is what is under test.
      flags: [HOSTILE_IDS[i] as string, "'"] as unknown as ReadingFlag[],
    }));
    await store.insert('readings', readings);
    for (const r of readings) {
      const found = await store.query<{ meter_id: string; flags: string[] }>(
        sql`SELECT meter_id, flags FROM ${store.relation('readings_latest')} WHERE meter_id = ${r.meterId}`,
      );
      expect(found).toEqual([{ meter_id: r.meterId, flags: r.flags }]);
    }
  });

  it('round-trips arbitrary Unicode strings as literals', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 20 }),
        async (strings) => {
          const [row] = await store.query<{ a: string[] }>(sql`SELECT ${strings} AS a`);
          expect(row?.a).toEqual(strings);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('round-trips numbers and dates as literals', async () => {
    const [row] = await store.query<{ f: number; neg: number; small: number; t: string; b: number }>(
      sql`SELECT ${0.1 + 0.2} AS f, ${-12.3456} AS neg, ${1.5e-7} AS small, ${new Date(Date.UTC(2026, 5, 1, 12, 30, 15))} AS t, ${true} AS b`,
    );
    expect(row).toEqual({ f: 0.1 + 0.2, neg: -12.3456, small: 1.5e-7, t: '2026-06-01 12:30:15', b: 1 });
  });
});
