/**
 * The printed graph's tagged edges come from what each stage declares it emits; this checks the
 * declarations against what the stages emit on a week of simulated data with every fault kind, and that
 * every declared tag with a sink is drawn.
 */
import { BehaviorSubject, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { dataEvent, type FlowEvent, SideInput, StateStore } from '../../core/index.js';
import { ALERTS, FAULTS, type MeterRegistry, QUARANTINE } from '../../operators/outputs.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { meterQualityGraph } from '../../pipelines/meter-quality.js';
import type { RawReading } from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';

describe('the printed meter-quality graph', () => {
  it('draws an edge from every stage that emits a tagged output to its sink, and only those', () => {
    const sim = createSimulation({ meters: 200, days: 8, start: '2024-03-11', seed: 5, gatewaySize: 10 });
    const { registry } = parseRegistryCsv(sim.registryCsv());
    const { graph, connect } = meterQualityGraph({
      profile: resolveRuleProfile(),
      registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry)),
      store: new StateStore(),
      lineage: { pipelineVersion: 'graph-edges', processedAt: () => 0 },
      replay: false,
      finalWatermark: (max) => max + 15 * 60_000,
    });
    const input = new Subject<FlowEvent<RawReading>>();
    const ignore = () => {};
    connect(input, {
      readings: ignore,
      quarantine: ignore,
      faults: ignore,
      alerts: ignore,
      hourly: ignore,
      dailyPeaks: ignore,
    }).subscribe();
    for (const hour of sim.hours()) {
      const decoded = decodeReadings(Buffer.from(hour.csv), {
        source: hour.path,
        receivedAt: landingReceivedAt(hour.path) ?? 0,
        lineRefs: true,
      });
      if (decoded.ok) input.next(dataEvent(decoded.readings));
    }
    input.complete();

    const mermaid = graph.toMermaid();
    const ids = new Map(
      [...mermaid.matchAll(/^ {2}(n\d+)\[\(?"([^"]+)"/gm)].map((m) => [m[2]!, m[1]!] as const),
    );
    const emitted = new Map<string, Set<string>>();
    for (const [stage, counters] of Object.entries(graph.stageCounters())) {
      const tags = new Set(Object.keys(counters.tagged));
      // What a stage emits on this data it declares …
      expect(
        [...tags].filter((t) => !graph.declaredTags(stage).includes(t)),
        stage,
      ).toEqual([]);
      for (const tag of tags) emitted.set(tag, (emitted.get(tag) ?? new Set()).add(stage));
      // … and every tag it declares is drawn to its sink.
      for (const tag of graph.declaredTags(stage)) {
        if (!['quarantine', 'faults', 'alerts'].includes(tag)) continue;
        expect(mermaid).toContain(`${ids.get(stage)} -. ${tag} .-> ${ids.get(tag)}`);
      }
    }
    // The data exercised every tagged sink from more than one stage.
    for (const tag of [QUARANTINE, FAULTS, ALERTS]) expect(emitted.get(tag.name)?.size).toBeGreaterThan(3);
  }, 60_000);
});
