/**
 * The end of a bounded input advances the watermark in bounded steps: the timers it fires (the last
 * hours of every meter, their sort buffers, gap fills, day rules) reach the sinks in several writes of
 * about the flush size, not one write holding the whole burst, and the rows are those of one jump.
 */
import { BehaviorSubject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { SideInput, StateStore } from '../../core/index.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type CollectedOutputs, runGraphInMemory } from '../../pipelines/in-memory.js';
import { meterQualityGraph } from '../../pipelines/meter-quality.js';
import {
  type Checkpoint,
  type OutputBatch,
  type ReadingSource,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import type { RawReading } from '../../schemas/reading.js';
import { createSimulation } from '../../simulator/index.js';

const METERS = 600;
const FLUSH_ROWS = 1_000;

const sim = createSimulation({ meters: METERS, days: 1, start: '2024-03-11', seed: 4, gatewaySize: 100 });
const { registry } = parseRegistryCsv(sim.registryCsv());
/** The day's landing files, hour by hour: one pull per hour. */
const hours: RawReading[][] = (() => {
  const byHour = new Map<string, RawReading[]>();
  for (const h of sim.hours()) {
    const decoded = decodeReadings(Buffer.from(h.csv), {
      source: h.path,
      receivedAt: landingReceivedAt(h.path) ?? 0,
      lineRefs: true,
    });
    if (!decoded.ok) throw new Error(decoded.failure.reason);
    const key = h.path.split('/').slice(0, -1).join('/');
    byHour.set(key, [...(byHour.get(key) ?? []), ...decoded.readings]);
  }
  return [...byHour.values()];
})();

const rows = (b: OutputBatch | CollectedOutputs): number =>
  b.readings.length +
  b.quarantine.length +
  b.faults.length +
  b.alerts.length +
  b.hourly.length +
  b.dailyPeaks.length;

function hourSource(pulls: readonly RawReading[][], from: number): ReadingSource & { pulled: () => number } {
  let i = from;
  return {
    name: 'hours',
    resumesFromPosition: true,
    open: async () => {},
    next: async (): Promise<SourceBatch | 'end'> => {
      const records = pulls[i];
      if (records === undefined) return 'end';
      i += 1;
      return { records, quarantined: [], deadLettered: 0 };
    },
    position: () => i,
    commit: async () => {},
    close: async () => {},
    pulled: () => i,
  };
}

interface Run {
  /** Rows of each write after the source's last pull (the end of input's burst). */
  readonly afterEnd: number[];
  readonly written: OutputBatch[];
  readonly saved: Checkpoint[];
}

async function run(
  previous: Checkpoint | undefined,
  stopAfterWrites = Number.POSITIVE_INFINITY,
): Promise<Run> {
  const store = new StateStore();
  const profile = resolveRuleProfile();
  const interval = profile.gaps.defaultIntervalMs;
  const { connect } = meterQualityGraph({
    profile,
    registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry)),
    store,
    lineage: { pipelineVersion: 'test', processedAt: () => 0 },
    replay: false,
    finalWatermark: (max) => max + interval,
    finalStepMs: interval,
  });
  const source = hourSource(hours, Number(previous?.position ?? 0));
  const written: OutputBatch[] = [];
  const afterEnd: number[] = [];
  const saved: Checkpoint[] = [];
  const abort = new AbortController();
  let afterEndWrites = 0;
  await runPipeline({
    source,
    sinks: {
      rollback: async () => {},
      write: async (batch) => {
        written.push(batch);
        if (source.pulled() < hours.length) return;
        afterEnd.push(rows(batch));
        afterEndWrites += 1;
        if (afterEndWrites >= stopAfterWrites) abort.abort();
      },
    },
    checkpoints: {
      load: async () => previous,
      save: async (cp) => {
        saved.push(cp);
      },
    },
    store,
    connect,
    untilIdle: true,
    flushRows: FLUSH_ROWS,
    flushIntervalMs: 60_000,
    checkpointIntervalMs: 60_000,
    checkpointEveryFlushes: 1,
    snapshotSliceMs: 0,
    idlePollMs: 1,
    now: () => 0,
    signal: abort.signal,
  });
  return { afterEnd, written, saved };
}

const summary = (batches: readonly (OutputBatch | CollectedOutputs)[]) => ({
  readings: batches
    .flatMap((o) => o.readings)
    .map((r) => `${r.meterId}|${r.ts}|${r.kw}|${r.status}|${[...r.flags].sort()}|${r.qualityScore}`)
    .sort(),
  faults: batches
    .flatMap((o) => o.faults)
    .map((f) => `${f.meterId}|${f.faultType}|${f.windowStart}`)
    .sort(),
  alerts: batches
    .flatMap((o) => o.alerts)
    .map((a) => `${a.kind}|${a.meterId}|${a.ts}`)
    .sort(),
  hourly: batches
    .flatMap((o) => o.hourly)
    .map((h) => `${h.meterId}|${h.hour}|${h.count}|${h.avgKw}`)
    .sort(),
  dailyPeaks: batches
    .flatMap((o) => o.dailyPeaks)
    .map((p) => `${p.day}|${p.rank}|${p.hour}`)
    .sort(),
});

describe('the end of a bounded input', () => {
  // One jump: what the in-memory run (no runner, no steps) gives, and the size of the end's burst.
  const oneJump = runGraphInMemory(hours, registry, resolveRuleProfile());

  it('reaches the sinks in bounded writes, with the rows of one jump', async () => {
    const { afterEnd, written } = await run(undefined);
    // The burst is several flush sizes: the last hour and a quarter of every meter, and the day's rules.
    expect(afterEnd.reduce((a, b) => a + b, 0)).toBeGreaterThan(3 * FLUSH_ROWS);
    expect(afterEnd.length).toBeGreaterThanOrEqual(3);
    // A step fires one interval of every meter (a reading, an hour, a gap fill each at most) on top of
    // the flush size buffered before it.
    for (const n of afterEnd) expect(n).toBeLessThanOrEqual(FLUSH_ROWS + 3 * METERS);
    expect(summary(written)).toEqual(summary([oneJump]));
    expect(rows({ ...oneJump })).toBe(written.reduce((a, b) => a + rows(b), 0));
  }, 60_000);

  // After 2 writes the watermark stage is still stepping; after 8, the hourly stage's hold.
  it.each([2, 8])(
    'checkpointed between two steps (after %i writes) and resumed, ends with the same rows',
    async (writes) => {
      const first = await run(undefined, writes);
      const cut = first.saved.at(-1);
      expect(cut).toBeDefined();
      // The cut falls inside the drain: the source was at its end, the watermark short of the final one.
      expect(cut?.position).toBe(hours.length);
      // What the resumed run redoes is the epoch after the cut: the first run's writes up to it stand.
      const upTo = first.written.filter((b) => b.checkpoint <= (cut?.seq ?? 0));
      const resumed = await run(cut);
      expect(resumed.afterEnd.length).toBeGreaterThanOrEqual(1);
      expect(summary([...upTo, ...resumed.written])).toEqual(summary([oneJump]));
    },
    60_000,
  );
});
