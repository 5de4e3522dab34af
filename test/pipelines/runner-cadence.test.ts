import { map, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  type FlowEvent,
  PipelineGraph,
  parDo,
  type SnapshotInProgress,
  StageError,
  StateStore,
} from '../../core/index.js';
import {
  type Checkpoint,
  CheckpointFormatError,
  type OutputBatch,
  type ReadingSource,
  type RunOptions,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import type { RawReading, Reading } from '../../schemas/reading.js';

/** A bounded source over `pulls` pulls of two records each; its position is the pulls handed out. */
function countingSource(pulls: number, log: string[], resumesFromPosition: boolean): ReadingSource {
  let i = 0;
  return {
    name: 'counting',
    resumesFromPosition,
    open: async () => {},
    next: async (): Promise<SourceBatch | 'end'> => {
      if (i >= pulls) return 'end';
      i += 1;
      log.push(`next ${i}`);
      return {
        records: [{ value: String(i) }, { value: String(i) }] as RawReading[],
        quarantined: [],
        deadLettered: 0,
      };
    },
    position: () => i,
    commit: async () => {
      log.push(`ack ${i}`);
    },
    close: async () => {},
  };
}

/** Each record becomes a reading, and the store counts the records seen: state a checkpoint must carry. */
/** The source, with `step` (moving a test's clock) run before each of its pulls. */
function beforeEachPull(source: ReadingSource, step: () => void): ReadingSource {
  const next = source.next.bind(source);
  return {
    ...source,
    next: async () => {
      step();
      return next();
    },
  };
}

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

function options(
  log: string[],
  overrides: Partial<RunOptions> & Pick<RunOptions, 'source' | 'sinks'>,
): { run: RunOptions; saved: Checkpoint[] } {
  const store = new StateStore();
  const saved: Checkpoint[] = [];
  return {
    saved,
    run: {
      checkpoints: {
        load: async () => undefined,
        save: async (cp) => {
          log.push(`save ${cp.seq}`);
          saved.push(cp);
        },
      },
      store,
      connect: countingGraph(store, log),
      untilIdle: true,
      flushRows: 2,
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 60_000,
      idlePollMs: 1,
      now: () => 0,
      ...overrides,
    },
  };
}

/** A promise released once `source` has handed out the pull logged as `pull`, and that source. */
function releasedAfterPull(
  pull: string,
  source: ReadingSource,
  log: readonly string[],
): { source: ReadingSource; held: Promise<void> } {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  const next = source.next.bind(source);
  return {
    held,
    source: {
      ...source,
      next: async () => {
        const batch = await next();
        if (log.includes(pull)) setTimeout(release, 0);
        return batch;
      },
    },
  };
}

const recordingSinks = (log: string[], written: OutputBatch[]) => ({
  rollback: async () => {},
  write: async (b: OutputBatch) => {
    log.push(`write ${b.checkpoint}.${b.flush}`);
    written.push(b);
  },
});

describe('runPipeline: writes of outputs and checkpoints at their own cadences', () => {
  it('numbers writes within their epoch and saves state covering exactly what was written before', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    const { run, saved } = options(log, {
      source: countingSource(6, log, false),
      sinks: recordingSinks(log, written),
      checkpointEveryFlushes: 3,
    });
    const totals = await runPipeline(run);
    expect(written.map((b) => `${b.checkpoint}.${b.flush}`)).toEqual([
      '1.0',
      '1.1',
      '1.2',
      '2.0',
      '2.1',
      '2.2',
    ]);
    expect(written.every((b) => b.readings.length === 2)).toBe(true);
    // Two epochs of three writes, then the end's checkpoint (nothing left to write).
    expect(saved.map((cp) => [cp.seq, cp.position, cp.totals.readings])).toEqual([
      [1, 3, 6],
      [2, 6, 12],
      [3, 6, 12],
    ]);
    const seenAt = saved.map(
      (cp) => (JSON.parse(cp.state as string) as { values: { seen: number } }).values.seen,
    );
    expect(seenAt).toEqual([6, 12, 12]);
    expect(totals.readings).toBe(12);
    // A source that resumes from its acknowledgements is acknowledged after the checkpoint only.
    expect(log.filter((l) => l.startsWith('ack') || l.startsWith('save'))).toEqual([
      'save 1',
      'ack 3',
      'save 2',
      'ack 6',
      'save 3',
      'ack 6',
    ]);
  });

  it('acknowledges a source that resumes from its position after each write, before any checkpoint', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    const { run } = options(log, {
      source: countingSource(3, log, true),
      sinks: recordingSinks(log, written),
    });
    await runPipeline(run);
    const firstSave = log.indexOf('save 1');
    const acks = log.filter((l, i) => l.startsWith('ack') && i < firstSave);
    expect(acks.length).toBeGreaterThanOrEqual(2);
    // Every acknowledgement follows a finished write.
    for (const [i, line] of log.entries()) {
      if (line.startsWith('ack')) expect(log.slice(0, i).some((l) => l.startsWith('write'))).toBe(true);
    }
    expect(log.at(-1)).toBe('save 1');
  });

  it('goes on pulling and running the graph while a write is in flight, one write at a time', async () => {
    const log: string[] = [];
    // The first write is let go only after the loop has pulled the next batch (and had its turn).
    const { source, held: firstWriteHeld } = releasedAfterPull('next 2', countingSource(4, log, true), log);
    const { run, saved } = options(log, {
      source,
      sinks: {
        rollback: async () => {},
        write: async (b: OutputBatch) => {
          log.push(`write ${b.checkpoint}.${b.flush} start`);
          if (b.flush === 0) await firstWriteHeld;
          log.push(`write ${b.checkpoint}.${b.flush} end`);
        },
      },
    });
    await runPipeline(run);
    const at = (line: string) => log.indexOf(line);
    // Pulled and through the graph while the first write was held.
    expect(at('next 2')).toBeGreaterThan(at('write 1.0 start'));
    expect(at('graph 4')).toBeGreaterThan(at('next 2'));
    expect(at('graph 4')).toBeLessThan(at('write 1.0 end'));
    // The second write waits for the first.
    expect(at('write 1.1 start')).toBeGreaterThan(at('write 1.0 end'));
    expect(saved).toHaveLength(1);
    expect(at('save 1')).toBeGreaterThan(Math.max(...log.map((l, i) => (l.endsWith(' end') ? i : -1))));
  });

  it('pulls on while a write due by time is still landing, and writes what gathered once it has', async () => {
    const log: string[] = [];
    let clock = 0;
    // The first write lands only after the loop has pulled batch 4 (or after 2 s, so waiting fails rather than hangs).
    const { source: inner, held } = releasedAfterPull('next 4', countingSource(6, log, true), log);
    const timedOut = new Promise<void>((r) => setTimeout(r, 2_000));
    const written: OutputBatch[] = [];
    const { run } = options(log, {
      source: {
        ...inner,
        next: async () => {
          clock += 100;
          return inner.next();
        },
      },
      sinks: {
        rollback: async () => {},
        write: async (b: OutputBatch) => {
          log.push(`write ${b.checkpoint}.${b.flush} start`);
          if (b.flush === 0) await Promise.race([held, timedOut]);
          written.push(b);
          log.push(`write ${b.checkpoint}.${b.flush} end`);
        },
      },
      // A write due after every pull; the row limit out of reach.
      flushRows: 1_000,
      flushIntervalMs: 100,
      now: () => clock,
    });
    await runPipeline(run);
    const at = (line: string) => log.indexOf(line);
    expect(at('next 4')).toBeGreaterThan(at('write 1.0 start'));
    expect(at('next 4')).toBeLessThan(at('write 1.0 end'));
    // The next write carries every batch pulled while the first was landing; nothing is lost or doubled.
    expect(written[0]!.readings).toHaveLength(2);
    expect(written[1]!.readings.length).toBeGreaterThanOrEqual(6);
    expect(written.reduce((n, b) => n + b.readings.length, 0)).toBe(12);
  });

  it('starts no write by time for counts alone (the graph holds every record), and still checkpoints on time', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    let clock = 0;
    const { run, saved } = options(log, {
      source: beforeEachPull(countingSource(10, log, true), () => {
        clock += 400;
      }),
      sinks: recordingSinks(log, written),
      // A sort buffer waiting for the watermark: records in, nothing out yet.
      connect: (input) => input.pipe(map(() => undefined)),
      flushRows: 1_000,
      flushIntervalMs: 1_000,
      checkpointIntervalMs: 2_500,
      now: () => clock,
    });
    await runPipeline(run);
    // Pulls at 400 … 4000 ms: the checkpoint due at 2,800 ms writes the 7 pulls' counts, the end the other 3.
    expect(written.map((b) => [`${b.checkpoint}.${b.flush}`, b.recordsIn])).toEqual([
      ['1.0', 14],
      ['2.0', 6],
    ]);
    expect(saved.map((cp) => [cp.position, cp.totals.recordsIn])).toEqual([
      [7, 14],
      [10, 20],
    ]);
  });

  it('saves a checkpoint alongside the next batches when the source resumes from its position', async () => {
    const log: string[] = [];
    const { source, held: firstSaveHeld } = releasedAfterPull('next 2', countingSource(3, log, true), log);
    const { run } = options(log, {
      source,
      sinks: recordingSinks(log, []),
      checkpointEveryFlushes: 1,
      checkpoints: {
        load: async () => undefined,
        save: async (cp) => {
          log.push(`save ${cp.seq} start`);
          if (cp.seq === 1) await firstSaveHeld;
          log.push(`save ${cp.seq} end`);
        },
      },
    });
    await runPipeline(run);
    const at = (line: string) => log.indexOf(line);
    // The next batch runs through the graph while checkpoint 1 is still being saved (its save starts once
    // the epoch's last write landed, and is held here until the next pull).
    expect(at('save 1 start')).toBeGreaterThan(at('write 1.0'));
    expect(at('graph 4')).toBeLessThan(at('save 1 end'));
    // Outputs after the barrier belong to the next epoch.
    expect(at('write 2.0')).toBeGreaterThan(at('next 2'));
    expect(at('write 1.1')).toBe(-1);
    // Saves stay in order, one at a time, and the last is awaited.
    expect(at('save 2 start')).toBeGreaterThan(at('save 1 end'));
    expect(log.at(-1)).toBe('save 4 end'); // one per pull, and the end's
  });

  it('serializes the state between batches, and saves it as it was at the barrier', async () => {
    const log: string[] = [];
    const store = new StateStore();
    const meters = store.keyed<{ batches: number }>('meters');
    const snapshots: number[] = [];
    let batchesDuringSnapshots = 0;
    const { run, saved } = options(log, {
      source: countingSource(20, log, true),
      sinks: recordingSinks(log, []),
      store,
      // Every batch touches 1,000 meters' state in place, as the operators do.
      connect: (input, sink) =>
        input.pipe(
          map((e) => {
            if (e.kind !== 'data') return;
            if (store.snapshotInProgress) batchesDuringSnapshots += 1;
            for (let m = 0; m < 1000; m++) {
              const s = meters.get(`m${m}`);
              if (s === undefined) meters.set(`m${m}`, { batches: 1 });
              else s.batches += 1;
            }
            sink.readings(e.items.map(() => ({ status: 'measured', qualityScore: 100 }) as Reading));
          }),
        ),
      checkpointEveryFlushes: 5,
      // One slice of 64 entries per batch: a snapshot spans many batches.
      snapshotSliceMs: 1e-9,
      observer: { snapshotted: (_s, length) => snapshots.push(length) },
    });
    await runPipeline(run);
    const batchesOf = (cp: Checkpoint) => {
      const state = JSON.parse(cp.state as string) as { keyed: { meters: [string, { batches: number }][] } };
      return new Set(state.keyed.meters.map(([, s]) => s.batches));
    };
    // Barriers after pulls 5, 10, 15, 20, and the end's.
    expect(saved.map((cp) => cp.position)).toEqual([5, 10, 15, 20, 20]);
    for (const cp of saved) expect(batchesOf(cp)).toEqual(new Set([cp.position]));
    expect(snapshots).toHaveLength(5);
    // 1,000 entries in slices of 64 take several batches; each snapshot completes before the next barrier.
    expect(batchesDuringSnapshots).toBeGreaterThanOrEqual(12);
  });

  it('serializes between the pulls of a source it waits for in short slices: waiting is not the loop working', async () => {
    const log: string[] = [];
    /** Each step's budget: its deadline less the time it was called. */
    const budgets: number[] = [];
    class RecordingStore extends StateStore {
      override beginSnapshot(opts?: { incremental?: boolean; delta?: boolean }): SnapshotInProgress {
        const s = super.beginSnapshot(opts);
        return {
          delta: s.delta,
          step: (deadline) => {
            budgets.push(deadline - performance.now());
            return s.step(deadline);
          },
          finish: () => s.finish(),
          finishState: () => s.finishState(),
        };
      }
    }
    const store = new RecordingStore();
    const meters = store.keyed<{ history: number[] }>('meters');
    for (let m = 0; m < 20_000; m++) meters.set(`m${m}`, { history: [m, m + 1, m + 2, m + 3] });
    const counting = countingSource(30, log, true);
    // A live source: each pull waits for its message, 40 ms.
    const source: ReadingSource = {
      ...counting,
      next: async () => {
        await new Promise((resolve) => setTimeout(resolve, 40));
        return counting.next();
      },
    };
    const { run } = options(log, {
      source,
      sinks: recordingSinks(log, []),
      store,
      connect: countingGraph(store, log),
      checkpointEveryFlushes: 2,
    });
    await runPipeline(run);
    const slices = budgets.filter((b) => Number.isFinite(b));
    expect(slices.length).toBeGreaterThanOrEqual(3);
    // Slices follow the loop's own work (a few records a pull), not the 40 ms it waited for each pull.
    const sorted = [...slices].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)]!).toBeLessThan(20);
  });

  it('seals each epoch before its checkpoint is saved, and a failed seal saves nothing', async () => {
    for (const resumesFromPosition of [false, true]) {
      const log: string[] = [];
      const { run, saved } = options(log, {
        source: countingSource(4, log, resumesFromPosition),
        sinks: {
          ...recordingSinks(log, []),
          seal: async (epoch: number) => {
            log.push(`seal ${epoch}`);
          },
        },
        checkpointEveryFlushes: 2,
      });
      await runPipeline(run);
      expect(saved.map((cp) => cp.seq)).toEqual([1, 2, 3]);
      for (const cp of saved)
        expect(log.indexOf(`seal ${cp.seq}`)).toBeLessThan(log.indexOf(`save ${cp.seq}`));
      // Epoch 1's writes all come before its seal.
      expect(log.indexOf('seal 1')).toBeGreaterThan(log.indexOf('write 1.1'));

      const failing: string[] = [];
      const broken = new Error('lake full');
      const { run: runBroken, saved: savedBroken } = options(failing, {
        source: countingSource(4, failing, resumesFromPosition),
        sinks: {
          ...recordingSinks(failing, []),
          seal: async () => {
            throw broken;
          },
        },
        checkpointEveryFlushes: 2,
      });
      await expect(runPipeline(runBroken)).rejects.toBe(broken);
      expect(savedBroken).toEqual([]);
    }
  });

  it('cuts writes and checkpoints by time', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    let clock = 0;
    const { run, saved } = options(log, {
      source: beforeEachPull(countingSource(10, log, true), () => {
        clock += 400;
      }),
      sinks: recordingSinks(log, written),
      flushRows: 1_000,
      flushIntervalMs: 1_000,
      checkpointIntervalMs: 2_500,
      now: () => clock,
    });
    await runPipeline(run);
    // Pulls at 400, 800 … 4000 ms: a write once 1 s has passed since the last (1200, 2400, 3600 ms), a
    // checkpoint with the first write 2.5 s after the start, then the end's write and checkpoint.
    expect(written.map((b) => b.readings.length)).toEqual([6, 6, 6, 2]);
    expect(written.map((b) => `${b.checkpoint}.${b.flush}`)).toEqual(['1.0', '1.1', '1.2', '2.0']);
    expect(saved.map((cp) => cp.position)).toEqual([9, 10]);
  });

  it('stamps the state format in checkpoints and refuses to resume from another one', async () => {
    const log: string[] = [];
    const { run, saved } = options(log, {
      source: countingSource(2, log, false),
      sinks: recordingSinks(log, []),
      stateFormat: 'counting/2',
    });
    await runPipeline(run);
    expect(saved.length).toBeGreaterThan(0);
    expect(saved.every((cp) => cp.stateFormat === 'counting/2')).toBe(true);
    const last = saved.at(-1) as Checkpoint;

    // Same format: resumes where the checkpoint left off.
    const resumed = options([], { source: countingSource(0, [], false), sinks: recordingSinks([], []) });
    const totals = await runPipeline({
      ...resumed.run,
      stateFormat: 'counting/2',
      checkpoints: { load: async () => last, save: async () => {} },
    });
    expect(totals.readings).toBe(4);

    // Another format, or a checkpoint from before formats were stamped: nothing is restored or written.
    for (const [found, cp] of [
      ['counting/1', { ...last, stateFormat: 'counting/1' }],
      [undefined, { seq: last.seq, position: last.position, state: last.state, totals: last.totals }],
    ] as const) {
      const refusedLog: string[] = [];
      const refused = options(refusedLog, {
        source: countingSource(2, refusedLog, false),
        sinks: recordingSinks(refusedLog, []),
      });
      const error = await runPipeline({
        ...refused.run,
        stateFormat: 'counting/2',
        checkpoints: { load: async () => cp, save: async () => {} },
      }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(CheckpointFormatError);
      expect((error as CheckpointFormatError).found).toBe(found);
      expect((error as Error).message).toMatch(/this build reads counting\/2.*new --worker id/);
      expect(refusedLog).toEqual([]);
    }
  });

  it('resumes from a checkpoint of an earlier format it declares it restores, and stamps its own after', async () => {
    const { run, saved } = options([], {
      source: countingSource(2, [], false),
      sinks: recordingSinks([], []),
      stateFormat: 'counting/1',
    });
    await runPipeline(run);
    const old = saved.at(-1) as Checkpoint;
    const resumed = options([], { source: countingSource(1, [], false), sinks: recordingSinks([], []) });
    const next: Checkpoint[] = [];
    const totals = await runPipeline({
      ...resumed.run,
      stateFormat: 'counting/2',
      restoresStateFormats: ['counting/1'],
      checkpoints: { load: async () => old, save: async (cp) => void next.push(cp) },
    });
    expect(totals.readings).toBe(6);
    expect(next.at(-1)?.stateFormat).toBe('counting/2');
    // Only the formats it names: another one is still refused.
    const error = await runPipeline({
      ...options([], { source: countingSource(1, [], false), sinks: recordingSinks([], []) }).run,
      stateFormat: 'counting/3',
      restoresStateFormats: ['counting/2'],
      checkpoints: { load: async () => old, save: async () => {} },
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CheckpointFormatError);
  });

  it('calls beforePull just before each pull, so a batch can be stamped with its processing time', async () => {
    const log: string[] = [];
    const { run } = options(log, {
      source: countingSource(3, log, false),
      sinks: recordingSinks(log, []),
      beforePull: () => log.push('before pull'),
    });
    await runPipeline(run);
    const pulls = log.filter((l) => l.startsWith('next') || l === 'before pull');
    // Three batches, then the pull that finds the source ended.
    expect(pulls).toEqual([
      'before pull',
      'next 1',
      'before pull',
      'next 2',
      'before pull',
      'next 3',
      'before pull',
    ]);
  });
});

describe('runPipeline: a stage that throws stops the run', () => {
  it('writes nothing of the failing batch, saves no checkpoint past it, and reports the failure once', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    const store = new StateStore();
    const graph = new PipelineGraph('counting');
    graph.source('in');
    const failures: [unknown, number][] = [];
    const { run, saved } = options(log, {
      source: countingSource(10, log, true),
      sinks: recordingSinks(log, written),
      store,
      checkpointEveryFlushes: 2,
      // The 5th batch throws halfway: its first reading is buffered, the rest never made.
      connect: (input, sink) =>
        input.pipe(
          graph.stage(
            'failsOnFifth',
            parDo<RawReading, Reading>((r, out) => {
              if (r.value === '5' && store.value('seen', 0).get() === 9) throw new Error('bad reading');
              store.value('seen', 0).set(store.value('seen', 0).get() + 1);
              out.emit({ status: 'measured', qualityScore: Number(r.value) } as Reading);
            }),
          ),
          map((e) => {
            if (e.kind === 'data') sink.readings([...e.items]);
          }),
        ),
      observer: {
        graphFailed: async (error, checkpoint) => {
          failures.push([error, checkpoint]);
        },
      },
    });
    const error = await runPipeline(run).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StageError);
    expect((error as StageError).stage).toBe('failsOnFifth');
    expect(failures).toEqual([[error, 3]]);
    // Batches 1–4 written (two epochs), nothing of batch 5.
    expect(written.flatMap((b) => b.readings.map((r) => r.qualityScore))).toEqual([1, 1, 2, 2, 3, 3, 4, 4]);
    expect(saved.map((cp) => cp.position)).toEqual([2, 4]);
    expect(log.filter((l) => l.startsWith('ack')).at(-1)).toBe('ack 4');
  });
});

describe('runPipeline: the runner is the only driver of the graph', () => {
  it('injects a tick when the source is idle, and what the tick fires is written in that epoch', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    let clock = 0;
    let pulls = 0;
    const source: ReadingSource = {
      name: 'idle-after-one',
      resumesFromPosition: true,
      open: async () => {},
      // One batch, then idle until the run is stopped.
      next: async () => {
        pulls += 1;
        clock += 1_000;
        if (pulls === 1)
          return { records: [{ value: '1' }] as RawReading[], quarantined: [], deadLettered: 0 };
        return 'idle';
      },
      position: () => Math.min(pulls, 1),
      commit: async () => {},
      close: async () => {},
    };
    const abort = new AbortController();
    const ticks: number[] = [];
    const store = new StateStore();
    const { run, saved } = options(log, {
      source,
      store,
      sinks: recordingSinks(log, written),
      untilIdle: false,
      flushIntervalMs: 1,
      checkpointIntervalMs: 2_500,
      now: () => clock,
      signal: abort.signal,
      // A tick makes one reading of the state it changes: the pair must land in one epoch.
      connect: (input, sink) =>
        input.pipe(
          map((e) => {
            if (e.kind !== 'tick') return;
            ticks.push(e.now);
            const fired = store.value('fired', 0);
            fired.set(fired.get() + 1);
            sink.readings([{ status: 'missing', qualityScore: fired.get() } as Reading]);
            if (ticks.length === 4) abort.abort();
          }),
        ),
    });
    await runPipeline(run);
    expect(ticks).toEqual([2_000, 3_000, 4_000, 5_000]);
    // Every tick's reading is written in the epoch whose checkpoint counts it in the state.
    for (const cp of saved) {
      const fired = (JSON.parse(cp.state as string) as { values: { fired?: number } }).values.fired ?? 0;
      const upTo = written.filter((b) => b.checkpoint <= cp.seq).flatMap((b) => b.readings);
      expect(upTo.filter((r) => r.status === 'missing').map((r) => r.qualityScore)).toEqual(
        Array.from({ length: fired }, (_, i) => i + 1),
      );
    }
    expect(saved.length).toBeGreaterThanOrEqual(2);
  });
});
