import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRegistryCsv } from '../../operators/registry.js';
import { meter } from './fixtures.js';

const HEADER = 'meter_id,region,neighborhood,meter_type,vacant,max_kw';

describe('parseRegistryCsv', () => {
  it('reads every column into a MeterInfo keyed by meter id', () => {
    const { registry, errors } = parseRegistryCsv(
      `${HEADER}\nMTR-1,north,N-01,residential,false,\nMTR-2,south,S-02,commercial,true,150.5\n`,
    );
    expect(errors).toEqual([]);
    expect([...registry.values()]).toEqual([
      meter({ meterId: 'MTR-1', region: 'north', neighborhood: 'N-01' }),
      {
        meterId: 'MTR-2',
        region: 'south',
        neighborhood: 'S-02',
        meterType: 'commercial',
        vacant: true,
        maxKw: 150.5,
      },
    ]);
    expect(registry.get('MTR-2')!.maxKw).toBe(150.5);
  });

  it('takes columns in any order, ignores extra ones, and accepts any case and padding of the values', () => {
    const { registry, errors } = parseRegistryCsv(
      'Vacant, meter_type ,max_kw,meter_id,notes,neighborhood,region\r\n TRUE , Commercial ,, MTR-9 ,hi,N-1,west\r\n',
    );
    expect(errors).toEqual([]);
    expect(registry.get('MTR-9')).toEqual({
      meterId: 'MTR-9',
      region: 'west',
      neighborhood: 'N-1',
      meterType: 'commercial',
      vacant: true,
      maxKw: null,
    });
  });

  it('reads double-quoted fields with commas and escaped quotes, a BOM, CRLF and blank lines', () => {
    const text = `\uFEFF${HEADER}\r\n\r\n"MTR-1","North, upper","Zone ""7""",residential,false,"12"\r\n\n`;
    const { registry, errors } = parseRegistryCsv(text);
    expect(errors).toEqual([]);
    expect(registry.get('MTR-1')).toMatchObject({
      region: 'North, upper',
      neighborhood: 'Zone "7"',
      maxKw: 12,
    });
  });

  it('reports each bad line with its line number and reason, and keeps the good lines', () => {
    const text = [
      HEADER, // 1
      'MTR-1,north,N-01,residential,false,', // 2 ok
      'MTR-2,north,N-01,industrial,false,', // 3
      'MTR-3,north,N-01,residential,yes,', // 4
      'MTR-4,north,N-01,residential,false,-1', // 5
      'MTR-5,north,N-01,residential,false,0', // 6
      'MTR-6,north,N-01,residential,false,abc', // 7
      'MTR-7,north,N-01,residential,false,1e999', // 8
      ',north,N-01,residential,false,', // 9
      'MTR-8,north,N-01,residential,false', // 10
      'MTR-1,south,S-01,commercial,true,', // 11 duplicate
      'MTR-9,"north,N-01,residential,false,', // 12
      'MTR-10,north,N-01,residential,false,0x10', // 13
      'MTR-11,nor"th,N-01,residential,false,', // 14
      '', // 15 blank
      'MTR-12,north,N-01,commercial,true,7.5', // 16 ok
    ].join('\n');
    const { registry, errors } = parseRegistryCsv(text);
    expect([...registry.keys()]).toEqual(['MTR-1', 'MTR-12']);
    expect(registry.get('MTR-1')!.region).toBe('north'); // the first row of a repeated id wins
    expect(errors).toEqual([
      { line: 3, reason: 'meter_type must be residential, commercial or unknown, got "industrial"' },
      { line: 4, reason: 'vacant must be true or false, got "yes"' },
      { line: 5, reason: 'max_kw must be empty or a positive number, got "-1"' },
      { line: 6, reason: 'max_kw must be empty or a positive number, got "0"' },
      { line: 7, reason: 'max_kw must be empty or a positive number, got "abc"' },
      { line: 8, reason: 'max_kw must be empty or a positive number, got "1e999"' },
      { line: 9, reason: 'meter_id is empty' },
      { line: 10, reason: 'expected 6 fields, got 5' },
      { line: 11, reason: 'duplicate meter_id MTR-1: the first row is kept' },
      { line: 12, reason: 'unterminated quoted field' },
      { line: 13, reason: 'max_kw must be empty or a positive number, got "0x10"' },
      { line: 14, reason: 'quote inside an unquoted field' },
    ]);
  });

  it('joins several problems of one line into one reason', () => {
    const { errors } = parseRegistryCsv(`${HEADER}\n,north,N-01,house,maybe,-2`);
    expect(errors).toEqual([
      {
        line: 2,
        reason:
          'meter_id is empty; meter_type must be residential, commercial or unknown, got "house"; ' +
          'vacant must be true or false, got "maybe"; max_kw must be empty or a positive number, got "-2"',
      },
    ]);
  });

  it('refuses a header that lacks a required column, with an empty registry', () => {
    const { registry, errors } = parseRegistryCsv(
      'meter_id,region,meter_type,vacant\nMTR-1,north,residential,false',
    );
    expect(registry.size).toBe(0);
    expect(errors).toEqual([{ line: 1, reason: 'header: missing column(s) neighborhood, max_kw' }]);
  });

  it('reports empty text', () => {
    expect(parseRegistryCsv('').errors).toEqual([{ line: 1, reason: 'empty registry: no header' }]);
    expect(parseRegistryCsv('\n\n').errors).toEqual([{ line: 1, reason: 'empty registry: no header' }]);
  });

  it('counts the header line after leading blank lines', () => {
    const { registry, errors } = parseRegistryCsv(`\n${HEADER}\nMTR-1,north,N-01,residential,false,x`);
    expect(registry.size).toBe(0);
    expect(errors).toEqual([{ line: 3, reason: 'max_kw must be empty or a positive number, got "x"' }]);
  });

  it('round-trips any registry written as CSV with quoting, and never throws on arbitrary text', () => {
    const field = fc.string({ maxLength: 12 }).filter((s) => !/[\r\n]/.test(s) && s.trim() === s);
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    const row = fc.record({
      meterId: field.filter((s) => s !== ''),
      region: field,
      neighborhood: field,
      meterType: fc.constantFrom('residential' as const, 'commercial' as const),
      vacant: fc.boolean(),
      maxKw: fc.option(fc.double({ min: 0.001, max: 1e6, noNaN: true })),
    });
    fc.assert(
      fc.property(fc.uniqueArray(row, { selector: (r) => r.meterId, maxLength: 20 }), (rows) => {
        const text = [
          HEADER,
          ...rows.map((r) =>
            [
              r.meterId,
              r.region,
              r.neighborhood,
              r.meterType,
              String(r.vacant),
              r.maxKw === null ? '' : String(r.maxKw),
            ]
              .map(quote)
              .join(','),
          ),
        ].join('\n');
        const { registry, errors } = parseRegistryCsv(text);
        expect(errors).toEqual([]);
        expect([...registry.values()]).toEqual(rows);
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (noise) => {
        const { registry, errors } = parseRegistryCsv(`${HEADER}\n${noise}`);
        expect(registry.size + errors.length).toBeLessThanOrEqual(noise.split('\n').length);
      }),
    );
  });

  it('reads the optional interval_minutes column and the unknown meter type', () => {
    const { registry, errors } = parseRegistryCsv(
      'meter_id,region,neighborhood,meter_type,vacant,max_kw,interval_minutes\n' +
        'NMI1-E1,r,n,unknown,false,,30\n' +
        'M2,r,n,residential,false,,\n' +
        'M3,r,n,residential,false,,half an hour\n',
    );
    expect(registry.get('NMI1-E1')).toMatchObject({ meterType: 'unknown', intervalMinutes: 30 });
    expect(registry.get('M2')!.intervalMinutes).toBeUndefined();
    expect(errors).toEqual([
      { line: 4, reason: 'interval_minutes must be empty or a positive number, got "half an hour"' },
    ]);
  });
});
