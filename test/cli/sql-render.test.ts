import { describe, expect, it } from 'vitest';
import { render } from '../../cli/sql.js';

describe('greenstream sql rendering', () => {
  it('renders 200,000 rows as a table without overflowing the stack', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => ({
      meter_id: `m-${i}`,
      value: i / 4,
      ok: i % 2 === 0,
    }));
    const text = render(rows, 'table');
    const lines = text.split('\n');
    expect(lines[0]).toBe('meter_id  value     ok');
    expect(lines[1]).toBe('--------  --------  -----');
    expect(lines[2]).toBe('m-0       0         true');
    expect(lines.at(-3)).toBe('m-199999  49999.75  false');
    expect(lines.at(-2)).toBe('(200000 rows)');
    expect(render(rows, 'csv').split('\n').length).toBe(200_002);
  });

  it('makes control and bidirectional characters visible in a table, keeps JSON and CSV faithful', () => {
    const hostile = 'a\u001b[2J\u0007\nb\tc\r\u009b31m\u202Eevil\u0000';
    const table = render([{ v: hostile }], 'table');
    expect(table).toContain('a\\u{1b}[2J\\u{7}\\nb\\tc\\r\\u{9b}31m\\u{202e}evil\\u{0}');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting that none is left
    expect(table).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    const json = render([{ v: hostile }], 'json');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting that none is left
    expect(json).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect((JSON.parse(json) as { v: string }[])[0]!.v).toBe(hostile);
    expect(render([{ v: hostile, w: 'x,"y"' }], 'csv')).toBe(`v,w\n"${hostile}","x,""y"""\n`);
  });

  it('says so when there is nothing', () => {
    expect(render([], 'table')).toBe('(no rows)\n');
    expect(render([], 'json')).toBe('[]\n');
  });
});
