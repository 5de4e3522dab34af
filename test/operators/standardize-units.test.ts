import fc from 'fast-check';
import { of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { dataEvent, type FlowEvent, SideInput, taggedEvent, watermarkEvent } from '../../core/index.js';
import { type MeterRegistry, QUARANTINE } from '../../operators/outputs.js';
import { defaultRuleProfile } from '../../operators/rule-profile.js';
import { standardizeUnits } from '../../operators/standardize-units.js';
import type { Reading } from '../../schemas/reading.js';
import { testScheduler } from '../core/helpers.js';
import { PROCESSED_AT, reading, runBatch, T0 } from './fixtures.js';

const units = defaultRuleProfile.units;
const standardize = (items: Reading[], thresholds = units) => runBatch(standardizeUnits(thresholds), items);
const one = (kw: number | null, rawUnit: string) => standardize([reading({ kw, rawUnit })]);

describe('standardizeUnits routing', () => {
  it('quarantines a bad unit ahead of the readings of its batch and passes watermarks and tags on', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const ok = reading({ kw: 1250, rawValue: '1250', rawUnit: 'W' });
      const volts = reading({ kw: 230, rawValue: '230', rawUnit: 'Volts', source: 'gw-1' });
      const upstream = taggedEvent(QUARANTINE, []);
      const input = cold<FlowEvent<Reading>>('a 9ms b 9ms c|', {
        a: dataEvent([ok, volts]),
        b: watermarkEvent(T0),
        c: upstream,
      });
      expectObservable(input.pipe(standardizeUnits(units))).toBe('(qa) 6ms b 9ms c|', {
        q: taggedEvent(QUARANTINE, [
          {
            meterId: 'MTR-000001',
            ts: T0,
            raw: 'MTR-000001,2024-03-04T00:00:00Z,230,Volts',
            reasons: ['invalid_unit:Volts'],
            source: 'gw-1',
            quarantinedAt: PROCESSED_AT,
          },
        ]),
        a: dataEvent([expect.objectContaining({ kw: 1.25, flags: ['unit_converted'] }) as Reading]),
        b: watermarkEvent(T0),
        c: upstream,
      });
    });
  });
});

describe('standardizeUnits energy over an interval', () => {
  const withInterval = (kw: number, rawUnit: string, intervalMinutes?: number) =>
    standardize([{ ...reading({ kw, rawValue: String(kw), rawUnit }), intervalMinutes } as Reading]);

  it.each([
    ['kWh', 0.5, 15, 2, ['energy_converted']],
    ['KWH', 300, 30, 600, ['energy_converted']],
    ['kWh', 0.1, 5, 1.2, ['energy_converted']],
    ['kWh', 2.5, 60, 2.5, ['energy_converted']],
    ['Wh', 750, 60, 0.75, ['energy_converted']],
    ['WH', 250, 15, 1, ['energy_converted']],
    ['wh', 250, 15, 1, ['energy_converted']],
    ['MWh', 0.01, 30, 20, ['energy_converted']],
    ['MWH', 0.01, 30, 20, ['energy_converted']],
    ['kWh', 1, 10, 6, ['energy_converted']],
  ])('%j %d over %d min → %d kW %j', (rawUnit, value, minutes, expected, flags) => {
    const r = withInterval(value, rawUnit, minutes);
    expect(r.tagged(QUARANTINE)).toEqual([]);
    expect(r.main).toEqual([
      expect.objectContaining({ kw: expected, flags, rawUnit, rawValue: String(value) }),
    ]);
  });

  it.each([
    ['kWh', 2.5, 2.5, []],
    ['Wh', 2500, 2.5, ['unit_converted']],
    ['MWh', 0.0025, 2.5, ['unit_converted']],
  ])('without an interval %j %d is taken as an hour: %d kW %j', (rawUnit, value, expected, flags) => {
    const r = withInterval(value, rawUnit);
    expect(r.main).toEqual([expect.objectContaining({ kw: expected, flags })]);
  });

  it("falls back on the meter's cadence in the registry", () => {
    const meter = {
      meterId: 'MTR-000001',
      region: 'r',
      neighborhood: 'n',
      meterType: 'unknown' as const,
      vacant: false,
      maxKw: null,
      intervalMinutes: 15,
    };
    const registry = new SideInput<MeterRegistry>('registry', of(new Map([[meter.meterId, meter]])));
    registry.connect((err) => {
      throw err;
    });
    const r = runBatch(standardizeUnits(units, registry), [reading({ kw: 0.5, rawUnit: 'kWh' })]);
    expect(r.main).toEqual([expect.objectContaining({ kw: 2, flags: ['energy_converted'] })]);
    // The reading's own interval wins over the registry's.
    const own = runBatch(standardizeUnits(units, registry), [
      { ...reading({ kw: 0.5, rawUnit: 'kWh' }), intervalMinutes: 30 } as Reading,
    ]);
    expect(own.main).toEqual([expect.objectContaining({ kw: 1 })]);
  });

  it('leaves a NULL energy reading untouched', () => {
    const r = withInterval(0, 'kWh', 30);
    expect(r.main[0]!.kw).toBe(0);
    const missing = standardize([
      { ...reading({ kw: null, rawValue: '', rawUnit: 'kWh' }), intervalMinutes: 30 } as Reading,
    ]);
    expect(missing.main).toEqual([expect.objectContaining({ kw: null, flags: [] })]);
  });
});

describe('standardizeUnits known units', () => {
  it.each([
    ['W', 2500, 2.5, ['unit_converted']],
    ['w', 2500, 2.5, ['unit_converted']],
    ['Watt', 1250, 1.25, ['unit_converted']],
    ['Watts', 3250, 3.25, ['unit_converted']],
    ['watts', 3250, 3.25, ['unit_converted']],
    ['WATTS', 3250, 3.25, ['unit_converted']],
    ['wAtTs', 3250, 3.25, ['unit_converted']],
    ['kW', 2.5, 2.5, []],
    ['KW', 2.5, 2.5, []],
    ['kw', 2.5, 2.5, []],
    [' kW ', 2.5, 2.5, []],
    ['Kilowatt', 2.5, 2.5, []],
    ['Kilowatts', 2.5, 2.5, []],
    ['KILOWATTS', 2.5, 2.5, []],
    ['kWh', 2.5, 2.5, []], // an hourly kWh is the hour's mean kW
    ['KWH', 2.5, 2.5, []],
    ['KWh', 2.5, 2.5, []],
  ])('%j: %d → %d kW %j', (rawUnit, kw, expected, flags) => {
    const r = one(kw, rawUnit);
    expect(r.tagged(QUARANTINE)).toEqual([]);
    expect(r.main).toEqual([expect.objectContaining({ kw: expected, flags, rawUnit })]);
  });

  it.each(['Volts', 'V', 'MW', 'kVA', 'kVArh', 'k W', 'kilo watt', '%'])(
    '%j is quarantined with its name',
    (rawUnit) => {
      const r = one(5, rawUnit);
      expect(r.main).toEqual([]);
      expect(r.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([[`invalid_unit:${rawUnit.trim()}`]]);
    },
  );

  it('keeps a garbage unit out of the reason beyond 32 characters', () => {
    const r = one(5, 'x'.repeat(1000));
    expect(r.tagged(QUARANTINE)[0]!.reasons).toEqual([`invalid_unit:${'x'.repeat(32)}`]);
  });

  it('never cuts the reason inside a surrogate pair, and writes a lone surrogate as U+FFFD', () => {
    const emoji = one(5, `${'u'.repeat(31)}😀`);
    expect(emoji.tagged(QUARANTINE)[0]!.reasons).toEqual([`invalid_unit:${'u'.repeat(31)}`]);
    const pairs = one(5, '😀'.repeat(20));
    expect(pairs.tagged(QUARANTINE)[0]!.reasons).toEqual([`invalid_unit:${'😀'.repeat(16)}`]);
    const lone = one(5, 'k\udc00');
    expect(lone.tagged(QUARANTINE)[0]!.reasons).toEqual(['invalid_unit:k\ufffd']);
  });
});

describe('standardizeUnits missing unit inference (< 10 kW, > 1000 W, between ambiguous)', () => {
  it.each([
    [0, 0, ['unit_inferred']],
    [9.9999, 9.9999, ['unit_inferred']],
    [1000.0001, 1, ['unit_inferred', 'unit_converted']],
    [1250, 1.25, ['unit_inferred', 'unit_converted']],
    [-5, -5, ['unit_inferred']], // negative: validateReading rejects it as negative_value
  ])('%d is taken as %d kW %j', (kw, expected, flags) => {
    const r = one(kw, '');
    expect(r.main).toEqual([expect.objectContaining({ kw: expected, flags })]);
  });

  it.each([10, 10.0001, 500, 999.9999, 1000])('%d is ambiguous and quarantined', (kw) => {
    const r = one(kw, '');
    expect(r.main).toEqual([]);
    expect(r.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([['ambiguous_unit']]);
  });

  it('uses the thresholds given', () => {
    const thresholds = { inferKwBelow: 50, inferWattsAbove: 500, decimals: 4 };
    expect(standardize([reading({ kw: 49, rawUnit: '' })], thresholds).main[0]!.kw).toBe(49);
    expect(standardize([reading({ kw: 501, rawUnit: '' })], thresholds).main[0]!.kw).toBe(0.501);
    expect(standardize([reading({ kw: 50, rawUnit: '' })], thresholds).tagged(QUARANTINE)).toHaveLength(1);
  });
});

describe('standardizeUnits rounding (B1.3)', () => {
  it.each([
    [2.49999, 'kW', 2.5],
    [1.00005, 'kW', 1.0001],
    [0.00465, 'kW', 0.0047], // a decimal tie stored just below it (46.4999…) still rounds up
    [0.00815, 'kW', 0.0082],
    [1.00004, 'kW', 1],
    [0.00004, 'kW', 0],
    [3250.5, 'W', 3.2505],
    [1234567.8, 'W', 1234.5678],
    [1e300, 'kW', 1e300], // beyond the precision of fractions: untouched, not Infinity
  ])('%d %s → %d', (kw, rawUnit, expected) => {
    expect(one(kw, rawUnit).main[0]!.kw).toBe(expected);
  });

  it('rounds to the configured number of decimals', () => {
    expect(standardize([reading({ kw: 1.23456 })], { ...units, decimals: 2 }).main[0]!.kw).toBe(1.23);
  });

  it('never produces -0', () => {
    expect(Object.is(one(-0.00001, 'kW').main[0]!.kw, 0)).toBe(true);
  });
});

describe('standardizeUnits NULL readings', () => {
  it.each(['kW', 'W', '', 'Volts'])('a NULL reading with unit %j passes untouched', (rawUnit) => {
    const r = standardize([reading({ kw: null, rawValue: '', rawUnit, flags: ['MISSING_READING'] })]);
    expect(r.tagged(QUARANTINE)).toEqual([]);
    expect(r.main).toEqual([expect.objectContaining({ kw: null, flags: ['MISSING_READING'] })]);
  });
});

describe('standardizeUnits properties', () => {
  it('never throws, routes every reading exactly once, and emits kW rounded to the decimals', () => {
    const unit = fc.oneof(
      fc.constantFrom('W', 'kW', 'kWh', 'Watts', 'KILOWATT', '', ' w ', 'Volts'),
      fc.string({ maxLength: 12 }),
    );
    const value = fc.oneof(fc.double(), fc.double({ min: -2000, max: 2000, noNaN: true }), fc.constant(null));
    fc.assert(
      fc.property(fc.array(fc.tuple(value, unit), { maxLength: 50 }), (inputs) => {
        const r = standardize(inputs.map(([kw, rawUnit]) => reading({ kw, rawUnit })));
        expect(r.main.length + r.tagged(QUARANTINE).length).toBe(inputs.length);
        for (const q of r.tagged(QUARANTINE)) expect(q.reasons).toHaveLength(1);
        for (const out of r.main) {
          if (out.kw === null || !Number.isFinite(out.kw)) continue;
          // Rounded to 4 decimals up to what a double can hold: at 4e9 kW one
          // ulp of kw × 1e4 is already 0.008, so the tolerance scales with it.
          const scaled = out.kw * 1e4;
          if (!Number.isFinite(scaled)) continue; // beyond 1.8e304 kW there is nothing left to round
          const ulp = Math.abs(scaled) * Number.EPSILON * 2;
          expect(Math.abs(scaled - Math.round(scaled))).toBeLessThanOrEqual(Math.max(1e-3, ulp));
        }
      }),
    );
  });
});
