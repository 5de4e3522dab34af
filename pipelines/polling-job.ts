/**
 * The polling sources' job on the epoch coordinator, the runner of the meter-quality job: pulls of the
 * polling source are buffered as they come (no operator state), written to `weather_observations`,
 * `grid_status` and `source_dead_letters` at each write, and the feeds' positions are saved in the
 * checkpoint once those writes landed, so a restart asks for the period after the last one stored.
 */
import { ignoreElements, type Observable, type Observer } from 'rxjs';
import type { HotStore } from '../connectors/clickhouse.js';
import { insertModelRows } from '../connectors/model-tables.js';
import { type FlowEvent, StateStore } from '../core/index.js';
import type { GridStatus, SourceDeadLetter, WeatherObservation } from '../schemas/external.js';
import type { CheckpointStore, EpochBatch, EpochGraph, EpochSinks, Source } from './contracts.js';
import { EpochCoordinator } from './epoch-coordinator.js';
import type { PollPull } from './polling-source.js';

export interface PollBatch extends EpochBatch {
  readonly weather: readonly WeatherObservation[];
  readonly grid: readonly GridStatus[];
  readonly deadLetters: readonly SourceDeadLetter[];
}

export interface PollTotals {
  readonly weather: number;
  readonly grid: number;
  readonly deadLettered: number;
}

function pollGraph(): EpochGraph<PollPull, PollBatch, PollTotals> {
  let weather: WeatherObservation[] = [];
  let grid: GridStatus[] = [];
  let deadLetters: SourceDeadLetter[] = [];
  return {
    connect: (input: Observable<FlowEvent<unknown>>) => input.pipe(ignoreElements()),
    accept(pull: PollPull, _input: Observer<FlowEvent<unknown>>): number {
      weather.push(...pull.weather);
      grid.push(...pull.grid);
      deadLetters.push(...pull.deadLetters);
      return pull.weather.length + pull.grid.length + pull.deadLetters.length;
    },
    get bufferedRows() {
      return weather.length + grid.length + deadLetters.length;
    },
    get empty() {
      return weather.length + grid.length + deadLetters.length === 0;
    },
    take(checkpoint, flush) {
      const batch = { checkpoint, flush, weather, grid, deadLetters };
      weather = [];
      grid = [];
      deadLetters = [];
      return batch;
    },
    initialTotals: () => ({ weather: 0, grid: 0, deadLettered: 0 }),
    addTotals: (t, b) => ({
      weather: t.weather + b.weather.length,
      grid: t.grid + b.grid.length,
      deadLettered: t.deadLettered + b.deadLetters.length,
    }),
  };
}

/** The tables replace rows by key, so an epoch redone after a crash rewrites rather than doubles. */
function pollSinks(store: HotStore): EpochSinks<PollBatch> {
  return {
    async rollback() {},
    async write(batch) {
      if (batch.weather.length > 0) await insertModelRows(store, 'weather_observations', batch.weather);
      if (batch.grid.length > 0) await insertModelRows(store, 'grid_status', batch.grid);
      if (batch.deadLetters.length > 0)
        await insertModelRows(store, 'source_dead_letters', batch.deadLetters);
    },
  };
}

export interface PollingJobOptions {
  readonly source: Source<PollPull>;
  /** Migrated by the job. */
  readonly store: HotStore;
  readonly checkpoints: CheckpointStore<PollTotals>;
  /** Stop once every feed is caught up (or at its `until`). */
  readonly untilIdle: boolean;
  /** Pause between polls of caught-up feeds; default 60 s. */
  readonly idlePollMs?: number;
  readonly signal?: AbortSignal;
  readonly now?: () => number;
}

export async function runPollingJob(options: PollingJobOptions): Promise<PollTotals> {
  await options.store.migrate();
  return new EpochCoordinator<PollPull, PollBatch, PollTotals>({
    source: options.source,
    sinks: pollSinks(options.store),
    checkpoints: options.checkpoints,
    store: new StateStore(),
    graph: pollGraph(),
    untilIdle: options.untilIdle,
    flushRows: 10_000,
    flushIntervalMs: 1000,
    checkpointIntervalMs: 0,
    checkpointEveryFlushes: 1,
    idlePollMs: options.idlePollMs ?? 60_000,
    now: options.now ?? Date.now,
    stateFormat: 'polling/1',
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  }).run();
}
