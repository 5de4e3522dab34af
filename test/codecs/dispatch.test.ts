import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';

const decode = (text: string) => decodeReadings(Buffer.from(text), { source: 'gw.csv', receivedAt: 0 });

describe('readings CSV interval_minutes column', () => {
  it('sets each reading’s interval, leaves an empty field to the registry, and quarantines a bad one', () => {
    const r = decode(
      'meter_id,timestamp,value,unit,interval_minutes\n' +
        'M1,2024-03-01T00:00:00Z,0.5,kWh,15\n' +
        'M1,2024-03-01T00:15:00Z,0.5,kWh,\n' +
        '"M,2",2024-03-01T00:30:00Z,0.5,kWh,"30"\n' +
        'M1,2024-03-01T00:45:00Z,0.5,kWh,15min\n' +
        'M1,2024-03-01T01:00:00Z,0.5,kWh,0\n',
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.readings.map((x) => x.intervalMinutes)).toEqual([15, undefined, 30]);
    expect(r.readings[2]!.meterId).toBe('M,2');
    expect(r.failures.map((f) => [f.code, f.raw])).toEqual([
      ['interval_minutes', 'M1,2024-03-01T00:45:00Z,0.5,kWh,15min'],
      ['interval_minutes', 'M1,2024-03-01T01:00:00Z,0.5,kWh,0'],
    ]);
    expect(r.records).toBe(5);
    const numbered = decodeReadings(
      Buffer.from('meter_id,timestamp,value,unit,interval_minutes\nM1,2024-03-01T00:00:00Z,0.5,kWh,x\n'),
      { source: 'gw.csv', receivedAt: 0, lineRefs: true },
    );
    expect(numbered.ok && numbered.failures.map((f) => [f.source, f.line])).toEqual([['gw.csv#2', 2]]);
  });

  it('leaves a CSV without the column untouched', () => {
    const r = decode('meter_id,timestamp,value,unit\nM1,2024-03-01T00:00:00Z,0.5,kWh\n');
    expect(r.ok && r.readings[0]!.intervalMinutes).toBeUndefined();
  });

  it('routes a NEM12 file declared as CSV to the NEM12 codec by its content', () => {
    const values = Array(48).fill('1').join(',');
    const r = decodeReadings(
      Buffer.from(`100,NEM12,1,a,b\n200,N1,E1,E1,E1,N1,M,KWH,30,\n300,20240301,${values},A,,,,\n900\n`),
      {
        source: 'x.csv',
        receivedAt: 0,
        contentType: 'text/csv',
      },
    );
    expect(r.ok && r.contentType).toBe('text/x-nem12');
    expect(r.ok && r.records).toBe(48);
    expect(r.ok && r.meters?.map((m) => m.meterId)).toEqual(['N1-E1']);
  });
});
