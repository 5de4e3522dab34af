/**
 * What a live loop makes a reading wait for besides the graph: the pause after an idle pull (no pull is
 * open meanwhile) and a checkpoint's capture slices while a write is landing (each of the write's hops
 * back to the JS thread waits for the slice running then).
 */
import { map, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, type SnapshotInProgress, StateStore } from '../../core/index.js';
import {
  type Checkpoint,
  type OutputBatch,
  type ReadingSource,
  type RunOptions,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import type { RawReading, Reading } from '../../schemas/reading.js';

const countingGraph =
  (store: StateStore, log: string[]) =>
  (input: Observable<FlowEvent<RawReading>>, sink: { readings(b: Reading[]): void }) =>
    input.pipe(
      map((e) => {
        if (e.kind !== 'data') return;
        const seen = store.value('seen', 0);
        seen.set(seen.get() + e.items.length);
        log.push(`graph ${seen.get()}`);
        sink.readings(e.items.map((r) => ({ status: 'measured', qualityScore: Number(r.value) }) as Reading));
      }),
    );

function runOptions(overrides: Partial<RunOptions> & Pick<RunOptions, 'source' | 'sinks'>): {
  run: RunOptions;
  saved: Checkpoint[];
} {
  const store = overrides.store ?? new StateStore();
  const saved: Checkpoint[] = [];
  return {
    saved,
    run: {
      checkpoints: { load: async () => undefined, save: async (cp) => void saved.push(cp) },
      store,
      connect: countingGraph(store, []),
      untilIdle: true,
      flushRows: 1_000,
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 1e9,
      idlePollMs: 1,
      now: () => 0,
      ...overrides,
    },
  };
}

/** A source that answers `idle` `times` times, each answer taking `waitsMs` of the test's clock. */
function idleSource(times: number, waitsMs: number, clock: { now: number }, abort: AbortController) {
  let pulls = 0;
  const source: ReadingSource = {
    name: 'idle',
    resumesFromPosition: true,
    open: async () => {},
    next: async () => {
      pulls += 1;
      clock.now += waitsMs;
      if (pulls >= times) abort.abort();
      return 'idle';
    },
    position: () => 0,
    commit: async () => {},
    close: async () => {},
  };
  return { source, pulls: () => pulls };
}

describe('a live loop between pulls', () => {
  it('does not pause again after an idle pull that waited for messages as long as the poll interval', async () => {
    const clock = { now: 0 };
    const abort = new AbortController();
    const { source, pulls } = idleSource(5, 60_000, clock, abort);
    const { run } = runOptions({
      source,
      sinks: { rollback: async () => {}, write: async () => {} },
      untilIdle: false,
      // A full pause after each of these pulls would take minutes: the test's timeout fails it.
      idlePollMs: 60_000,
      now: () => clock.now,
      signal: abort.signal,
    });
    await runPipeline(run);
    expect(pulls()).toBe(5);
  }, 10_000);

  it('still pauses the poll interval after an idle answer that came at once', async () => {
    const clock = { now: 0 };
    const abort = new AbortController();
    const { source, pulls } = idleSource(4, 0, clock, abort);
    const { run } = runOptions({
      source,
      sinks: { rollback: async () => {}, write: async () => {} },
      untilIdle: false,
      idlePollMs: 100,
      now: () => clock.now,
      signal: abort.signal,
    });
    const started = performance.now();
    await runPipeline(run);
    expect(pulls()).toBe(4);
    // Three pauses of 100 ms between the four pulls (a timer never fires much early).
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
  });

  it('takes no capture slice while a small write is landing, and finishes the capture between writes', async () => {
    const log: string[] = [];
    class RecordingStore extends StateStore {
      override beginSnapshot(opts?: { incremental?: boolean; delta?: boolean }): SnapshotInProgress {
        const s = super.beginSnapshot(opts);
        return {
          delta: s.delta,
          step: (deadline) => {
            if (Number.isFinite(deadline)) log.push('slice');
            return s.step(deadline);
          },
          finish: () => s.finish(),
          finishState: () => s.finishState(),
        };
      }
    }
    const store = new RecordingStore();
    const meters = store.keyed<{ history: number[] }>('meters');
    for (let m = 0; m < 20_000; m++) meters.set(`m${m}`, { history: [m, m + 1, m + 2] });
    let clock = 0;
    let i = 0;
    const pulls = 40;
    // One reading a pull, as a caught-up live consumer gets them; each pull 100 ms of the test's clock.
    const source: ReadingSource = {
      name: 'live',
      resumesFromPosition: true,
      open: async () => {},
      next: async (): Promise<SourceBatch | 'end'> => {
        await new Promise((resolve) => setImmediate(resolve));
        if (i >= pulls) return 'end';
        i += 1;
        clock += 100;
        log.push(`next ${i}`);
        return { records: [{ value: String(i) }] as RawReading[], quarantined: [], deadLettered: 0 };
      },
      position: () => i,
      commit: async () => {},
      close: async () => {},
    };
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const { run, saved } = runOptions({
      source,
      store,
      connect: countingGraph(store, []),
      sinks: {
        rollback: async () => {},
        write: async (b: OutputBatch) => {
          log.push(`write ${b.checkpoint}.${b.flush} start`);
          // Epoch 2's first write lands only after five more pulls.
          if (b.checkpoint === 2 && b.flush === 0) {
            const from = i;
            while (i < from + 5) await new Promise((resolve) => setImmediate(resolve));
            release();
          }
          log.push(`write ${b.checkpoint}.${b.flush} end`);
        },
      },
      // A write due by time after every pull; a checkpoint after three writes.
      flushIntervalMs: 100,
      checkpointEveryFlushes: 3,
      // Slices of one chunk of entries each: the capture needs many pulls.
      snapshotSliceMs: 1e-9,
      now: () => clock,
    });
    await runPipeline(run);
    await held;
    const start = log.indexOf('write 2.0 start');
    const end = log.indexOf('write 2.0 end');
    expect(start).toBeGreaterThan(0);
    // The capture was in progress when the write started, and pulls went on while it was landing …
    expect(log.slice(0, start)).toContain('slice');
    expect(log.slice(start, end).filter((l) => l.startsWith('next ')).length).toBeGreaterThanOrEqual(5);
    // … with no slice in between; the capture goes on after it.
    expect(log.slice(start, end)).not.toContain('slice');
    expect(log.slice(end)).toContain('slice');
    // The capture completed and its checkpoint was saved, and the run's last one after it.
    expect(saved.map((cp) => cp.seq).slice(0, 2)).toEqual([1, 2]);
  });
});
