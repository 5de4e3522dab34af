import { describe, expect, it } from 'vitest';
import { checkReadOnlyStatement } from '../../connectors/read-only-sql.js';

const accepted = (text: string) => {
  const check = checkReadOnlyStatement(text);
  if (!check.ok) throw new Error(`refused ${JSON.stringify(text)}: ${check.reason}`);
  return check;
};
const refusal = (text: string) => {
  const check = checkReadOnlyStatement(text);
  if (check.ok) throw new Error(`accepted ${JSON.stringify(text)}`);
  return check;
};

describe('the query endpoint statement filter', () => {
  it('accepts reads, whatever comments and whitespace lead them', () => {
    for (const text of [
      'SELECT 1',
      '  select count() from greenstream.readings FINAL',
      '-- a comment\n\t/* and another */ SELECT 1',
      '# hash comment\nSELECT 1',
      'WITH x AS (SELECT 1) SELECT * FROM x',
      'SHOW TABLES',
      'DESCRIBE TABLE greenstream.readings',
      'DESC greenstream.readings',
      'EXPLAIN SELECT 1',
      'EXISTS TABLE greenstream.readings',
      '(SELECT 1) UNION ALL (SELECT 2)',
      "SELECT 'DROP TABLE x; INSERT' AS s",
      'SELECT `file` FROM t',
    ]) {
      expect(accepted(text).ok).toBe(true);
    }
  });

  it('refuses writes and anything that is not a read, with ClickHouse codes', () => {
    for (const text of [
      'DROP TABLE greenstream.readings',
      'INSERT INTO greenstream.readings SELECT * FROM greenstream.readings',
      '/* SELECT */ DELETE FROM t WHERE 1',
      'ALTER TABLE t DELETE WHERE 1',
      'KILL QUERY WHERE 1',
      'SET readonly = 0',
      'SYSTEM STOP MERGES',
      'OPTIMIZE TABLE t FINAL',
      'USE system',
      'TRUNCATE TABLE t',
      'WITH 1 AS x',
    ]) {
      const r = refusal(text);
      expect(r.code, text).toBe(164);
      expect(r.type).toBe('READONLY');
    }
  });

  it('refuses a second statement however it is hidden', () => {
    for (const text of [
      'SELECT 1; DROP TABLE t',
      'SELECT 1;DROP TABLE t;',
      // ClickHouse nests block comments: the comment ends at the second */, and DROP is a statement.
      'SELECT /* a /* b */ 1 */ 2; DROP TABLE t',
      "SELECT 'it''s'; DROP TABLE t",
      // An escaped backslash ends the string: what follows is a statement (checked on chDB).
      "SELECT 'a\\\\'; DROP TABLE t",
      'SELECT $$;$$; DROP TABLE t',
    ]) {
      expect(refusal(text).code, text).toBe(62);
    }
    // …while a semicolon inside a string, a quoted name, a heredoc or a comment is no separator.
    for (const text of [
      "SELECT ';'",
      // An escaped quote does not end the string: the engine reads one SELECT of one string.
      "SELECT 'a\\'; DROP TABLE t -- '",
      'SELECT 1 AS `a;b`',
      'SELECT $tag$ ; $tag$',
      'SELECT 1 /* ; */',
      'SELECT 1 -- ;\n',
      'SELECT 1;',
      'SELECT 1 ; ; ',
    ]) {
      expect(accepted(text).ok, text).toBe(true);
    }
  });

  it('refuses what it cannot read: unterminated strings and comments, nothing at all', () => {
    expect(refusal("SELECT 'open").code).toBe(62);
    expect(refusal('SELECT /* a /* b */ 1').code).toBe(62);
    expect(refusal('SELECT `x').code).toBe(62);
    expect(refusal('SELECT $a$ x').code).toBe(62);
    expect(refusal('').reason).toBe('Empty query');
    expect(refusal(' -- only a comment\n ; ').reason).toBe('Empty query');
  });

  it('refuses functions and clauses that reach files or other hosts, which readonly lets through', () => {
    for (const text of [
      "SELECT file('/etc/passwd')",
      "SELECT FILE ('/etc/passwd')",
      "SELECT `file`('/etc/passwd')",
      "SELECT * FROM url('http://example.com/x', CSV)",
      "SELECT * FROM s3('s3://bucket/x')",
      "SELECT * FROM remote('host', system.one)",
      "SELECT 1 INTO OUTFILE '/tmp/x'",
      "WITH (SELECT * FROM executable('ls', TSV, 'a String')) AS x SELECT x",
    ]) {
      const r = refusal(text);
      expect(r.code, text).toBe(497);
      expect(r.type).toBe('ACCESS_DENIED');
    }
  });

  it('finds the FORMAT clause and cuts trailing semicolons and comments', () => {
    expect(accepted('SELECT 1 FORMAT JSON').format).toBe('JSON');
    expect(accepted('SELECT 1 FORMAT JSONEachRow;').format).toBe('JSONEachRow');
    expect(accepted('SELECT 1 FORMAT CSV SETTINGS max_threads = 1').format).toBe('CSV');
    expect(accepted('SELECT format FROM t').format).toBeUndefined();
    expect(accepted("SELECT format('{}', 1)").format).toBeUndefined();
    expect(accepted('SELECT (SELECT 1 FORMAT TSV)').format).toBeUndefined();
    expect(accepted('SELECT 1; -- done').statement).toBe('SELECT 1');
    expect(accepted('SELECT 1 ;\n').statement).toBe('SELECT 1');
  });
});
