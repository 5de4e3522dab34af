/** The exclusion judge's boundaries: local dates across daylight saving, regional calendars, thresholds, windows. */
import { describe, expect, it } from 'vitest';
import { parseMaintenanceCsv } from '../../codecs/maintenance-windows.js';
import { localHourOf } from '../../operators/local-time.js';
import { exclusionJudge, weatherLookup } from '../../operators/peak-exclusions.js';
import { defaultRuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';

const H = 3_600_000;
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
