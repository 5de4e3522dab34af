/** Rows for every hot table, with the awkward values each column type allows. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HotTableName, HotTableRows } from '../../schemas/clickhouse.js';
import type { Reading, ReadingFlag } from '../../schemas/reading.js';

const T0 = Date.UTC(2026, 0, 15, 10, 0, 0);
const QUARTER_HOUR = 15 * 60_000;
const NOW = Date.UTC(2026, 10, 22, 1, 2, 3, 456);

/** `n` readings over `meters` meters, consecutive 15-minute intervals, a NULL every 97th. */
export function makeReadings(n: number, options: { meters?: number; processedAt?: number } = {}): Reading[] {
  const meters = options.meters ?? 500;
  const processedAt = options.processedAt ?? NOW;
  const out: Reading[] = [];
  for (let i = 0; i < n; i++) {
    const missing = i % 97 === 0;
    const kw = ((i * 7919) % 100_000) / 10_000;
    out.push({
      meterId: `MTR-${String(i % meters).padStart(5, '0')}`,
      ts: T0 + Math.floor(i / meters) * QUARTER_HOUR,
      kw: missing ? null : kw,
      rawValue: missing ? '' : String(kw * 1000),
      rawUnit: missing ? '' : 'W',
      status: missing ? 'missing' : 'measured',
      flags: missing ? ['MISSING_READING', 'missing_short'] : i % 13 === 0 ? ['unit_converted', 'spike'] : [],
      warnings: i % 13 === 0 ? 1 : 0,
      qualityScore: missing ? 0 : 85 + (i % 15),
      qualityTier: missing ? 'quarantine' : 'premium',
      grade: missing ? 'F' : 'A',
      peakClass: 'off_peak',
      season: 'winter',
      recordId: `${i.toString(16).padStart(16, '0')}${'ab'.repeat(24)}`,
      source: 'raw/2026/01/15/10/readings-0001.csv',
      processedAt,
      pipelineVersion: '0.1.0',
    });
  }
  return out;
}

/** A few rows of every table, unique by each table's sorting key. */
export function sampleRows(): { readonly [K in HotTableName]: HotTableRows[K][] } {
  return {
    readings: makeReadings(5, { meters: 2 }).map((r, i) =>
      // Not real flags: quotes, tabs and backslashes inside an array are what is under test.
      i === 1
        ? {
            ...r,
            meterId: 'Zähler-東京-🔌',
            flags: ["it's", 'tab\there', 'back\\slash'] as unknown as ReadingFlag[],
          }
        : r,
    ),
    faults: [
      {
        meterId: 'MTR-00001',
        faultType: 'stuck',
        windowStart: T0,
        windowEnd: T0 + 4 * QUARTER_HOUR,
        detectedAt: T0 + 5 * QUARTER_HOUR,
        evidence: '{"repeats":5,"value":1.25}',
      },
      {
        meterId: 'MTR-00002',
        faultType: 'neighborhood_outlier',
        windowStart: T0,
        windowEnd: T0,
        detectedAt: T0 + 999,
        evidence: '{"z":"4.1"}',
      },
    ],
    alerts: [
      {
        severity: 'critical',
        kind: 'meter_fault',
        meterId: 'MTR-00001',
        ts: T0,
        message: 'stuck for 5 readings',
      },
      { severity: 'warning', kind: 'backlog', meterId: '', ts: T0 + 1, message: 'lag 120 s\nsecond line' },
    ],
    quarantine: [
      {
        meterId: '',
        ts: null,
        raw: 'garbage,,\u0000,"unterminated',
        reasons: ['wrong column count', 'unparseable timestamp'],
        source: 'raw/2026/01/15/10/bad.csv',
        quarantinedAt: NOW,
      },
      {
        meterId: 'MTR-00003',
        ts: T0,
        raw: 'MTR-00003,2026-01-15T10:00:00Z,NaN,kW',
        reasons: ['value is NaN'],
        source: 'stream:readings:42',
        quarantinedAt: NOW,
      },
    ],
    quality_log: [
      {
        batchId: 'cp-000001',
        source: 'raw/2026/01/15/10/readings-0001.csv',
        recordsIn: 1000,
        stored: 990,
        quarantined: 7,
        deadLettered: 3,
        avgScore: 91.25,
        loggedAt: NOW,
      },
    ],
    meters: [
      {
        meterId: 'MTR-00001',
        region: 'north',
        neighborhood: 'Elm Park',
        meterType: 'residential',
        vacant: false,
        maxKw: null,
      },
      {
        meterId: 'MTR-00002',
        region: 'south',
        neighborhood: "O'Brien Heights",
        meterType: 'commercial',
        vacant: true,
        maxKw: 250.5,
      },
    ],
    hourly_consumption: [
      {
        meterId: 'MTR-00001',
        neighborhood: 'Elm Park',
        hour: T0,
        avgKw: 1.2345,
        minKw: 0,
        maxKw: 3.5,
        stddevKw: 0.123456789,
        count: 4,
      },
    ],
    daily_peaks: [1, 2, 3].map((rank) => ({
      day: Date.UTC(2026, 0, 15),
      hour: Date.UTC(2026, 0, 15, 17 + rank),
      totalKw: 1000.5 / rank,
      rank,
    })),
  };
}

/** A chDB data directory for this test file (chDB binds one per process). */
export function chdbDataDir(): { readonly path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'greenstream-chdb-test-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A database name of its own for a test file sharing the harness server with others. */
export function testDatabase(label: string): string {
  return `gs_${label}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
}

/** Times at DateTime's edges (1970 and 2106), fractional, negative and not finite: every insert format's property tests. */
export const EDGE_TIMES = [
  0,
  -0,
  -1,
  999.9,
  1000,
  2 ** 32 * 1000 - 1,
  2 ** 32 * 1000,
  1_710_115_200_000.5,
  Number.NaN,
  Infinity,
  -Infinity,
];
