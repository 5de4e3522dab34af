/** Optional measurement columns: decoded from CSV and JSON, validated at their range bounds, carried to the stored reading. */
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemory } from '../../pipelines/in-memory.js';
import type { RawReading } from '../../schemas/reading.js';

const decode = (text: string, contentType?: string) => {
  const r = decodeReadings(Buffer.from(text), {
    source: 'f.csv',
    receivedAt: Date.UTC(2024, 2, 11, 12),
    ...(contentType ? { contentType } : {}),
  });
  if (!r.ok) throw new Error(r.failure.reason);
  return r;
};

const registry: MeterRegistry = new Map([
  [
    'M1',
    {
      meterId: 'M1',
      region: 'north',
      neighborhood: 'n',
      meterType: 'residential',
      vacant: false,
      maxKw: null,
    },
  ],
]);

describe('measurement columns', () => {
  it('are read from CSV and JSON as sent, and absent without the columns', () => {
    const csv = decode(
      'meter_id,timestamp,value,unit,voltage,current,power_factor,frequency,temperature,humidity\n' +
        'M1,2024-03-11T10:00:00Z,1.5,kW,231.2,6.5,0.95,50.0,21.5,40\n' +
        'M1,2024-03-11T10:15:00Z,1.5,kW,,,,,,\n',
    );
    expect(csv.readings[0]!.measurements).toEqual({
      voltage: '231.2',
      current: '6.5',
      power_factor: '0.95',
      frequency: '50.0',
      temperature: '21.5',
      humidity: '40',
    });
    expect(csv.readings[1]!.measurements).toBeUndefined();
    const json = decode(
      '[{"meter_id":"M1","timestamp":"2024-03-11T10:00:00Z","value":1.5,"unit":"kW","voltage":229,"temperature":"-3.5"}]',
      'application/json',
    );
    expect(json.readings[0]!.measurements).toEqual({ voltage: '229', temperature: '-3.5' });
    const plain = decode('meter_id,timestamp,value,unit\nM1,2024-03-11T10:00:00Z,1.5,kW\n');
    expect(plain.readings[0]).not.toHaveProperty('measurements');
  });

  it('valid measurements are stored; one out of range or unreadable quarantines the reading with every reason', () => {
    const p = defaultRuleProfile.measurements;
    const at = (i: number) => `2024-03-11T10:${String(i * 15).padStart(2, '0')}:00Z`;
    const rows: [string, string][] = [
      [`${p.voltageMinV}`, `${p.humidityMaxPct}`], // bounds are plausible
      [`${p.voltageMinV - 0.1}`, ''],
      ['abc', `${p.humidityMaxPct + 0.5}`],
      ['', ''],
    ];
    const csv = `meter_id,timestamp,value,unit,voltage,humidity\n${rows.map(([v, h], i) => `M1,${at(i)},1,kW,${v},${h}`).join('\n')}\n`;
    const batch: RawReading[] = decode(csv).readings;
    const out = runGraphInMemory([batch], registry, defaultRuleProfile);
    const stored = out.readings.filter((r) => r.status === 'measured');
    expect(stored.map((r) => [new Date(r.ts).toISOString().slice(11, 16), r.measurements])).toEqual([
      ['10:00', { voltage: p.voltageMinV, humidity: p.humidityMaxPct }],
      ['10:45', undefined],
    ]);
    expect(out.quarantine.map((q) => q.reasons)).toEqual([
      [`implausible_voltage:${p.voltageMinV - 0.1} outside [${p.voltageMinV}, ${p.voltageMaxV}]`],
      ['invalid_voltage:"abc"', `implausible_humidity:${p.humidityMaxPct + 0.5} outside [0, 100]`],
    ]);
    // Balance: every record is stored or quarantined.
    expect(stored.length + out.quarantine.length).toBe(batch.length);
  });
});
