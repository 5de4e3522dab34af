import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeNem12, looksLikeNem12 } from '../../codecs/nem12.js';
import type { CodecOutput } from '../../codecs/types.js';

// CI has the published samples beside the repository, at `../shared/data`.
const DATA = fileURLToPath(new URL('../../../shared/data/nem12/', import.meta.url));
const sample = (name: string) => readFileSync(join(DATA, name), 'utf8');
const decode = (text: string) => decodeNem12(text, { source: 'f.csv', receivedAt: 0 });
const ok = (text: string): CodecOutput => {
  const r = decode(text);
  if (!r.ok) throw new Error(`refused: ${r.reason}`);
  return r;
};

const values = (n: number, v = '1.5') => Array.from({ length: n }, () => v).join(',');
const header = '100,NEM12,200505181432,MDP,NEMMCO';

describe('decodeNem12', () => {
  it('reads a 30-minute day into 48 readings at their UTC starts (NEM time is UTC+10)', () => {
    const r = ok(
      `${header}\n200,NMI1,E1B1,E1,E1,N1,M1,KWH,30,\n300,20240301,${values(48)},A,,,20240302000000,\n900\n`,
    );
    expect(r.failures).toEqual([]);
    expect(r.readings).toHaveLength(48);
    expect(r.readings[0]).toMatchObject({
      meterId: 'NMI1-E1',
      timestamp: '2024-02-29T14:00:00Z',
      value: '1.5',
      unit: 'KWH',
      intervalMinutes: 30,
      source: 'f.csv#3',
    });
    expect(r.readings[47]!.timestamp).toBe('2024-03-01T13:30:00Z');
    expect(r.readings[0]!.sourceFlags).toBeUndefined();
    expect(r.meters).toEqual([
      { meterId: 'NMI1-E1', format: 'nem12', group: 'NMI1', intervalMinutes: 30, unit: 'KWH' },
    ]);
  });

  it.each([
    ['E', ['source_estimated']],
    ['E52', ['source_estimated']],
    ['S14', ['source_substituted']],
    ['F', ['source_substituted']],
  ])('flags every interval of a %s day %j', (method, flags) => {
    const r = ok(`${header}\n200,NMI1,E1,E1,E1,N1,M1,KWH,15,\n300,20240301,${values(96)},${method},,,,\n`);
    expect(r.readings).toHaveLength(96);
    for (const reading of r.readings) expect(reading.sourceFlags).toEqual(flags);
  });

  it('turns an N day into missing intervals (NULL readings)', () => {
    const r = ok(`${header}\n200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n300,20240301,${values(48, '0')},N,,,,\n`);
    expect(r.readings.map((x) => x.value)).toEqual(Array(48).fill(''));
  });

  it('takes per-interval quality of a V day from its 400 records', () => {
    const text = sample('NEM12#000000000000003#CNRGYMDP#NEMMCO.csv')
      .replace('400,7,7,A,89,', '400,7,7,E52,89,')
      .replace('400,15,15,A,89,', '400,15,15,N,89,');
    const r = ok(text);
    const day1 = r.readings.filter((x) => x.source === 'f.csv#3');
    expect(day1).toHaveLength(48);
    expect(day1.map((x, i) => (x.sourceFlags === undefined ? i : -1)).filter((i) => i >= 0)).toHaveLength(47);
    expect(day1[6]!.sourceFlags).toEqual(['source_estimated']);
    const day3 = r.readings.filter((x) => x.source === 'f.csv#23');
    expect(day3[14]!.value).toBe('');
    expect(day3.filter((x) => x.value === '')).toHaveLength(1);
  });

  it('flags substituted intervals of the sample file with 400 records (S14, F14, F15, F18)', () => {
    const r = ok(sample('NEM12#08150_05031502#WBAYM#NEMMCO.csv'));
    const flagged = r.readings.map((x) => (x.sourceFlags ?? []).join());
    expect(flagged.slice(0, 22)).toEqual(Array(22).fill(''));
    expect(flagged.slice(22)).toEqual(Array(26 + 48).fill('source_substituted'));
  });

  it('quarantines a V day with intervals no 400 record covers', () => {
    const r = ok(
      `${header}\n200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n300,20240301,${values(48)},V,,,,\n400,1,40,A,,\n900\n`,
    );
    expect(r.readings).toEqual([]);
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'nem12_record', line: 3, source: 'f.csv#3', meterId: 'NMI1-E1' }),
    ]);
    expect(r.failures[0]!.reason).toContain('interval(s) 41–48');
  });

  it('replaces an earlier 300 of the same stream and day, quarantining the earlier one as superseded', () => {
    const r = ok(
      `${header}\n200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n300,20240301,${values(48, '1')},A,,,,\n300,20240302,${values(48, '2')},A,,,,\n200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n300,20240301,${values(48, '3')},E,,,,\n`,
    );
    expect(r.readings).toHaveLength(96);
    expect(
      new Set(r.readings.filter((x) => x.timestamp.startsWith('2024-02-29')).map((x) => x.value)),
    ).toEqual(new Set(['3']));
    expect(r.failures).toEqual([expect.objectContaining({ code: 'nem12_superseded', line: 3 })]);
    expect(r.failures[0]!.reason).toContain('replaced by the later one at line 6');
  });

  it('rejects a 300 whose number of values contradicts its 200 interval, naming both', () => {
    const r = ok(sample('invalid/Example_NEM12_15min_200_30min_300.csv'));
    expect(r.readings).toEqual([]);
    expect(r.meters).toEqual([]);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatchObject({ code: 'nem12_interval_count', line: 3, meterId: '123-E1' });
    expect(r.failures[0]!.reason).toBe(
      "300 record has 48 interval values where the 200 record's 15-minute interval (line 2) needs 96",
    );
  });

  it('quarantines reactive-energy streams with a reason saying why, and keeps the active ones', () => {
    const r = ok(sample('NEM12#000000000000003#CNRGYMDP#NEMMCO.csv'));
    expect(new Set(r.readings.map((x) => x.meterId))).toEqual(new Set(['NEM1203042-E1']));
    expect(r.failures).toHaveLength(4);
    for (const f of r.failures) {
      expect(f.code).toBe('nem12_unit');
      expect(f.reason).toContain('NEM1203042-Q1 is in KVARH: reactive or apparent energy');
    }
  });

  it('ignores 500 and 900 records, and reads interval lengths per stream', () => {
    const r = ok(sample('NEM12#SCENARIO10#UNITEDDP#NEMMCO.csv'));
    expect(r.failures).toEqual([]);
    expect(r.readings).toHaveLength(6 * 48);
    const mixed = ok(sample('NEM12#different-intervals#EXAMPLE.csv'));
    expect(mixed.readings).toHaveLength(96);
    // The 10-minute V1 stream names no unit: quarantined, not guessed.
    expect(mixed.failures).toEqual([expect.objectContaining({ code: 'nem12_unit', line: 7 })]);
    expect(mixed.failures[0]!.reason).toContain('has no unit of measure');
  });

  it.each([
    ['Example_NEM12_empty.csv', 'holds no 200 or 300 record'],
    ['Example_NEM12_missing_header.csv', 'lacks its 100,NEM12 header'],
    ['Example_NEM12_powercor_missing_fields.csv', 'lacks its 100,NEM12 header'],
  ])('refuses the whole of invalid/%s', (name, reason) => {
    const r = decode(sample(`invalid/${name}`));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(reason);
  });

  it('quarantines each broken record of invalid/Example_NEM12_incomplete_interval.csv with its line', () => {
    const r = ok(sample('invalid/Example_NEM12_incomplete_interval.csv'));
    expect(r.readings).toHaveLength(48);
    expect(r.failures.map((f) => [f.line, f.code])).toEqual([
      [3, 'nem12_interval_count'],
      [6, 'nem12_unit'],
      [7, 'nem12_unit'],
    ]);
  });

  it('quarantines unreadable records and keeps going', () => {
    const r = ok(
      `${header}\n300,20240301,${values(48)},A\n200,,E1,E1,,N1,M1,KWH,7,\n300,20240301,${values(48)},A\n200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n300,20240231,${values(48)},A\n300,20240301,${values(48)},Q\n400,1,48,A\n777,x\n300,20240302,${values(48)},A\n`,
    );
    expect(r.readings).toHaveLength(48);
    // The 400 at line 8 belongs to the rejected 300 before it: that record's quarantine covers it.
    expect(r.failures.map((f) => f.line)).toEqual([2, 3, 4, 6, 7, 9]);
    expect(r.failures[1]!.reason).toContain('no NMI');
    expect(r.failures[1]!.reason).toContain('interval length "7"');
    expect(r.failures[3]!.reason).toContain('invalid interval date');
    expect(r.failures[4]!.reason).toContain('quality method "Q"');
    expect(r.failures[5]!.reason).toContain('unknown record indicator');
  });

  it('never throws, and accounts for every 300 record as readings or a failure', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.constantFrom(
              '100,NEM12,1,a,b',
              '200,N,E1,E1,E1,N1,M,KWH,30,',
              '400,1,48,A',
              '900',
              `300,20240301,${values(48)},V`,
            ),
            fc.string(),
          ),
          { maxLength: 12 },
        ),
        (lines) => {
          const r = decode(lines.join('\n'));
          if (r.ok) expect(r.readings.length % 48).toBe(0);
        },
      ),
    );
  });

  it('is detected from its header, not its file name', () => {
    expect(looksLikeNem12(`\uFEFF\n${header}\n`)).toBe(true);
    expect(looksLikeNem12('200,NMI1,E1,E1,E1,N1,M1,KWH,30,\n')).toBe(true);
    expect(looksLikeNem12('meter_id,timestamp,value,unit\n')).toBe(false);
  });
});
