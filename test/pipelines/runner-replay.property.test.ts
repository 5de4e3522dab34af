/**
 * Property: whatever the interleaving of batches, idle ticks, writes, saves and kills, restoring the last
 * checkpoint and replaying the source from its position ends with the outputs of an uninterrupted run,
 * as sinks that replace rows by key (ClickHouse's ReplacingMergeTree through FINAL) hold them.
 *
 * The source is a script of data batches and idle pulls, each at its own processing time; a replay sees
 * the same script from the checkpoint's position, so the ticks the runner injects at idle pulls, and the
 * processing time every batch is stamped with, are the same as the first time. A kill is a throw at a
 * pull, in the middle of a write (half the batch written) or in a save (nothing saved); the restarted
 * worker gets a fresh graph and state store and resumes from whatever checkpoint was last saved.
 */
import fc from 'fast-check';
import { BehaviorSubject, type SchedulerLike } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { landingReceivedAt } from '../../connectors/landing.js';
import { SideInput, StateStore } from '../../core/index.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import { parseRegistryCsv } from '../../operators/registry.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
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

const sim = createSimulation({ meters: 8, days: 2, start: '2024-03-11', seed: 3, gatewaySize: 4 });
const registry: MeterRegistry = parseRegistryCsv(sim.registryCsv()).registry;
const files: RawReading[][] = [...sim.hours()].map((h) => {
  const decoded = decodeReadings(Buffer.from(h.csv), {
    source: h.path,
    receivedAt: landingReceivedAt(h.path) ?? 0,
    lineRefs: true,
  });
  if (!decoded.ok) throw new Error(decoded.failure.reason);
  return decoded.readings;
});
const profile = resolveRuleProfile();
const IDLE_TIMEOUT_MS = 30_000;

type Item = { readonly at: number; readonly records?: readonly RawReading[] };

class Killed extends Error {
  override readonly name = 'Killed';
}

/** Where kills strike, counted over the whole test run (all restarts). */
interface Faults {
  readonly pulls: ReadonlySet<number>;
  readonly writes: ReadonlySet<number>;
  readonly saves: ReadonlySet<number>;
}

interface Cadence {
  readonly flushRows: number;
  readonly flushIntervalMs: number;
  readonly checkpointIntervalMs: number;
  readonly checkpointEveryFlushes: number | undefined;
  readonly resumesFromPosition: boolean;
  readonly snapshotSliceMs: number;
}

/** Row key per table, as the hot store's sorting keys: a rewrite replaces the row. */
const keyOf: Record<string, (row: Record<string, unknown>) => string> = {
  readings: (r) => `${r.meterId}|${r.ts}`,
  quarantine: (r) => `${r.source}|${r.raw}`,
  faults: (r) => `${r.meterId}|${r.faultType}|${r.windowStart}`,
  alerts: (r) => `${r.kind}|${r.meterId}|${r.ts}|${r.severity}|${r.message}`,
  hourly: (r) => `${r.meterId}|${r.hour}`,
  dailyPeaks: (r) => `${r.day}|${r.rank}`,
};

/** Everything written, replaced by key; wall-clock stamps left out as the end-to-end tests do. */
class ReplacingSinks {
  readonly tables = new Map<string, Map<string, string>>(Object.keys(keyOf).map((t) => [t, new Map()]));

  put(table: string, rows: readonly object[]): void {
    const into = this.tables.get(table)!;
    for (const row of rows) {
      const { processedAt: _p, quarantinedAt: _q, ...kept } = row as Record<string, unknown>;
      into.set(keyOf[table]!(kept), JSON.stringify(kept));
    }
  }

  content(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [table, rows] of this.tables)
      out[table] = [...rows.entries()].map(([k, v]) => `${k}=${v}`).sort();
    return out;
  }
}

/** Runs `items` to their end, restarting after every kill from the last saved checkpoint. */
async function runToEnd(items: readonly Item[], cadence: Cadence, faults: Faults) {
  const sinks = new ReplacingSinks();
  let saved: Checkpoint | undefined;
  let pulls = 0;
  let writes = 0;
  let saves = 0;
  let restarts = 0;
  for (;;) {
    let index = 0;
    let clock = 0;
    const scheduler = { now: () => clock } as SchedulerLike;
    const store = new StateStore();
    const interval = profile.gaps.defaultIntervalMs;
    const { connect } = meterQualityGraph({
      profile,
      registry: new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry)),
      store,
      lineage: { pipelineVersion: 'property', processedAt: () => 0 },
      replay: false,
      finalWatermark: (max) => max + interval,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      scheduler,
    });
    const source: ReadingSource = {
      name: 'script',
      resumesFromPosition: cadence.resumesFromPosition,
      open: async (position) => {
        index = typeof position === 'number' ? position : 0;
        clock = index > 0 ? items[index - 1]!.at : 0;
      },
      next: async (): Promise<SourceBatch | 'idle' | 'end'> => {
        pulls += 1;
        if (faults.pulls.has(pulls)) throw new Killed(`pull ${pulls}`);
        const item = items[index];
        if (item === undefined) return 'end';
        index += 1;
        clock = item.at;
        if (item.records === undefined) return 'idle';
        return { records: item.records, quarantined: [], deadLettered: 0 };
      },
      position: () => index,
      commit: async () => {},
      close: async () => {},
    };
    const write = async (batch: OutputBatch): Promise<void> => {
      writes += 1;
      const half = faults.writes.has(writes);
      const cut = <T>(rows: T[]): T[] => (half ? rows.slice(0, Math.ceil(rows.length / 2)) : rows);
      sinks.put('readings', cut(batch.readings));
      sinks.put('quarantine', cut(batch.quarantine));
      sinks.put('faults', cut(batch.faults));
      sinks.put('alerts', cut(batch.alerts));
      sinks.put('hourly', cut(batch.hourly));
      sinks.put('dailyPeaks', cut(batch.dailyPeaks));
      if (half) throw new Killed(`write ${writes}`);
    };
    try {
      const totals = await runPipeline({
        source,
        sinks: { rollback: async () => {}, write },
        checkpoints: {
          load: async () => saved,
          save: async (cp) => {
            saves += 1;
            if (faults.saves.has(saves)) throw new Killed(`save ${saves}`);
            saved = cp;
          },
        },
        store,
        connect,
        untilIdle: false,
        flushRows: cadence.flushRows,
        flushIntervalMs: cadence.flushIntervalMs,
        checkpointIntervalMs: cadence.checkpointIntervalMs,
        ...(cadence.checkpointEveryFlushes === undefined
          ? {}
          : { checkpointEveryFlushes: cadence.checkpointEveryFlushes }),
        snapshotSliceMs: cadence.snapshotSliceMs,
        idlePollMs: 0,
        now: () => clock,
      });
      return { content: sinks.content(), totals, restarts };
    } catch (err) {
      if (!(err instanceof Killed)) throw err;
      restarts += 1;
    }
  }
}

const NO_FAULTS: Faults = { pulls: new Set(), writes: new Set(), saves: new Set() };

/** The script: every file once, in order, with idle pulls between some, each at its processing time. */
const scriptArb = fc
  .array(fc.record({ idleBefore: fc.nat(1), dt: fc.integer({ min: 0, max: 45_000 }) }), {
    minLength: files.length,
    maxLength: files.length,
  })
  .map((steps) => {
    const items: Item[] = [];
    let at = Date.UTC(2024, 2, 13);
    steps.forEach((step, i) => {
      for (let k = 0; k < step.idleBefore; k++) {
        at += IDLE_TIMEOUT_MS / 2 + step.dt;
        items.push({ at });
      }
      at += step.dt;
      items.push({ at, records: files[i]! });
    });
    return items;
  });

const cadenceArb: fc.Arbitrary<Cadence> = fc.record({
  flushRows: fc.integer({ min: 20, max: 3_000 }),
  flushIntervalMs: fc.integer({ min: 1, max: 120_000 }),
  checkpointIntervalMs: fc.integer({ min: 30_000, max: 600_000 }),
  checkpointEveryFlushes: fc.option(fc.integer({ min: 2, max: 8 }), { nil: undefined }),
  resumesFromPosition: fc.boolean(),
  snapshotSliceMs: fc.constantFrom(0, 1e-9, 50),
});

const faultsArb = (span: number): fc.Arbitrary<Faults> =>
  fc
    .record({
      pulls: fc.uniqueArray(fc.integer({ min: 1, max: span }), { maxLength: 3 }),
      writes: fc.uniqueArray(fc.integer({ min: 1, max: span / 2 }), { maxLength: 2 }),
      saves: fc.uniqueArray(fc.integer({ min: 1, max: 12 }), { maxLength: 2 }),
    })
    .map((f) => ({ pulls: new Set(f.pulls), writes: new Set(f.writes), saves: new Set(f.saves) }));

const VARIANTS = 3;

describe('runPipeline: restore + replay reproduces the uninterrupted outputs', () => {
  it('for random interleavings of batches, idle ticks, writes, saves and kills', async () => {
    let killedRuns = 0;
    let restarts = 0;
    const span = files.length * 2;
    await fc.assert(
      fc.asyncProperty(
        scriptArb,
        cadenceArb,
        fc.array(fc.tuple(cadenceArb, faultsArb(span)), { minLength: VARIANTS, maxLength: VARIANTS }),
        async (items, cadence, variants) => {
          const reference = await runToEnd(items, cadence, NO_FAULTS);
          expect(reference.content.readings.length).toBeGreaterThan(0);
          for (const [other, faults] of variants) {
            const killed = await runToEnd(items, other, faults);
            if (killed.restarts > 0) killedRuns += 1;
            restarts += killed.restarts;
            expect(killed.content).toEqual(reference.content);
            expect(killed.totals).toEqual(reference.totals);
          }
        },
      ),
      // A counterexample holds the whole script: shrinking it would take minutes, the seed replays it.
      { numRuns: 6, endOnFailure: true },
    );
    // The property was exercised with kills, not only with clean runs.
    expect(killedRuns).toBeGreaterThanOrEqual(8);
    console.log(
      `[runner property] 6 scripts × ${VARIANTS} variants: ${killedRuns} with kills, ${restarts} restarts`,
    );
  }, 60_000);
});
