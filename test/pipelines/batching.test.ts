import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type CollectedOutputs, runGraphInMemory } from '../../pipelines/in-memory.js';
import type { RawReading } from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';

/**
 * Results must not depend on how the source cut its batches (a file per batch, sixteen files, a whole
 * day at once): a worker restarted from a checkpoint, or a replay, cuts differently from the first run.
 */
describe.each([
  { meters: 60, days: 2, seed: 9, gatewaySize: 100 },
  // Small gateways cut the day into many files; this seed has gaps whose interpolated rows arrive after
  // their hours closed.
  { meters: 200, days: 3, seed: 5, gatewaySize: 10 },
])(
  'the meter-quality graph is independent of batch boundaries ($meters meters, seed $seed)',
  ({ meters, days, seed, gatewaySize }) => {
    const sim = createSimulation({ meters, days, start: '2024-03-11', seed, gatewaySize });
    const { registry } = parseRegistryCsv(sim.registryCsv());
    const files: RawReading[][] = [...sim.hours()].map((h) => {
      const decoded = decodeReadings(Buffer.from(h.csv), {
        source: h.path,
        receivedAt: landingReceivedAt(h.path) ?? 0,
        lineRefs: true,
      });
      if (!decoded.ok) throw new Error(decoded.failure.reason);
      return decoded.readings;
    });
    const cut = (size: number): RawReading[][] => {
      const out: RawReading[][] = [];
      for (let i = 0; i < files.length; i += size) out.push(files.slice(i, i + size).flat());
      return out;
    };
    const summary = (o: CollectedOutputs) => ({
      readings: o.readings
        .map((r) => `${r.meterId}|${r.ts}|${r.kw}|${r.status}|${[...r.flags].sort()}|${r.qualityScore}`)
        .sort(),
      quarantine: o.quarantine.map((q) => `${q.source}|${q.reasons}`).sort(),
      faults: o.faults.map((f) => `${f.meterId}|${f.faultType}|${f.windowStart}|${f.windowEnd}`).sort(),
      alerts: o.alerts.map((a) => `${a.kind}|${a.meterId}|${a.ts}`).sort(),
      hourly: o.hourly.map((h) => `${h.meterId}|${h.hour}|${h.count}|${h.avgKw.toFixed(4)}`).sort(),
      dailyPeaks: o.dailyPeaks.map((p) => `${p.day}|${p.rank}|${p.hour}`).sort(),
    });

    it('gives the same rows for one file per batch, sixteen files per batch, and everything at once', () => {
      const perFileOut = runGraphInMemory(cut(1), registry, resolveRuleProfile());
      const perFile = summary(perFileOut);
      expect(perFile.hourly.length).toBeGreaterThan(meters * days * 20);
      expect(perFile.dailyPeaks.length).toBe(3 * days);
      expect(summary(runGraphInMemory(cut(16), registry, resolveRuleProfile()))).toEqual(perFile);
      expect(summary(runGraphInMemory(cut(files.length), registry, resolveRuleProfile()))).toEqual(perFile);
    }, 60_000);

    it('leaves every hour inside a zero or stuck fault, from its start, out of the hourly rows', () => {
      // Hours wholly between a fault's start and its recognition (or its end, if it ended first).
      const insideFaults = (o: CollectedOutputs) => {
        const windows = o.faults.filter((f) => f.faultType === 'zero' || f.faultType === 'stuck');
        return o.hourly.filter((h) =>
          windows.some(
            (f) =>
              f.meterId === h.meterId &&
              h.hour >= f.windowStart &&
              h.hour + HOUR <= Math.min(f.detectedAt, f.windowEnd),
          ),
        ).length;
      };
      const held = runGraphInMemory(cut(16), registry, resolveRuleProfile());
      const profile = resolveRuleProfile();
      const unheld = runGraphInMemory(cut(16), registry, {
        ...profile,
        faults: { ...profile.faults, analyticsHoldMs: 0 },
      });
      // The data has such faults, and without the hold their hours before recognition are emitted.
      expect(insideFaults(unheld)).toBeGreaterThan(0);
      expect(insideFaults(held)).toBe(0);
    }, 60_000);
  },
);

const HOUR = 3_600_000;
