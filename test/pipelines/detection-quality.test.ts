import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { type RuleProfile, resolveRuleProfile } from '../../operators/rule-profile.js';
import { runGraphInMemoryAsync } from '../../pipelines/in-memory.js';
import type { RawReading } from '../../schemas/reading.js';
import {
  createSimulation,
  type FaultKind,
  faultKinds,
  type KindScore,
  type Simulation,
  scoreDetections,
  unitKinds,
} from '../../simulator/index.js';

/**
 * The acceptance measure: run every rule over a simulated fleet (mixed neighborhoods, 15- and
 * 30-minute meters, realistic households) and count, per fault kind, what was injected, what was found,
 * and the false faults on healthy meters (meters without any label but the fleet-wide unit variations).
 * Side-effect labels are tolerated (neither credited nor blamed).
 *
 * CI runs one seed at full size (2,000 meters × 14 days) and two more at 600 meters; the literal seed
 * erratic-spike rule (B4.2, mean + 4σ) is measured beside the default on the smaller runs.
 * `GS_DETECTION_FULL=1` runs all three seeds at full size and measures the literal rule on each.
 */
const full = process.env.GS_DETECTION_FULL === '1';
/** 2.5 % of meters per fault kind: precision and recall measured on 50 faults a kind at full size, not 30. */
const FAULT_RATE = 0.025;
const runs = [
  { seed: 11, meters: 2000, days: 14, literal: full },
  { seed: 12, meters: full ? 2000 : 600, days: 14, literal: true },
  { seed: 13, meters: full ? 2000 : 600, days: 14, literal: true },
];

interface Measured {
  scores: Partial<Record<FaultKind, KindScore>>;
  /** Healthy meters with a fault of each kind. */
  falseOnHealthy: Record<FaultKind, number>;
  healthy: number;
  healthyWithAnyFault: number;
}

/** Hands the event loop back, so the test runner's worker stays responsive during minutes of work. */
const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

async function simulate(
  seed: number,
  meters: number,
  days: number,
): Promise<{
  sim: Simulation;
  batches: RawReading[][];
  lines: number;
  undecodable: number;
}> {
  const sim = createSimulation({ meters, days, start: '2024-03-11', seed, faultRate: FAULT_RATE });
  const batches: RawReading[][] = [];
  let lines = 0;
  let undecodable = 0;
  for (const hour of sim.hours()) {
    const decoded = decodeReadings(Buffer.from(hour.csv), {
      source: hour.path,
      receivedAt: landingReceivedAt(hour.path) ?? 0,
      lineRefs: true,
    });
    lines += hour.lines;
    if (!decoded.ok) throw new Error(`${hour.path} dead-lettered`);
    batches.push(decoded.readings);
    undecodable += decoded.failures.length;
    if (batches.length % 8 === 0) await yieldNow();
  }
  return { sim, batches, lines, undecodable };
}

async function measure(
  sim: Simulation,
  batches: RawReading[][],
  profile: RuleProfile,
  lines?: number,
  undecodable = 0,
): Promise<Measured> {
  const { registry, errors } = parseRegistryCsv(sim.registryCsv());
  expect(errors).toEqual([]);
  const out = await runGraphInMemoryAsync(batches, registry, profile);
  if (lines !== undefined) {
    // Nothing lost: every line is a stored received reading, quarantined, or unreadable.
    const measured = out.readings.filter((r) => r.status === 'measured').length;
    expect(measured + out.quarantine.length + undecodable).toBe(lines);
  }
  const detections = out.faults.map((f) => ({ meterId: f.meterId, kind: f.faultType }));
  const scores = scoreDetections(sim.labels.labels, detections, faultKinds) as Measured['scores'];
  const labelled = new Set(
    sim.labels.labels.filter((l) => !(unitKinds as readonly string[]).includes(l.kind)).map((l) => l.meterId),
  );
  const healthy = new Set(
    sim.registry.filter((m) => !m.vacant && !labelled.has(m.meterId)).map((m) => m.meterId),
  );
  const falseOnHealthy = Object.fromEntries(faultKinds.map((k) => [k, new Set<string>()])) as Record<
    FaultKind,
    Set<string>
  >;
  const faulty = new Set<string>();
  for (const d of detections) {
    if (!healthy.has(d.meterId)) continue;
    falseOnHealthy[d.kind].add(d.meterId);
    faulty.add(d.meterId);
  }
  return {
    scores,
    falseOnHealthy: Object.fromEntries(faultKinds.map((k) => [k, falseOnHealthy[k].size])) as Record<
      FaultKind,
      number
    >,
    healthy: healthy.size,
    healthyWithAnyFault: faulty.size,
  };
}

function table(title: string, m: Measured): string {
  const rows = faultKinds.map((kind) => {
    const s = m.scores[kind]!;
    return `| ${kind.padEnd(20)} | ${String(s.expected).padStart(8)} | ${String(s.truePositives).padStart(5)} | ${String(s.falsePositives).padStart(5)} | ${String(m.falseOnHealthy[kind]).padStart(17)} | ${s.recall.toFixed(3)} | ${s.precision.toFixed(3)} |`;
  });
  return [
    title,
    '| kind                 | injected | found | false | false on healthy  | recall | precision |',
    '|----------------------|----------|-------|-------|-------------------|--------|-----------|',
    ...rows,
    `healthy meters: ${m.healthy}, with any fault: ${m.healthyWithAnyFault} (${((100 * m.healthyWithAnyFault) / m.healthy).toFixed(2)} %)`,
  ].join('\n');
}

describe('fault detection on a realistic simulated fleet', () => {
  for (const run of runs) {
    it(`seed ${run.seed}: ${run.meters} meters × ${run.days} days — recall and precision ≥ 0.98 per kind, ≤ 1 % of healthy meters with a fault`, async () => {
      const started = performance.now();
      const { sim, batches, lines, undecodable } = await simulate(run.seed, run.meters, run.days);
      const own = await measure(sim, batches, resolveRuleProfile(), lines, undecodable);
      const report = [
        table(
          `seed ${run.seed}, ${run.meters} meters × ${run.days} days, erratic spike: own_profile (default)`,
          own,
        ),
      ];
      let literal: Measured | undefined;
      if (run.literal) {
        literal = await measure(sim, batches, resolveRuleProfile({ faults: { spikeRule: 'seed_sigma' } }));
        const s = literal.scores.erratic_spike!;
        report.push(
          `erratic spike, seed_sigma (B4.2 literal, mean + 4σ of 7 days): injected ${s.expected}, found ${s.truePositives}, false ${s.falsePositives}, false on healthy ${literal.falseOnHealthy.erratic_spike} of ${literal.healthy} (${((100 * literal.falseOnHealthy.erratic_spike) / literal.healthy).toFixed(1)} %), recall ${s.recall.toFixed(3)}, precision ${s.precision.toFixed(3)}`,
        );
      }
      report.push(`elapsed ${Math.round(performance.now() - started)} ms`);
      console.log(report.join('\n'));

      for (const kind of faultKinds) {
        const s = own.scores[kind]!;
        expect(s.expected, `${kind} injected`).toBeGreaterThanOrEqual(5);
        expect(s.recall, `${kind} recall (missed ${s.missedMeters.join(', ')})`).toBeGreaterThanOrEqual(0.98);
        expect(
          s.precision,
          `${kind} precision (false ${s.falsePositiveMeters.join(', ')})`,
        ).toBeGreaterThanOrEqual(0.98);
      }
      expect(own.healthy).toBeGreaterThan(run.meters * 0.6);
      expect(own.healthyWithAnyFault / own.healthy).toBeLessThanOrEqual(0.01);
      if (literal) {
        // The literal rule is what the issue reported: it flags ordinary evening peaks on most homes.
        expect(literal.falseOnHealthy.erratic_spike / literal.healthy).toBeGreaterThan(0.2);
      }
    }, 240_000);
  }
});
