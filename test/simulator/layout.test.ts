import { beforeAll, describe, expect, it } from 'vitest';
import {
  createSimulation,
  generateRegistry,
  type HourFile,
  readingsHeader,
  registryHeader,
  type Simulation,
} from '../../simulator/index.js';
import { parseTimestamp, splitCsvLine } from './readings.js';

describe('registry', () => {
  const registry = generateRegistry({ meters: 5000, days: 1, start: '2024-03-11', seed: 3 });

  it('numbers meters MTR-000001 onwards', () => {
    expect(registry[0].meterId).toBe('MTR-000001');
    expect(registry[4999].meterId).toBe('MTR-005000');
    expect(new Set(registry.map((m) => m.meterId)).size).toBe(5000);
  });

  it('is about 85 % residential and 15 % commercial, with a few vacant homes', () => {
    const commercial = registry.filter((m) => m.meterType === 'commercial').length / registry.length;
    expect(commercial).toBeGreaterThan(0.12);
    expect(commercial).toBeLessThan(0.18);
    const vacant = registry.filter((m) => m.vacant);
    expect(vacant.length / registry.length).toBeGreaterThan(0.003);
    expect(vacant.length / registry.length).toBeLessThan(0.03);
    expect(vacant.every((m) => m.meterType === 'residential')).toBe(true);
  });

  it('groups 20–50 meters per neighborhood (streets with one shop in ten, business districts, estates), in a few regions', () => {
    const hoods = new Map<string, typeof registry>();
    for (const m of registry) hoods.set(m.neighborhood, [...(hoods.get(m.neighborhood) ?? []), m]);
    for (const [name, members] of hoods) {
      expect(members.length, name).toBeGreaterThanOrEqual(20);
      expect(members.length, name).toBeLessThanOrEqual(50);
      const shops = members.filter((m) => m.meterType === 'commercial').length;
      expect([Math.round(members.length / 10), members.length], name).toContain(shops);
      expect(new Set(members.map((m) => m.region)).size, name).toBe(1);
    }
    const regions = new Set(registry.map((m) => m.region));
    expect(regions.size).toBeGreaterThanOrEqual(2);
    expect(regions.size).toBeLessThanOrEqual(5);
  });

  it('sets max_kw (50–360: large shops, industrial plants) only for some commercial meters', () => {
    const withLimit = registry.filter((m) => m.maxKw !== null);
    expect(withLimit.every((m) => m.meterType === 'commercial' && m.maxKw! >= 50 && m.maxKw! <= 360)).toBe(
      true,
    );
    const commercial = registry.filter((m) => m.meterType === 'commercial').length;
    expect(withLimit.length / commercial).toBeGreaterThan(0.2);
    expect(withLimit.length / commercial).toBeLessThan(0.7);
  });

  it('renders as the contract’s CSV', () => {
    const csv = createSimulation({ meters: 60, days: 1, start: '2024-03-11', seed: 3 }).registryCsv();
    const lines = csv.trimEnd().split('\n');
    expect(lines[0]).toBe('meter_id,region,neighborhood,meter_type,vacant,max_kw');
    expect(lines[0]).toBe(registryHeader);
    expect(lines).toHaveLength(61);
    for (const line of lines.slice(1)) {
      expect(line).toMatch(/^MTR-\d{6},[a-z]+,[a-z]+-\d{2},(residential|commercial),(true|false),(\d+)?$/);
    }
  });
});

describe('landing layout', () => {
  let simulation: Simulation;
  let files: HourFile[];
  beforeAll(() => {
    // One meter per gateway: many gateways, so every file style shows up.
    simulation = createSimulation({ meters: 200, days: 1, start: '2024-03-11', seed: 5, gatewaySize: 1 });
    files = [...simulation.hours()];
  });

  it('writes one file per gateway and hour under raw/YYYY/MM/DD/HH/', () => {
    expect(files).toHaveLength(200 * 24);
    for (const file of files) {
      const match = /^raw\/(\d{4})\/(\d{2})\/(\d{2})\/(\d{2})\/(gw-\d{4})\.csv$/.exec(file.path);
      expect(match, file.path).not.toBeNull();
      const [, y, mo, d, h, gateway] = match!;
      expect(file.hour).toBe(`${y}-${mo}-${d}T${h}:00:00Z`);
      expect(file.gateway).toBe(gateway);
    }
    expect(files[0].path).toBe('raw/2024/03/11/00/gw-0001.csv');
    expect(files.at(-1)?.path).toBe('raw/2024/03/11/23/gw-0200.csv');
  });

  it('starts every file with the reading header, some with a location column', () => {
    const headers = new Set(files.map((f) => f.csv.slice(0, f.csv.search(/\r?\n/))));
    expect(headers).toEqual(new Set([readingsHeader, `${readingsHeader},location`]));
    expect(readingsHeader).toBe('meter_id,timestamp,value,unit');
  });

  it('mixes the timestamp, quoting and line-ending styles real gateways use', () => {
    const stamps = new Set<string>();
    let quoted = 0;
    let crlf = 0;
    let quotedLocation = 0;
    for (const file of files) {
      if (file.csv.includes('\r\n')) crlf += 1;
      const line = file.csv.split(/\r?\n/)[1];
      if (line.startsWith('"MTR-')) quoted += 1;
      if (/,"Zone \d+, [A-Z][a-z]+"$/.test(line)) quotedLocation += 1;
      const stamp = splitCsvLine(line)?.[1] ?? '';
      stamps.add(
        stamp.endsWith('Z')
          ? stamp.includes('.')
            ? 'Zms'
            : 'Z'
          : /[+-]\d{2}:\d{2}$/.test(stamp)
            ? 'offset'
            : 'naive',
      );
    }
    expect(stamps).toEqual(new Set(['Z', 'Zms', 'offset', 'naive']));
    expect(quoted).toBeGreaterThan(0);
    expect(crlf).toBeGreaterThan(0);
    expect(quotedLocation).toBeGreaterThan(0);
  });

  it('puts each registered reading in its gateway’s file for its hour (late duplicates aside)', () => {
    const lateDuplicates = new Set(
      simulation.labels.labels.filter((l) => l.kind === 'duplicate').flatMap((l) => l.lines ?? []),
    );
    const shifted = new Set(
      simulation.labels.labels
        .filter(
          (l) => l.kind === 'future_timestamp' || l.kind === 'clock_reset' || l.kind === 'malformed_line',
        )
        .flatMap((l) => l.lines ?? []),
    );
    let checked = 0;
    for (const file of files) {
      const hourMs = Date.parse(file.hour);
      for (const line of file.csv.split(/\r?\n/).slice(1)) {
        if (line === '' || shifted.has(line)) continue;
        const fields = splitCsvLine(line)!;
        const ts = parseTimestamp(fields[1])!;
        const index = Number(fields[0].slice(4)) - 1;
        if (!fields[0].startsWith('MTR-') || index >= 200) continue; // unknown meters
        expect(file.gateway).toBe(`gw-${String(index + 1).padStart(4, '0')}`);
        if (ts - hourMs < 0 || ts - hourMs >= 3_600_000) expect(lateDuplicates.has(line), line).toBe(true);
        else checked += 1;
      }
    }
    // 15-minute meters send 4 readings an hour, 30-minute meters 2 (about 30 % of the fleet).
    expect(checked).toBeGreaterThan(200 * 24 * 3 * 0.9);
  });

  it('writes kW values with 4 decimals and W values with 1', () => {
    for (const file of files.slice(0, 400)) {
      for (const line of file.csv.split(/\r?\n/).slice(1, 3)) {
        const fields = splitCsvLine(line);
        if (!fields || fields[2] === '') continue;
        const unit = fields[3].toLowerCase();
        if (unit.startsWith('k')) expect(fields[2]).toMatch(/^-?\d+\.\d{4}$/);
        if (['w', 'watt', 'watts'].includes(unit)) expect(fields[2]).toMatch(/^-?\d+\.\d$/);
      }
    }
  });
});
