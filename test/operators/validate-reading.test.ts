import fc from 'fast-check';
import { BehaviorSubject, of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { dataEvent, type FlowEvent, SideInput, taggedEvent, watermarkEvent } from '../../core/index.js';
import { type MeterRegistry, QUARANTINE } from '../../operators/outputs.js';
import type { ParsedReading } from '../../operators/parse-reading.js';
import { defaultRuleProfile, type RuleProfile } from '../../operators/rule-profile.js';
import { validateReading } from '../../operators/validate-reading.js';
import { testScheduler } from '../core/helpers.js';
import { DAY, HOUR, PROCESSED_AT, reading, registryOf, runBatch, runFlow, T0 } from './fixtures.js';

const RECEIVED = T0 + HOUR;
const limits = defaultRuleProfile.validation;
const EARLIEST = Date.parse(limits.earliestValid);

/** A reading as parseReading hands it on: received an hour after T0 unless told otherwise. */
const parsed = (partial: Partial<ParsedReading> = {}): ParsedReading => ({
  ...reading(partial),
  receivedAt: partial.receivedAt ?? RECEIVED,
});

function registryInput(registry: MeterRegistry): SideInput<MeterRegistry> {
  const side = new SideInput('registry', of(registry));
  side.connect((err) => {
    throw err;
  });
  return side;
}

const registry = registryInput(
  registryOf(
    { meterId: 'MTR-000001' },
    { meterId: 'MTR-COM', meterType: 'commercial' },
    { meterId: 'MTR-SMALL', maxKw: 5 },
    { meterId: 'MTR-BIGHOME', maxKw: 30 },
  ),
);

const validate = (
  items: ParsedReading[],
  opts: { replay?: boolean; thresholds?: RuleProfile['validation'] } = {},
) => runBatch(validateReading(registry, opts.thresholds ?? limits, { replay: opts.replay ?? false }), items);
const reasonsOf = (r: ParsedReading, opts?: { replay?: boolean }) =>
  validate([r], opts)
    .tagged(QUARANTINE)
    .map((q) => q.reasons);
const routeOf = (r: ParsedReading, opts?: { replay?: boolean }): 'main' | 'over_limit' | string => {
  const out = validate([r], opts);
  if (out.main.length === 1) return out.main[0]!.flags.includes('over_limit') ? 'over_limit' : 'main';
  return out.tagged(QUARANTINE)[0]!.reasons.join('+');
};

describe('validateReading routing', () => {
  it('sends rejects to QUARANTINE and keeps lone over-limit readings in stream order, flagged over_limit', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const ok = parsed({ kw: 3 });
      const over = parsed({ kw: 25 });
      const unknown = parsed({ meterId: 'MTR-404', kw: 1, rawValue: '1', rawUnit: 'kW' });
      const input = cold<FlowEvent<ParsedReading>>('a 9ms b|', {
        a: dataEvent([ok, over, unknown]),
        b: watermarkEvent(T0),
      });
      expectObservable(input.pipe(validateReading(registry, limits, { replay: false }))).toBe('(qa) 6ms b|', {
        q: taggedEvent(QUARANTINE, [
          {
            meterId: 'MTR-404',
            ts: T0,
            raw: 'MTR-404,2024-03-04T00:00:00Z,1,kW',
            reasons: ['unknown_meter'],
            source: 'test',
            quarantinedAt: PROCESSED_AT,
          },
        ]),
        a: dataEvent([ok, { ...over, flags: ['over_limit'] }]),
        b: watermarkEvent(T0),
      });
    });
  });

  it('reads the registry once per batch, so an update applies from the next batch', () => {
    const updates = new BehaviorSubject<MeterRegistry>(registryOf({ meterId: 'MTR-000001' }));
    const side = new SideInput('registry', updates);
    side.connect(() => {});
    const newcomer = () => parsed({ meterId: 'MTR-NEW' });
    const events: FlowEvent<ParsedReading>[] = [dataEvent([newcomer()])];
    const op = validateReading(side, limits, { replay: false });
    const first = runFlow(op, events);
    updates.next(registryOf({ meterId: 'MTR-000001' }, { meterId: 'MTR-NEW' }));
    const second = runFlow(op, [dataEvent([newcomer()])]);
    expect(first.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([['unknown_meter']]);
    expect(second.main).toHaveLength(1);
  });
});

describe('validateReading registry and values', () => {
  it('rejects a meter that is not in the registry, even with an empty id or a NULL reading', () => {
    expect(reasonsOf(parsed({ meterId: 'MTR-404' }))).toEqual([['unknown_meter']]);
    expect(reasonsOf(parsed({ meterId: '' }))).toEqual([['unknown_meter']]);
    expect(reasonsOf(parsed({ meterId: 'mtr-000001' }))).toEqual([['unknown_meter']]);
    expect(reasonsOf(parsed({ meterId: 'MTR-404', kw: null }))).toEqual([['unknown_meter']]);
  });

  it.each([
    [-0.0001, 'negative_value'],
    [-5, 'negative_value'],
    [0, 'main'],
    [0.0001, 'main'],
  ])('%d kW → %s', (kw, route) => {
    expect(routeOf(parsed({ kw }))).toBe(route);
  });

  const RES = limits.residentialMaxKw;
  const COM = limits.commercialMaxKw;
  it.each([
    // the residential default (20 kW): at the limit passes
    ['MTR-000001', RES - 0.0001, 'main'],
    ['MTR-000001', RES, 'main'],
    ['MTR-000001', RES + 0.0001, 'over_limit'],
    // the commercial default
    ['MTR-COM', COM - 0.0001, 'main'],
    ['MTR-COM', COM, 'main'],
    ['MTR-COM', COM + 0.0001, 'over_limit'],
    // registry max_kw overrides the type's default, both ways
    ['MTR-SMALL', 5, 'main'],
    ['MTR-SMALL', 5.0001, 'over_limit'],
    ['MTR-BIGHOME', 30, 'main'],
    ['MTR-BIGHOME', 30.0001, 'over_limit'],
  ])('%s at %d kW → %s', (meterId, kw, route) => {
    expect(routeOf(parsed({ meterId, kw }))).toBe(route);
  });

  it('judges a residential meter and a commercial meter by different defaults', () => {
    expect(RES).toBeLessThan(COM);
    const between = (RES + COM) / 2;
    expect(routeOf(parsed({ kw: between }))).toBe('over_limit');
    expect(routeOf(parsed({ meterId: 'MTR-COM', kw: between }))).toBe('main');
  });

  it('uses the configured limits', () => {
    const thresholds = { ...limits, residentialMaxKw: 50 };
    expect(validate([parsed({ kw: 50 })], { thresholds }).main).toHaveLength(1);
    expect(validate([parsed({ kw: 50.0001 })], { thresholds }).main[0]!.flags).toEqual(['over_limit']);
  });

  it('lets a NULL reading of a known meter pass the value checks', () => {
    expect(routeOf(parsed({ kw: null, flags: ['MISSING_READING'] }))).toBe('main');
  });
});

describe('validateReading timestamp sanity (against receivedAt, not the wall clock)', () => {
  it.each([
    [EARLIEST - 1, 'clock_reset'],
    [EARLIEST, 'main'],
    [0, 'clock_reset'], // 1970-01-01
    [Date.UTC(2000, 0, 1), 'clock_reset'],
  ])('ts %d → %s', (ts, route) => {
    // received right after, so neither backdated nor future interferes
    expect(routeOf(parsed({ ts, receivedAt: ts + 1 }), { replay: true })).toBe(route);
  });

  it.each([
    [RECEIVED + HOUR - 1, 'main'],
    [RECEIVED + HOUR, 'main'],
    [RECEIVED + HOUR + 1, 'future_timestamp'],
    [RECEIVED + DAY, 'future_timestamp'],
  ])('ts %d (received %d + 1 h tolerance) → %s', (ts, route) => {
    expect(routeOf(parsed({ ts }))).toBe(route);
  });

  it('judges a future timestamp in replay mode too', () => {
    expect(routeOf(parsed({ ts: RECEIVED + HOUR + 1 }), { replay: true })).toBe('future_timestamp');
  });

  it.each([
    [RECEIVED - 7 * DAY + 1, false],
    [RECEIVED - 7 * DAY, false],
    [RECEIVED - 7 * DAY - 1, true],
  ])('ts %d (7 days before receipt is the edge) → backdated %s', (ts, backdated) => {
    const [r] = validate([parsed({ ts })]).main;
    expect(r!.flags).toEqual(backdated ? ['backdated'] : []);
    expect(r!.warnings).toBe(backdated ? 1 : 0);
  });

  it('does not flag backdated readings in replay mode', () => {
    const [r] = validate([parsed({ ts: RECEIVED - 30 * DAY })], { replay: true }).main;
    expect(r!.flags).toEqual([]);
    expect(r!.warnings).toBe(0);
  });

  it('adds to the flags and warnings a reading already carries', () => {
    const [r] = validate([parsed({ ts: RECEIVED - 8 * DAY, flags: ['unit_converted'], warnings: 1 })]).main;
    expect(r!.flags).toEqual(['unit_converted', 'backdated']);
    expect(r!.warnings).toBe(2);
  });

  it('flags a backdated over-limit reading with both flags', () => {
    const out = validate([parsed({ ts: RECEIVED - 8 * DAY, kw: 21 })]);
    expect(out.main).toEqual([expect.objectContaining({ flags: ['backdated', 'over_limit'], warnings: 1 })]);
  });
});

describe('validateReading accumulated reasons', () => {
  it('collects every reason of a reading in one quarantine record', () => {
    expect(reasonsOf(parsed({ meterId: 'MTR-404', kw: -1, ts: 0, receivedAt: RECEIVED }))).toEqual([
      ['unknown_meter', 'negative_value', 'clock_reset'],
    ]);
    expect(reasonsOf(parsed({ kw: -1, ts: RECEIVED + 2 * HOUR }))).toEqual([
      ['negative_value', 'future_timestamp'],
    ]);
  });

  it('quarantines an over-limit reading with another problem, with both reasons', () => {
    const out = validate([parsed({ kw: 25, ts: RECEIVED + 2 * HOUR })]);
    expect(out.main).toEqual([]);
    expect(out.tagged(QUARANTINE).map((q) => q.reasons)).toEqual([['out_of_range', 'future_timestamp']]);
  });

  it('routes every reading to exactly one of main and QUARANTINE', () => {
    const meterId = fc.constantFrom('MTR-000001', 'MTR-COM', 'MTR-SMALL', 'MTR-404');
    const kw = fc.oneof(fc.constant(null), fc.double({ min: -10, max: 300, noNaN: true }));
    const ts = fc.integer({ min: EARLIEST - DAY, max: RECEIVED + 2 * DAY });
    fc.assert(
      fc.property(
        fc.array(fc.record({ meterId, kw, ts }), { maxLength: 40 }),
        fc.boolean(),
        (items, replay) => {
          const out = validate(
            items.map((i) => parsed(i)),
            { replay },
          );
          const routed = out.main.length + out.tagged(QUARANTINE).length;
          expect(routed).toBe(items.length);
          for (const q of out.tagged(QUARANTINE)) expect(q.reasons.length).toBeGreaterThan(0);
        },
      ),
    );
  });
});
