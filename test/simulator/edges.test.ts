import { describe, expect, it } from 'vitest';
import {
  createSimulation,
  faultKinds,
  type SimulationOptions,
  SimulationOptionsError,
} from '../../simulator/index.js';

describe('small and short simulations', () => {
  it.each([
    [1, 1],
    [7, 1],
    [45, 2],
    [199, 3],
  ])('%i meters × %i days run, and say what they could not inject', (meters, days) => {
    const simulation = createSimulation({ meters, days, start: '2024-12-30', seed: meters });
    let lines = 0;
    for (const file of simulation.hours()) lines += file.lines;
    expect(lines).toBeGreaterThan(meters * days * 96 * 0.5);
    const { injected, skipped, shortfall } = simulation.labels.summary;
    for (const kind of faultKinds) {
      // Every kind is either injected, skipped with a reason, or short of meters with the count asked.
      const accounted =
        injected[kind] !== undefined || skipped[kind] !== undefined || shortfall[kind] !== undefined;
      expect(accounted, kind).toBe(true);
    }
    if (days < 3) expect(skipped.zero).toMatch(/54 h/);
  });

  it('injects nothing when both rates are 0, leaving only unit variations', () => {
    const simulation = createSimulation({
      meters: 300,
      days: 2,
      start: '2024-03-11',
      seed: 1,
      faultRate: 0,
      anomalyRate: 0,
    });
    const kinds = new Set(simulation.labels.labels.filter((l) => l.role === 'injected').map((l) => l.kind));
    expect(kinds).toEqual(new Set(['unit_w', 'missing_unit']));
  });

  it('takes exact counts per kind', () => {
    const simulation = createSimulation({
      meters: 300,
      days: 7,
      start: '2024-03-11',
      seed: 1,
      faultCounts: { zero: 5, stuck: 0 },
      anomalyCounts: { unknown_meter: 2 },
    });
    expect(simulation.labels.summary.injected.zero?.meters).toBe(5);
    expect(simulation.labels.summary.injected.stuck).toBeUndefined();
    expect(simulation.labels.summary.injected.unknown_meter?.labels).toBe(2);
  });

  it.each<[Record<string, unknown>, string]>([
    [{ meters: 1.5 }, 'meters'],
    [{ days: 0 }, 'days'],
    [{ start: '2024-03-11T00:30:00Z' }, 'start'],
    [{ start: '1999-01-01' }, 'start'],
    [{ seed: -1 }, 'seed'],
    [{ gatewaySize: 0 }, 'gatewaySize'],
    [{ faultCounts: { bogus: 1 } }, 'faultCounts.bogus'],
    [{ residentialLimitKw: 5 }, 'residentialLimitKw'],
    [{ meters: 900_000, days: 30 }, 'meters'],
  ])('rejects %j naming the option', (override, option) => {
    // Deliberately invalid options, as an untyped caller (e.g. JSON) could pass them.
    const options = { meters: 10, days: 1, start: '2024-03-11', seed: 1, ...override } as SimulationOptions;
    const attempt = () => createSimulation(options);
    expect(attempt).toThrow(SimulationOptionsError);
    try {
      attempt();
    } catch (error) {
      expect((error as SimulationOptionsError).option).toBe(option);
    }
  });
});

describe('half-hourly kWh payloads (halfHourlyKwh)', () => {
  /** meterId → timestamp → [value, unit] of every line of a 60-meter day. */
  function lines(halfHourlyKwh: boolean): Map<string, Map<string, [number, string]>> {
    const sim = createSimulation({ meters: 60, days: 1, start: '2024-03-11', seed: 5, halfHourlyKwh });
    const out = new Map<string, Map<string, [number, string]>>();
    for (const file of sim.hours()) {
      for (const line of file.csv.split(/\r?\n/).slice(1)) {
        const [id, ts, value, unit] = line.replaceAll('"', '').split(',');
        if (!id?.startsWith('MTR-') || value === undefined || value === '') continue;
        const meter = out.get(id) ?? new Map<string, [number, string]>();
        meter.set(ts!.slice(0, 19), [Number(value), unit ?? '']);
        out.set(id, meter);
      }
    }
    return out;
  }

  it('send half-hourly meters’ energy per 30 minutes in kWh: half the mean kW the default sends', () => {
    const kw = lines(false);
    const kwh = lines(true);
    let halfHourly = 0;
    for (const [id, readings] of kwh) {
      if (readings.size !== 48) continue;
      halfHourly += 1;
      for (const [ts, [value, unit]] of readings) {
        expect(unit, `${id} ${ts}`).toBe('kWh');
        const [kwValue, kwUnit] = kw.get(id)!.get(ts)!;
        // In watts, or without a unit where the pipeline infers watts (> 1000).
        const watts = ['W', 'Watts', 'watt'].includes(kwUnit) || (kwUnit === '' && kwValue > 1000);
        const meanKw = watts ? kwValue / 1000 : kwValue;
        expect(value * 2).toBeCloseTo(meanKw, 4);
      }
    }
    expect(halfHourly).toBeGreaterThan(5);
    // 15-minute meters keep kW, never spelled kWh.
    for (const readings of kwh.values())
      if (readings.size === 96) for (const [, [, unit]] of readings) expect(unit).not.toBe('kWh');
  });
});
