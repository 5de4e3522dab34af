/** The exclusion judge's boundaries: local dates across daylight saving, regional calendars, thresholds, windows. */
import fc from 'fast-check';
import { BehaviorSubject, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { parseMaintenanceCsv } from '../../codecs/maintenance-windows.js';
import { type FlowEvent, SideInput, StateStore } from '../../core/index.js';
import { localHourOf } from '../../operators/local-time.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { excludePeakHours, exclusionJudge, weatherLookup } from '../../operators/peak-exclusions.js';
import { defaultRuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';
import type { MaintenanceWindow } from '../../schemas/external.js';
import type { HourlyConsumption, MeterInfo } from '../../schemas/reading.js';
import { data } from '../core/helpers.js';

const H = 3_600_000;
const DAY_MS = 24 * H;
const judge = exclusionJudge(defaultRuleProfile.exclusions);
const none = weatherLookup([]);

describe('localHourOf', () => {
  it('follows Europe/Berlin across both daylight-saving changes', () => {
    expect(localHourOf(Date.UTC(2024, 2, 31, 0), 'Europe/Berlin')).toEqual({ date: '2024-03-31', hour: 1 });
    expect(localHourOf(Date.UTC(2024, 2, 31, 1), 'Europe/Berlin')).toEqual({ date: '2024-03-31', hour: 3 });
    expect(localHourOf(Date.UTC(2024, 9, 27, 0), 'Europe/Berlin')).toEqual({ date: '2024-10-27', hour: 2 });
    expect(localHourOf(Date.UTC(2024, 9, 27, 1), 'Europe/Berlin')).toEqual({ date: '2024-10-27', hour: 2 });
    expect(localHourOf(Date.UTC(2024, 6, 1, 22), 'Europe/Berlin').date).toBe('2024-07-02');
    expect(localHourOf(Date.UTC(2024, 0, 1, 22), 'Europe/Berlin').date).toBe('2024-01-01');
  });
});

describe('exclusionJudge', () => {
  it('uses the region as its calendar when it is a calendar code, the profile calendar otherwise', () => {
    // 6 January (Epiphany) is a public holiday in Bavaria, not in Berlin; local midnight is 23:00 UTC before.
    const epiphany = Date.UTC(2024, 0, 5, 23);
    expect(judge('DE-BY', epiphany, none, [])).toEqual([
      { reason: 'excluded_holiday', detail: 'Heilige Drei Könige' },
    ]);
    expect(judge('DE-BE', epiphany, none, [])).toEqual([]);
    expect(judge('DE-BY', epiphany - H, none, [])).toEqual([]);
    expect(judge('north', Date.UTC(2024, 11, 25, 12), none, [])[0]?.reason).toBe('excluded_holiday');
    const off = exclusionJudge({ ...defaultRuleProfile.exclusions, holidayCalendar: '' });
    expect(off('north', Date.UTC(2024, 11, 25, 12), none, [])).toEqual([]);
  });

  it('excludes weather strictly above 35 °C and strictly below −10 °C', () => {
    const t = Date.UTC(2024, 6, 10, 14);
    const at = (c: number) =>
      judge('north', t, weatherLookup([{ region: 'north', ts: t, temperatureC: c }]), []);
    expect(at(35)).toEqual([]);
    expect(at(35.1)).toEqual([{ reason: 'excluded_weather', detail: '35.1 °C' }]);
    expect(at(-10)).toEqual([]);
    expect(at(-10.1)[0]?.reason).toBe('excluded_weather');
    expect(judge('south', t, weatherLookup([{ region: 'north', ts: t, temperatureC: 40 }]), [])).toEqual([]);
  });

  it('excludes hours overlapping a maintenance window of the region', () => {
    const w = {
      region: 'north',
      start: Date.UTC(2024, 6, 10, 10, 30),
      end: Date.UTC(2024, 6, 10, 12),
      reason: 'm',
    };
    const hourAt = (h: number) => Date.UTC(2024, 6, 10, h);
    expect(judge('north', hourAt(9), none, [w])).toEqual([]);
    expect(judge('north', hourAt(10), none, [w])[0]?.reason).toBe('excluded_maintenance');
    expect(judge('north', hourAt(11), none, [w])[0]?.reason).toBe('excluded_maintenance');
    expect(judge('north', hourAt(12), none, [w])).toEqual([]);
    expect(judge('south', hourAt(11), none, [w])).toEqual([]);
  });

  it('the profile refuses a fixed-offset zone name, a bad calendar and inverted thresholds', () => {
    expect(() => resolveRuleProfile({ exclusions: { timeZone: 'Mars/Olympus' } })).toThrow(/IANA/);
    expect(() => resolveRuleProfile({ exclusions: { holidayCalendar: 'germany' } })).toThrow(/calendar/);
    expect(() => resolveRuleProfile({ exclusions: { hotAboveC: -20 } })).toThrow(/coldBelowC/);
  });
});

describe('parseMaintenanceCsv', () => {
  it('reads windows in any column order and names the lines it cannot use', () => {
    const { windows, errors } = parseMaintenanceCsv(
      'reason,region,end,start\n' +
        'transformer swap,north,2024-05-03T19:00:00Z,2024-05-03T15:00:00Z\n' +
        ',south,2024-05-03T19:00:00+02:00,2024-05-03T15:00:00+02:00\n' +
        'x,north,2024-05-03T19:00:00,2024-05-03T15:00:00Z\n' +
        'y,north,2024-05-03T15:00:00Z,2024-05-03T15:00:00Z\n',
    );
    expect(windows).toEqual([
      {
        region: 'north',
        start: Date.UTC(2024, 4, 3, 15),
        end: Date.UTC(2024, 4, 3, 19),
        reason: 'transformer swap',
      },
      { region: 'south', start: Date.UTC(2024, 4, 3, 13), end: Date.UTC(2024, 4, 3, 17), reason: '' },
    ]);
    expect(errors).toEqual([
      { line: 4, reason: 'start and end must be ISO-8601 times with a zone' },
      { line: 5, reason: 'end must be after start' },
    ]);
    expect(parseMaintenanceCsv('region,from,to\n').errors).toEqual([
      { line: 1, reason: 'header lacks "start"' },
    ]);
  });
});

describe('excludePeakHours', () => {
  const profile = defaultRuleProfile.exclusions;
  const meter = (id: string, region: string): MeterInfo => ({
    meterId: id,
    region,
    neighborhood: 'N',
    meterType: 'residential',
    vacant: false,
    maxKw: null,
  });
  const row = (meterId: string, hour: number, avgKw: number): HourlyConsumption => ({
    meterId,
    neighborhood: 'N',
    hour,
    avgKw,
    minKw: avgKw,
    maxKw: avgKw,
    stddevKw: 0,
    count: 4,
  });

  it('judges each row as the judge does on the side inputs it meets, whatever the rows before it', () => {
    // The stage remembers a judgement per region and hour: rows of several regions, hours and days in any
    // order, with the weather and maintenance replaced between batches (mid-hour), must pass or leave
    // exactly as the judge, called for each row on the side inputs of its batch, says.
    const day = Date.UTC(2024, 6, 10);
    const regions = ['north', 'south', 'DE-BY', ''];
    const meters = new Map<string, MeterInfo>(
      Array.from({ length: 8 }, (_, i) => [`M${i}`, meter(`M${i}`, regions[i % regions.length]!)] as const),
    );
    const weathers = [
      weatherLookup([]),
      weatherLookup([
        { region: 'north', ts: day + 3 * H, temperatureC: 40 },
        { region: 'south', ts: day + 4 * H, temperatureC: -20 },
      ]),
    ];
    const windows: MaintenanceWindow[][] = [
      [],
      [{ region: 'south', start: day + 2 * H, end: day + 5 * H, reason: 'swap' }],
    ];
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            rows: fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 6 })), {
              maxLength: 12,
            }),
            weather: fc.integer({ min: 0, max: 1 }),
            maintenance: fc.integer({ min: 0, max: 1 }),
          }),
          { maxLength: 6 },
        ),
        (batches) => {
          const weather = new BehaviorSubject(weathers[0]!);
          const maintenance = new BehaviorSubject(windows[0]!);
          const inputs = {
            registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject<MeterRegistry>(meters)),
            weather: new SideInput('weather', weather),
            maintenance: new SideInput('maintenance', maintenance),
          };
          for (const s of [inputs.registry, inputs.weather, inputs.maintenance]) s.connect(() => {});
          const passed: HourlyConsumption[] = [];
          const input = new Subject<FlowEvent<HourlyConsumption>>();
          input
            .pipe(excludePeakHours(new StateStore(), inputs, profile, (h) => Math.floor(h / DAY_MS) * DAY_MS))
            .subscribe((e) => {
              if (e.kind === 'data') passed.push(...e.items);
            });
          const expected: HourlyConsumption[] = [];
          let kw = 0;
          for (const b of batches) {
            weather.next(weathers[b.weather]!);
            maintenance.next(windows[b.maintenance]!);
            const items = b.rows.map(([m, hour]) => row(`M${m}`, day + hour * H, ++kw));
            for (const r of items) {
              const region = meters.get(r.meterId)!.region;
              if (judge(region, r.hour, weathers[b.weather]!, windows[b.maintenance]!).length === 0)
                expected.push(r);
            }
            input.next(data(...items));
          }
          expect(passed).toEqual(expected);
        },
      ),
    );
  });
});
