import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rowEncoder } from '../../codecs/clickhouse-encode.js';
import { decodeReadings } from '../../codecs/decode.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemory } from '../../pipelines/in-memory.js';
import { hotTables } from '../../schemas/clickhouse.js';
import type { QuarantineRecord, RawReading } from '../../schemas/reading.js';
import { registryOf } from '../operators/fixtures.js';
import { FUZZ_METERS, FUZZ_T0, fuzzRuns, payload } from './fuzz.js';

const profile = resolveRuleProfile();
const registry = registryOf(...FUZZ_METERS.map((meterId) => ({ meterId })));
const encoders = {
  readings: rowEncoder(hotTables.readings.columns, 'TabSeparated'),
  quarantine: rowEncoder(hotTables.quarantine.columns, 'TabSeparated'),
  faults: rowEncoder(hotTables.faults.columns, 'TabSeparated'),
  alerts: rowEncoder(hotTables.alerts.columns, 'TabSeparated'),
  hourly_consumption: rowEncoder(hotTables.hourly_consumption.columns, 'TabSeparated'),
  daily_peaks: rowEncoder(hotTables.daily_peaks.columns, 'TabSeparated'),
};
/** The worker's heap budget in CI (the corpus test runs the worker under `--max-old-space-size=1024`). */
const HEAP_BUDGET = 1024 * 1024 * 1024;

/**
 * Hostile payloads (bytes, CSV and JSON structure, names, headers) through the decoder and the whole
 * meter-quality graph in memory: nothing throws, every record ends as exactly one stored reading or
 * quarantine row (or its payload is dead-lettered), and the hot store's encoder accepts every row.
 * 10,000 cases by default; `GS_FUZZ_RUNS=100000 npx vitest run test/hostile/fuzz.test.ts` for the long run.
 */
describe('fuzz: hostile payloads through the decoder and the graph in memory', () => {
  const runs = fuzzRuns(10_000);
  it(`never throws, balances every record and yields only encodable rows (${runs} cases)`, async () => {
    let payloads = 0;
    let deadLettered = 0;
    let records = 0;
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(payload, { minLength: 1, maxLength: 3 }),
        fc.integer({ min: -3, max: 400 }),
        async (batch, receivedHours) => {
          // Hand the event loop back now and then: a minute of synchronous cases starves the test
          // runner's worker heartbeat.
          if (++cases % 100 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
          const readings: RawReading[] = [];
          const failures: QuarantineRecord[] = [];
          let decodedRecords = 0;
          for (const p of batch) {
            payloads++;
            const decoded = decodeReadings(p.bytes, {
              source: `raw/2024/03/11/00/${p.name}`,
              receivedAt: FUZZ_T0 + receivedHours * 3_600_000,
              contentType: p.contentType,
              lineRefs: true,
            });
            if (!decoded.ok) {
              deadLettered++;
              expect(decoded.failure.reason.length).toBeGreaterThan(0);
              continue;
            }
            expect(decoded.records).toBe(decoded.readings.length + decoded.failures.length);
            decodedRecords += decoded.records;
            readings.push(...decoded.readings);
            for (const f of decoded.failures) {
              failures.push({
                meterId: f.meterId,
                ts: null,
                raw: f.raw,
                reasons: [f.reason],
                source: `${f.source}#${f.line}`,
                quarantinedAt: 0,
              });
            }
          }
          records += decodedRecords;
          const out = runGraphInMemory([readings], registry, profile);
          const measured = out.readings.filter((r) => r.status === 'measured').length;
          expect(measured + out.quarantine.length).toBe(readings.length);
          // What the sinks would send: the encoder accepts it all (no lone surrogate, time or number it refuses).
          encoders.readings(out.readings);
          encoders.quarantine([...failures, ...out.quarantine]);
          encoders.faults(out.faults);
          encoders.alerts(out.alerts);
          encoders.hourly_consumption(out.hourly);
          encoders.daily_peaks(out.dailyPeaks);
        },
      ),
      { numRuns: runs, seed: Number(process.env.GS_FUZZ_SEED ?? 12) },
    );
    console.log(
      `[fuzz] ${runs} cases: ${payloads} payloads, ${records} records, ${deadLettered} dead-lettered`,
    );
    expect(process.memoryUsage().heapUsed).toBeLessThan(HEAP_BUDGET);
  }, 600_000);
});
