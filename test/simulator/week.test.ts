/**
 * One simulated week of 1,000 meters, read back through the input contract: every injected label is
 * checked against the files, and clean meters against what metered households look like.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { MeterInfo } from '../../schemas/reading.js';
import {
  anomalyKinds,
  createSimulation,
  faultKinds,
  type LabelsFile,
  type Simulation,
  type SimulationLabel,
  unitKinds,
} from '../../simulator/index.js';
import {
  allowedUnits,
  correlation,
  type Fleet,
  hourlyMeans,
  meanAndSd,
  parseTimestamp,
  readFleet,
  splitCsvLine,
} from './readings.js';

const SLOT = 900_000;
let simulation: Simulation;
let labels: LabelsFile;
let fleet: Fleet;
let meters: Map<string, MeterInfo>;
let neighborhoodMeans: Map<string, Float64Array>;

function limitOf(meter: MeterInfo): number {
  return (
    meter.maxKw ??
    (meter.meterType === 'commercial' ? labels.limits.commercialKw : labels.limits.residentialKw)
  );
}

/** Meters are compared with peers of their own type in their neighborhood. */
function groupOf(meter: MeterInfo): string {
  return `${meter.neighborhood}/${meter.meterType}`;
}

function slotOf(iso: string): number {
  return (Date.parse(iso) - Date.parse(labels.start)) / SLOT;
}

function injected(kind: string): SimulationLabel[] {
  return labels.labels.filter((l) => l.kind === kind && l.role === 'injected');
}

beforeAll(() => {
  simulation = createSimulation({ meters: 1000, days: 7, start: '2024-03-11', seed: 2024 });
  labels = simulation.labels;
  meters = new Map(simulation.registry.map((m) => [m.meterId, m]));
  const watch = new Set(labels.labels.flatMap((l) => l.lines ?? []));
  fleet = readFleet(simulation.hours(), new Set(meters.keys()), Date.parse(labels.start), 7 * 96, watch);
  const byHood = new Map<string, Float64Array[]>();
  for (const meter of simulation.registry) {
    const list = byHood.get(groupOf(meter)) ?? [];
    list.push(hourlyMeans(fleet.kw.get(meter.meterId)!));
    byHood.set(groupOf(meter), list);
  }
  neighborhoodMeans = new Map();
  for (const [hood, series] of byHood) {
    const mean = new Float64Array(168);
    for (let h = 0; h < 168; h++) {
      let sum = 0;
      let n = 0;
      for (const s of series) {
        if (!Number.isNaN(s[h])) {
          sum += s[h];
          n += 1;
        }
      }
      mean[h] = sum / n;
    }
    neighborhoodMeans.set(hood, mean);
  }
}, 60_000);

describe('labels of a 1,000-meter week', () => {
  it('hold at least three injected instances of every fault kind and one of every other kind', () => {
    for (const kind of faultKinds) expect(injected(kind).length, kind).toBeGreaterThanOrEqual(3);
    for (const kind of [...anomalyKinds, ...unitKinds])
      expect(injected(kind).length, kind).toBeGreaterThanOrEqual(1);
    expect(labels.summary.skipped).toEqual({});
    expect(labels.summary.shortfall).toEqual({});
  });

  it('put each injected fault or anomaly kind on meters of its own', () => {
    const owner = new Map<string, string>();
    for (const label of labels.labels) {
      if (label.role !== 'injected' || (unitKinds as readonly string[]).includes(label.kind)) continue;
      const previous = owner.get(label.meterId);
      expect(
        previous === undefined || previous === label.kind,
        `${label.meterId}: ${previous} and ${label.kind}`,
      ).toBe(true);
      owner.set(label.meterId, label.kind);
    }
  });

  it('summarize what they list', () => {
    for (const kind of faultKinds) {
      const list = injected(kind);
      expect(labels.summary.injected[kind]).toEqual({
        labels: list.length,
        meters: new Set(list.map((l) => l.meterId)).size,
        count: list.reduce((n, l) => n + l.count, 0),
      });
    }
  });

  it('quote only lines that are in the files, as often as they say', () => {
    for (const label of labels.labels) {
      for (const line of label.lines ?? []) {
        const expected = label.kind === 'duplicate' ? 2 : 1;
        expect(fleet.watched.get(line), `${label.kind} ${line}`).toBe(expected);
      }
    }
  });

  it('zero: ≥ 50 h of 0 kW on a non-vacant meter', () => {
    for (const label of injected('zero')) {
      expect(meters.get(label.meterId)?.vacant).toBe(false);
      const series = fleet.kw.get(label.meterId)!;
      for (let s = slotOf(label.start); s <= slotOf(label.end); s++) expect(series[s]).toBe(0);
      expect(label.count / 4).toBeGreaterThanOrEqual(50);
    }
  });

  it('stuck: ≥ 26 h of one identical non-zero value', () => {
    for (const label of injected('stuck')) {
      const series = fleet.kw.get(label.meterId)!;
      const first = series[slotOf(label.start)];
      expect(first).toBeGreaterThan(0);
      for (let s = slotOf(label.start); s <= slotOf(label.end); s++) expect(series[s]).toBe(first);
      expect(label.count / 4).toBeGreaterThanOrEqual(26);
    }
  });

  it('overload: ≥ 8 consecutive readings above the meter limit', () => {
    for (const label of injected('overload')) {
      const limit = limitOf(meters.get(label.meterId)!);
      const series = fleet.kw.get(label.meterId)!;
      expect(label.count).toBeGreaterThanOrEqual(8);
      for (let s = slotOf(label.start); s <= slotOf(label.end); s++) expect(series[s]).toBeGreaterThan(limit);
    }
  });

  it('low_variance: 7 days with a coefficient of variation under 0.005, never exactly constant for a day', () => {
    for (const label of injected('low_variance')) {
      const series = fleet.kw.get(label.meterId)!.subarray(slotOf(label.start), slotOf(label.end) + 1);
      const { mean, sd } = meanAndSd(series);
      expect(sd / mean).toBeLessThan(0.005);
      expect(sd).toBeGreaterThan(0);
      for (let first = 0; first + 96 <= series.length; first += 4) {
        expect(meanAndSd(series.subarray(first, first + 96)).sd).toBeGreaterThan(0);
      }
    }
  });

  it('erratic_spike: single readings above mean + 6σ of the meter week', () => {
    for (const label of injected('erratic_spike')) {
      const series = fleet.kw.get(label.meterId)!;
      const { mean, sd } = meanAndSd(series);
      for (const reading of label.readings ?? []) {
        const s = slotOf(reading);
        expect((series[s] - mean) / sd).toBeGreaterThan(6);
        expect(series[s]).toBeLessThan(limitOf(meters.get(label.meterId)!));
      }
    }
  });

  it('comm_failure: 30–40 % of the week missing, scattered', () => {
    for (const label of injected('comm_failure')) {
      const series = fleet.kw.get(label.meterId)!;
      const missing = series.filter((v) => Number.isNaN(v)).length / series.length;
      expect(missing).toBeGreaterThan(0.27);
      expect(missing).toBeLessThan(0.43);
      expect(label.count).toBe(series.filter((v) => Number.isNaN(v)).length);
    }
  });

  it('neighborhood_outlier: an hourly profile anti-correlated with its neighborhood for the week', () => {
    for (const label of injected('neighborhood_outlier')) {
      const group = groupOf(meters.get(label.meterId)!);
      const r = correlation(hourlyMeans(fleet.kw.get(label.meterId)!), neighborhoodMeans.get(group)!);
      expect(r).toBeLessThan(0.2);
      expect(label.count / 96).toBeGreaterThanOrEqual(3);
    }
  });

  it('null_reading and consecutive_nulls: empty values, runs of 5 or more', () => {
    for (const label of injected('null_reading')) {
      for (const reading of label.readings ?? [])
        expect(fleet.nulls.get(label.meterId)?.has(slotOf(reading))).toBe(true);
    }
    for (const label of injected('consecutive_nulls')) {
      expect(label.count).toBeGreaterThanOrEqual(5);
      for (let s = slotOf(label.start); s <= slotOf(label.end); s++) {
        expect(fleet.nulls.get(label.meterId)?.has(s)).toBe(true);
      }
    }
  });

  it('gaps: no line for the span, in the length class of the label', () => {
    const classes: Record<string, [number, number]> = {
      gap_short_interp: [0, 4],
      gap_missing_short: [4, 24],
      gap_missing_extended: [24, Number.POSITIVE_INFINITY],
    };
    for (const [kind, [low, high]] of Object.entries(classes)) {
      for (const label of injected(kind)) {
        const series = fleet.kw.get(label.meterId)!;
        const first = slotOf(label.start);
        const last = slotOf(label.end);
        for (let s = first; s <= last; s++) expect(Number.isNaN(series[s])).toBe(true);
        expect(Number.isNaN(series[first - 1])).toBe(false);
        if (last + 1 < series.length) expect(Number.isNaN(series[last + 1])).toBe(false);
        const hours = (last - first + 1) / 4;
        expect(hours >= low && hours + 0.25 < high, `${kind} ${hours} h`).toBe(true);
      }
    }
  });

  it('negative_value, out_of_range: single readings below 0 or above the limit', () => {
    for (const label of injected('negative_value')) {
      for (const line of label.lines ?? []) expect(Number(splitCsvLine(line)![2])).toBeLessThan(0);
    }
    for (const label of injected('out_of_range')) {
      const limit = limitOf(meters.get(label.meterId)!);
      const series = fleet.kw.get(label.meterId)!;
      for (const reading of label.readings ?? []) {
        const s = slotOf(reading);
        expect(series[s]).toBeGreaterThan(limit);
        expect(series[s - 1]).toBeLessThanOrEqual(limit);
        expect(series[s + 1]).toBeLessThanOrEqual(limit);
      }
    }
  });

  it('future_timestamp and clock_reset: timestamps days past the simulated week or at 1970/2000', () => {
    const end = Date.parse(labels.end);
    for (const label of injected('future_timestamp')) {
      for (const line of label.lines ?? []) {
        expect(parseTimestamp(splitCsvLine(line)![1])! - end).toBeGreaterThan(86_400_000);
      }
    }
    for (const label of injected('clock_reset')) {
      for (const line of label.lines ?? []) expect(splitCsvLine(line)![1]).toMatch(/^(1970|2000)-01-01T/);
    }
  });

  it('unknown_meter: ids outside the registry, as many readings as labeled', () => {
    for (const label of injected('unknown_meter')) {
      expect(meters.has(label.meterId)).toBe(false);
      expect(fleet.unknown.get(label.meterId)).toBe(label.count);
    }
    expect(fleet.unknown.size).toBe(injected('unknown_meter').length);
  });

  it('malformed_line: exactly the labeled lines fail to parse', () => {
    const labeled = injected('malformed_line').flatMap((l) => l.lines ?? []);
    expect([...fleet.malformed].sort()).toEqual([...labeled].sort());
  });

  it('bad_unit, ambiguous_unit, unit_w, missing_unit: units as labeled', () => {
    for (const label of injected('bad_unit')) {
      for (const line of label.lines ?? [])
        expect(allowedUnits.has(splitCsvLine(line)![3].toLowerCase())).toBe(false);
    }
    for (const label of injected('ambiguous_unit')) {
      for (const line of label.lines ?? []) {
        const [, , value, unit] = splitCsvLine(line)!;
        expect(unit).toBe('');
        expect(Number(value)).toBeGreaterThanOrEqual(10);
        expect(Number(value)).toBeLessThanOrEqual(1000);
      }
    }
    const wattMeters = new Set(injected('unit_w').map((l) => l.meterId));
    for (const [id, units] of fleet.units) {
      const watts = [...units].some((u) => ['w', 'watt', 'watts'].includes(u.toLowerCase()));
      expect(watts, id).toBe(wattMeters.has(id));
    }
    for (const label of injected('missing_unit')) {
      expect(fleet.units.get(label.meterId)?.has('')).toBe(true);
    }
  });

  it('spike and drop: more than a 500 % increase or 90 % decrease on the reading before', () => {
    for (const label of injected('spike')) {
      const series = fleet.kw.get(label.meterId)!;
      for (const reading of label.readings ?? []) {
        const s = slotOf(reading);
        expect(series[s] / series[s - 1]).toBeGreaterThan(6);
      }
    }
    for (const label of injected('drop')) {
      const series = fleet.kw.get(label.meterId)!;
      for (const reading of label.readings ?? []) {
        const s = slotOf(reading);
        expect(series[s] / series[s - 1]).toBeLessThan(0.1);
      }
    }
  });

  it('mark zero-span meters as stuck side effects rather than injected stuck faults', () => {
    for (const label of injected('zero')) {
      const side = labels.labels.find(
        (l) => l.meterId === label.meterId && l.kind === 'stuck' && l.role === 'side_effect',
      );
      expect(side?.causes).toEqual(['zero']);
    }
  });
});

describe('clean meters of a 1,000-meter week', () => {
  let clean: MeterInfo[];
  beforeAll(() => {
    const labeled = new Set(
      labels.labels.filter((l) => !(unitKinds as readonly string[]).includes(l.kind)).map((l) => l.meterId),
    );
    clean = simulation.registry.filter((m) => !m.vacant && !labeled.has(m.meterId));
  });

  it('are most of the fleet and carry no side-effect label', () => {
    expect(clean.length).toBeGreaterThan(600);
    const natural = labels.labels.filter(
      (l) => l.role === 'side_effect' && (l.causes ?? []).length === 0 && l.details?.vacant !== true,
    );
    expect(natural).toEqual([]);
  });

  it('send 4 readings per hour (15-minute meters) or 2 (30-minute meters) in every hourly file', () => {
    let halfHourly = 0;
    for (const meter of clean) {
      const series = fleet.kw.get(meter.meterId)!;
      const present = series.filter((v) => !Number.isNaN(v)).length;
      if (present === series.length / 2) {
        halfHourly += 1;
        expect(
          series.every((v, s) => Number.isNaN(v) === (s % 2 === 1)),
          meter.meterId,
        ).toBe(true);
      } else expect(present, meter.meterId).toBe(series.length);
    }
    expect(halfHourly / clean.length).toBeGreaterThan(0.2);
    expect(halfHourly / clean.length).toBeLessThan(0.5);
  });

  it('mix homes and shops in residential streets (about one shop in ten)', () => {
    const streets = new Map<string, MeterInfo[]>();
    for (const m of simulation.registry)
      streets.set(m.neighborhood, [...(streets.get(m.neighborhood) ?? []), m]);
    let mixed = 0;
    for (const members of streets.values()) {
      const shops = members.filter((m) => m.meterType === 'commercial').length;
      if (shops > 0 && shops < members.length) {
        mixed += 1;
        expect(shops).toBe(Math.round(members.length / 10));
      }
    }
    expect(mixed).toBeGreaterThan(10);
  });

  it('are skewed as metered homes are: most homes have ordinary readings above mean + 4σ of their week', () => {
    const homes = clean.filter((m) => m.meterType === 'residential');
    let above = 0;
    for (const meter of homes) {
      const series = fleet.kw.get(meter.meterId)!;
      const { mean, sd } = meanAndSd(series);
      if (series.some((v) => v > mean + 4 * sd)) above += 1;
    }
    expect(above / homes.length).toBeGreaterThan(0.5);
  });

  it('include EV homes charging at about 7 kW at night', () => {
    let charging = 0;
    for (const meter of clean) {
      const series = fleet.kw.get(meter.meterId)!;
      const nightly = series.some((v, s) => v > 7 && (s % 96 < 20 || s % 96 >= 86));
      if (nightly && meter.meterType === 'residential') charging += 1;
    }
    expect(charging / clean.length).toBeGreaterThan(0.05);
  });

  it('follow their own type in their neighborhood: weekly hourly-profile correlation ≥ 0.3 for ≥ 90 % of meters', () => {
    let ok = 0;
    for (const meter of clean) {
      const hourly = hourlyMeans(fleet.kw.get(meter.meterId)!);
      const mean = neighborhoodMeans.get(groupOf(meter))!;
      if (correlation(hourly, mean) >= 0.3) ok += 1;
    }
    expect(ok / clean.length).toBeGreaterThanOrEqual(0.9);
  });

  it('never read zero, vary within every day, and stay within their limit', () => {
    const violations: string[] = [];
    for (const meter of clean) {
      const series = fleet.kw.get(meter.meterId)!;
      const limit = limitOf(meter);
      for (let s = 0; s < series.length; s++) {
        const v = series[s];
        if (!Number.isNaN(v) && !(v > 0 && v <= limit)) violations.push(`${meter.meterId}@${s}: ${v}`);
      }
      for (let first = 0; first + 96 <= series.length; first += 4) {
        const { sd: daySd } = meanAndSd(series.subarray(first, first + 96));
        if (daySd ** 2 <= 0.01) violations.push(`${meter.meterId}@${first}: day variance ${daySd ** 2}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
