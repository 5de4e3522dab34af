import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemory } from '../../pipelines/in-memory.js';
import type { MeterInfo } from '../../schemas/reading.js';

/**
 * A gateway file of 15-minute kWh goes through the whole graph as power: the CSV's `interval_minutes`,
 * else the registry's cadence, turns each interval's energy into its mean kW, so the hourly mean is the
 * hour's energy (kWh) — not a quarter of it, as when kWh was taken as kW.
 */
describe('energy readings through the meter-quality graph', () => {
  const meter = (meterId: string, intervalMinutes?: number): MeterInfo => ({
    meterId,
    region: 'r',
    neighborhood: meterId,
    meterType: 'residential',
    vacant: false,
    maxKw: null,
    ...(intervalMinutes === undefined ? {} : { intervalMinutes }),
  });
  const registry: MeterRegistry = new Map([
    ['CSV-1', meter('CSV-1')],
    ['REG-1', meter('REG-1', 15)],
    ['HOURLY-1', meter('HOURLY-1')],
  ]);

  it('stores kW = kWh × 60 / interval, flagged energy_converted, and hourly means equal the energy of the hour', () => {
    const lines = ['meter_id,timestamp,value,unit,interval_minutes'];
    for (let q = 0; q < 8; q++) {
      const ts = new Date(Date.UTC(2024, 2, 4, 0, q * 15)).toISOString();
      lines.push(`CSV-1,${ts},0.25,kWh,15`, `REG-1,${ts},250,Wh,`);
      if (q % 4 === 0) lines.push(`HOURLY-1,${ts},1,kWh,`);
    }
    const decoded = decodeReadings(Buffer.from(`${lines.join('\n')}\n`), {
      source: 'gw.csv',
      receivedAt: Date.UTC(2024, 2, 4, 3),
    });
    if (!decoded.ok) throw new Error(decoded.failure.reason);
    expect(decoded.failures).toEqual([]);
    const out = runGraphInMemory([decoded.readings], registry, resolveRuleProfile());
    expect(out.quarantine).toEqual([]);
    const measured = out.readings.filter((r) => r.status === 'measured');
    for (const id of ['CSV-1', 'REG-1']) {
      const rows = measured.filter((r) => r.meterId === id);
      expect(rows).toHaveLength(8);
      for (const r of rows) {
        expect(r.kw).toBe(1);
        expect(r.flags).toContain('energy_converted');
      }
    }
    expect(measured.filter((r) => r.meterId === 'REG-1')[0]).toMatchObject({
      rawValue: '250',
      rawUnit: 'Wh',
    });
    // No interval anywhere: an hourly kWh is the hour's mean kW, unflagged, as before.
    const hourly = measured.filter((r) => r.meterId === 'HOURLY-1');
    expect(hourly.map((r) => [r.kw, r.flags.includes('energy_converted')])).toEqual([
      [1, false],
      [1, false],
    ]);
    const hours = out.hourly.filter((h) => h.meterId !== 'HOURLY-1');
    expect(hours.length).toBe(4);
    for (const h of hours) expect(h.avgKw).toBe(1);
  });
});
