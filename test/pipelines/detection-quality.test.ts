import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../connectors/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemory } from '../../pipelines/in-memory.js';
import type { RawReading } from '../../schemas/reading.js';
import { createSimulation, faultKinds, scoreDetections } from '../../simulator/index.js';

/**
 * The acceptance measure: run every rule over a simulated week of 1,000 meters and score the
 * detected faults per kind against the simulator's labels (side-effect labels are tolerated).
 */
describe('fault detection on a simulated week of 1,000 meters', () => {
  it('finds every injected fault kind with recall and precision ≥ 0.95', () => {
    const started = performance.now();
    const sim = createSimulation({ meters: 1000, days: 7, start: '2024-03-11', seed: 7 });
    const { registry, errors } = parseRegistryCsv(sim.registryCsv());
    expect(errors).toEqual([]);
    const batches: RawReading[][] = [];
    let lines = 0;
    let deadLettered = 0;
    let undecodableLines = 0;
    for (const hour of sim.hours()) {
      const decoded = decodeReadings(Buffer.from(hour.csv), {
        source: hour.path,
        receivedAt: landingReceivedAt(hour.path) ?? 0,
        lineRefs: true,
      });
      lines += hour.lines;
      if (!decoded.ok) deadLettered += 1;
      else {
        batches.push(decoded.readings);
        undecodableLines += decoded.failures.length;
      }
    }
    const out = runGraphInMemory(batches, registry, resolveRuleProfile());
    const elapsed = performance.now() - started;

    // Nothing lost: every line is a stored received reading, quarantined, or unreadable (quarantined by the source).
    const measured = out.readings.filter((r) => r.status === 'measured').length;
    expect(deadLettered).toBe(0);
    expect(measured + out.quarantine.length + undecodableLines).toBe(lines);

    const detections = out.faults.map((f) => ({ meterId: f.meterId, kind: f.faultType }));
    const scores = scoreDetections(sim.labels.labels, detections, faultKinds);
    const table = Object.fromEntries(
      Object.entries(scores).map(([kind, s]) => [
        kind,
        {
          expected: s!.expected,
          tp: s!.truePositives,
          fp: s!.falsePositives,
          tolerated: s!.tolerated,
          recall: s!.recall,
          precision: s!.precision,
          missed: s!.missedMeters.slice(0, 5),
          falsePositives: s!.falsePositiveMeters.slice(0, 5),
        },
      ]),
    );
    console.log(
      JSON.stringify({ readingsIn: lines, elapsedMs: Math.round(elapsed), scores: table }, null, 1),
    );
    for (const kind of faultKinds) {
      const s = scores[kind]!;
      expect(s.expected, `${kind} injected`).toBeGreaterThanOrEqual(3);
      expect(s.recall, `${kind} recall (missed ${s.missedMeters.join(', ')})`).toBeGreaterThanOrEqual(0.95);
      expect(
        s.precision,
        `${kind} precision (false positives ${s.falsePositiveMeters.join(', ')})`,
      ).toBeGreaterThanOrEqual(0.95);
    }
  }, 240_000);
});
