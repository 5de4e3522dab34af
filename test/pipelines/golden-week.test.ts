/**
 * Golden rows: the meter-quality graph on a seeded simulated week produces exactly the rows the graph of
 * commit 2195e9b (before state by dense key index) produced. Each table's rows, every stored column
 * encoded as JSON, sorted, hashed with SHA-256; the expected hashes were captured from that commit
 * (the readings hash again once the six optional measurement columns joined `readingColumns`, from
 * the graph without dense keys; every other table's hash is 2195e9b's).
 * A change to any rule's output changes a hash: update them only for an intended change of behaviour.
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type CollectedOutputs, runGraphInMemoryAsync } from '../../pipelines/in-memory.js';
import {
  alertColumns,
  type Column,
  dailyPeakColumns,
  faultColumns,
  hourlyColumns,
  quarantineColumns,
  type RawReading,
  readingColumns,
} from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';

/** Row counts and hashes of the week below, from the graph before dense keys (see above). */
/** Peak exclusions need weather, holiday or maintenance inputs, which this week does not give. */
type GoldenTable = Exclude<keyof CollectedOutputs, 'peakExclusions'>;

const GOLDEN: Record<GoldenTable, { rows: number; sha256: string }> = {
  readings: { rows: 173681, sha256: 'eb6fdba2ed2a2906962d8593902756f25c15b3ad23c0e76363177a98013efe98' },
  quarantine: { rows: 151, sha256: '70d7af1bfe40924932055c1c138ec11b4bd246f5f7f25eb4e447d3e3485f3b62' },
  faults: { rows: 62, sha256: '93ed37aee215d3d46fee298ea7bea6baa3017ed9ca98ab8c59904815833ec687' },
  alerts: { rows: 52, sha256: '922e8cf644ed7e718d558a2e65a6ce84ec928f7b68f9779bdac57fd37cafb70e' },
  hourly: { rows: 48336, sha256: '8ff5b7f85da8dbff0b8797b757626aa6c190d5dfaead708152d6e361505a5f5c' },
  dailyPeaks: { rows: 21, sha256: 'ab48d21e21cb0ad1e1d2cef4836e3bd1b373f315b44a76ead09dea4381fe5add' },
};

function tableDigest<T>(rows: readonly T[], columns: readonly Column<T>[]) {
  const lines = rows.map((row) => JSON.stringify(columns.map((c) => c.get(row)))).sort();
  const hash = createHash('sha256');
  for (const line of lines) hash.update(`${line}\n`);
  return { rows: rows.length, sha256: hash.digest('hex') };
}

function digests(o: CollectedOutputs): typeof GOLDEN {
  return {
    readings: tableDigest(o.readings, readingColumns),
    quarantine: tableDigest(o.quarantine, quarantineColumns),
    faults: tableDigest(o.faults, faultColumns),
    alerts: tableDigest(o.alerts, alertColumns),
    hourly: tableDigest(o.hourly, hourlyColumns),
    dailyPeaks: tableDigest(o.dailyPeaks, dailyPeakColumns),
  };
}

function simulatedWeek(): { batches: RawReading[][]; registryCsv: string } {
  const sim = createSimulation({ meters: 300, days: 7, start: '2024-03-11', seed: 15, gatewaySize: 100 });
  const batches = [...sim.hours()].map((h) => {
    const decoded = decodeReadings(Buffer.from(h.csv), {
      source: h.path,
      receivedAt: landingReceivedAt(h.path) ?? 0,
      lineRefs: true,
    });
    if (!decoded.ok) throw new Error(decoded.failure.reason);
    return decoded.readings;
  });
  return { batches, registryCsv: sim.registryCsv() };
}

describe('the meter-quality graph on a seeded simulated week', () => {
  let out: CollectedOutputs;
  beforeAll(async () => {
    const { batches, registryCsv } = simulatedWeek();
    const { registry } = parseRegistryCsv(registryCsv);
    out = await runGraphInMemoryAsync(batches, registry, resolveRuleProfile());
  }, 120_000);

  it('produces exactly the golden rows of every table', () => {
    // Every table has rows, so a hash covers behaviour and not an empty set.
    for (const table of Object.keys(GOLDEN) as GoldenTable[]) expect(out[table].length).toBeGreaterThan(0);
    expect(out.peakExclusions).toEqual([]);
    expect(digests(out)).toEqual(GOLDEN);
  });

  it('the digest sees a change of one value in one row', () => {
    const before = tableDigest(out.readings, readingColumns);
    const row = out.readings[Math.floor(out.readings.length / 2)]!;
    const score = row.qualityScore;
    row.qualityScore = score - 1;
    expect(tableDigest(out.readings, readingColumns).sha256).not.toBe(before.sha256);
    row.qualityScore = score;
    expect(tableDigest(out.readings, readingColumns)).toEqual(before);
  });
});
