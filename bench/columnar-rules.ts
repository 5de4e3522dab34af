/**
 * `node --expose-gc dist/bench/columnar-rules.js [--meters 5000] [--rounds 5] [--days 1] [--short-faults]
 * [--rough] [--only name,…]`: what a columnar graph (issue 15) would buy the per-meter chain. The simulated
 * day is taken through the stages before the chain once, untimed (and through event-time ordering and gap
 * filling, for the members after them); then each ported member (`columnar/column-stages.ts`,
 * `columnar/column-rules.ts`), the three rules as a chain and the five members as a chain, run over their
 * input as rows (a keyed chain, as the graph runs them, each batch a fresh copy) and as columns (typed
 * arrays filled before the clock), in alternating order round by round, each in a fresh store. Reported:
 * CPU ns a reading in (median of the rounds after the first), GC pause share of the round's wall time,
 * and the conversions a chain-only columnar step would pay at its edges. A golden check
 * (`columnar/check.ts`) runs first and fails the bench when a port differs from its row member;
 * `--short-faults` runs it (and the rounds) with 2-hour zero and stuck thresholds, so that a day raises
 * and clears faults; `--rough` on rougher data (`columnar/rule-input.ts`).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Observable } from 'rxjs';
import {
  chainMember,
  dataEvent,
  type FlowEvent,
  keyedChain,
  type StateStore,
  type StoreSnapshot,
} from '../core/index.js';
import { METER_KEYS } from '../operators/meter-key.js';
import type { Reading } from '../schemas/reading.js';
import {
  CHAIN,
  checkColumnar,
  copyRow,
  flagOrder,
  PORTED,
  type RulePair,
  rulePairs,
  STAGES,
  storeFor,
} from './columnar/check.js';
import { ColumnChain } from './columnar/column-chain.js';
import { type ColumnRule, runColumnChain, TagLists } from './columnar/column-rules.js';
import {
  copyColumns,
  otherColumns,
  type ReadingColumns,
  rowsOut,
  toColumns,
  toRows,
  writeBackFlags,
} from './columnar/reading-columns.js';
import { ruleInput } from './columnar/rule-input.js';

const { values } = parseArgs({
  options: {
    meters: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    days: { type: 'string', default: '1' },
    'short-faults': { type: 'boolean', default: false },
    rough: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const {
  profile,
  registry,
  chainEvents,
  orderedEvents,
  events: input,
  meterKeys,
} = ruleInput({
  meters: Number(values.meters),
  days: Number(values.days),
  shortFaults: values['short-faults'],
  rough: values.rough,
});
const data = input.filter((e) => e.kind === 'data').map((e) => e.items);
const readings = data.reduce((n, items) => n + items.length, 0);
const pairs = rulePairs(profile, registry);

/** A case: members run as one chain over their input. */
interface Case {
  readonly members: readonly RulePair[];
  readonly input: readonly FlowEvent<Reading>[];
}
const allCases: Record<string, Case> = {
  orderByEventTime: { members: [pairs.orderByEventTime], input: chainEvents },
  fillGaps: { members: [pairs.fillGaps], input: orderedEvents },
  ...Object.fromEntries(PORTED.map((name) => [name, { members: [pairs[name]], input }])),
  chainOfThree: { members: PORTED.map((name) => pairs[name]), input },
  chainOfFive: { members: CHAIN.map((name) => pairs[name]), input: chainEvents },
};
const only = values.only?.split(',');
const cases = Object.fromEntries(
  Object.entries(allCases).filter(([name]) => only === undefined || only.includes(name)),
);
void STAGES;
/** Readings into each case's first member. */
const readingsIn = (c: Case): number =>
  c.input.reduce((n, e) => n + (e.kind === 'data' ? e.items.length : 0), 0);

// The golden check, before anything is timed.
const checks: Record<string, unknown> = {};
for (const [name, c] of Object.entries(cases)) {
  const result = checkColumnar(c.input, meterKeys, c.members);
  checks[name] = { readingsIn: readingsIn(c), ...result };
  if (result.mismatches.length > 0) {
    console.error(JSON.stringify({ check: name, ...result }, null, 1));
    process.exit(1);
  }
}

/** The columns of every data batch of an input, filled once; each round works on copies of them. */
const columnsOf = new Map<readonly FlowEvent<Reading>[], ReadingColumns[]>();
const entryColumnsOf = (events: readonly FlowEvent<Reading>[]): ReadingColumns[] => {
  let columns = columnsOf.get(events);
  if (columns === undefined) {
    const index = storeFor(meterKeys).denseKeys(METER_KEYS);
    columns = events.filter((e) => e.kind === 'data').map((e) => toColumns(e.items, index));
    columnsOf.set(events, columns);
  }
  return columns;
};
const entryColumns = entryColumnsOf(input);

/** GC pauses as the runtime reports them, matched to the rounds by their start times afterwards. */
const pauses: { start: number; ms: number }[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pauses.push({ start: e.startTime, ms: e.duration });
});
gcObserver.observe({ entryTypes: ['gc'] });

/** How long a round waits after the collection before its clock starts. */
const SETTLE_MS = 1000;

interface Timing {
  cpuMs: number;
  wallStart: number;
  wallEnd: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Times `work` (CPU of the process, minus the CPU `untimed` reports), after a full collection and a pause
 * for its sweeping to end: the sweeper runs on other threads after `gc()` returns, and a round of a few
 * tens of ms that starts at once is charged several times its own CPU for it.
 */
async function timed(work: (untimed: (us: number) => void) => void): Promise<Timing> {
  globalThis.gc?.();
  await sleep(SETTLE_MS);
  let excludedUs = 0;
  const wallStart = performance.now();
  const cpu = process.cpuUsage();
  work((us) => {
    excludedUs += us;
  });
  const used = process.cpuUsage(cpu);
  const wallEnd = performance.now();
  return { cpuMs: (used.user + used.system - excludedUs) / 1000, wallStart, wallEnd };
}

function cpuUs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return u.user + u.system;
}

/**
 * A store for the rules, and a way back to its state before the first round. Each shape's rules are built
 * once and their state put back before every round: the process then runs the same functions round after
 * round, warm, as a long-running job does (rules built afresh each round were re-optimized every round,
 * and a round spent much of its time in unoptimized code).
 */
function freshStore(): { store: StateStore; reset: () => void } {
  const store = storeFor(meterKeys);
  let fresh: StoreSnapshot | undefined;
  return {
    store,
    reset: () => {
      fresh ??= store.snapshot();
      store.restore(fresh);
    },
  };
}

/** The members as rows: a keyed chain of them over a fresh copy of each batch (its copying left out). */
function rowRig({ members, input }: Case): () => Promise<Timing> {
  const { store, reset } = freshStore();
  const chain = keyedChain(
    store,
    members.map((p) => chainMember(p.spec(store))),
  );
  reset();
  return () => {
    reset();
    return timed((untimed) => {
      const events = new Observable<FlowEvent<Reading>>((subscriber) => {
        for (const e of input) {
          if (e.kind !== 'data') {
            subscriber.next(e);
            continue;
          }
          const copying = process.cpuUsage();
          const copy = dataEvent(e.items.map(copyRow));
          untimed(cpuUs(copying));
          subscriber.next(copy);
        }
        subscriber.complete();
      });
      events.pipe(chain).subscribe();
    });
  };
}

/** The members as columns over copies of the batches' flags, made before the clock starts. */
function columnRig({ members, input }: Case): () => Promise<Timing> {
  const { store, reset } = freshStore();
  const columns = members.map((p) => p.columns(store));
  const entry = entryColumnsOf(input);
  reset();
  return () => {
    reset();
    const chain = new ColumnChain(store, columns);
    const batches = entry.map(copyColumns);
    return timed(() => {
      let j = 0;
      for (const e of input) {
        if (e.kind === 'data') chain.data(batches[j++]!);
        else if (e.kind === 'watermark') chain.watermark(e.time);
      }
    });
  };
}

/** The conversions at a chain's edges, each over every batch. */
const conversions = {
  /** Rows → the columns the rules read (rows kept, to go on after the chain). */
  toColumns: (): Promise<Timing> => {
    const index = storeFor(meterKeys).denseKeys(METER_KEYS);
    return timed(() => {
      for (const items of data) toColumns(items, index);
    });
  },
  /** Flags the chain set written back onto the rows (copies made outside the clock). */
  writeBackFlags: (): Promise<Timing> => {
    const store = storeFor(meterKeys);
    const rules = PORTED.map((name) => pairs[name].columns(store) as ColumnRule);
    const sinks = rules.map(() => new TagLists());
    const tags = new TagLists();
    const order = flagOrder(rules);
    const after = entryColumns.map(copyColumns);
    for (const b of after) runColumnChain(rules, sinks, b, tags);
    return timed((untimed) => {
      for (let j = 0; j < data.length; j++) {
        const copying = process.cpuUsage();
        const rows = data[j]!.map(copyRow);
        untimed(cpuUs(copying));
        writeBackFlags(rows, after[j]!, entryColumns[j]!.flags, order);
      }
    });
  },
  /** Rows → every field as columns (what rows → an all-columns batch costs). */
  toAllColumns: (): Promise<Timing> => {
    const index = storeFor(meterKeys).denseKeys(METER_KEYS);
    return timed(() => {
      for (const items of data) {
        toColumns(items, index);
        otherColumns(items);
      }
    });
  },
  /** An all-columns batch → fresh rows (the exit when columns came in and rows go on). */
  toRows: (): Promise<Timing> => {
    const index = storeFor(meterKeys).denseKeys(METER_KEYS);
    const others = data.map(otherColumns);
    return timed(() => {
      for (let j = 0; j < data.length; j++) toRows(entryColumns[j]!, others[j]!, index);
    });
  },
  /**
   * The five members' column output → the rows that go on: arrived readings with the flags the chain
   * set appended, a row made for each created one (the row chain makes those in gap filling). Per reading
   * into the chain; the chain runs before the clock over copies of the rows, which the exit flags.
   */
  chainOfFiveExit: (): Promise<Timing> => {
    const store = storeFor(meterKeys);
    const chain = new ColumnChain(
      store,
      CHAIN.map((name) => pairs[name].columns(store)),
    );
    const index = store.denseKeys(METER_KEYS);
    const outputs: ReadingColumns[][] = [];
    for (const e of chainEvents) {
      if (e.kind === 'data') outputs.push(...chain.data(toColumns(e.items.map(copyRow), index)));
      else if (e.kind === 'watermark') outputs.push(...chain.watermark(e.time));
    }
    const order = chain.flagOrder();
    return timed(() => {
      for (const pieces of outputs) rowsOut(pieces, order);
    });
  },
};

const runs: Record<string, Timing[]> = {};
const record = (name: string, t: Timing): void => {
  const list = runs[name] ?? [];
  list.push(t);
  runs[name] = list;
};
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const rounds = Number(values.rounds);
const rigs = Object.fromEntries(
  Object.entries(cases).map(([name, c]) => [name, { rows: rowRig(c), columns: columnRig(c) }]),
);
for (let i = 0; i < rounds; i++) {
  for (const name of Object.keys(cases)) {
    const order = i % 2 === 0 ? (['rows', 'columns'] as const) : (['columns', 'rows'] as const);
    for (const shape of order) {
      record(`${name}/${shape}`, await rigs[name]![shape]());
    }
  }
  for (const [name, run] of Object.entries(conversions)) {
    record(`convert/${name}`, await run());
  }
}
await tick();
gcObserver.disconnect();

const median = (a: readonly number[]): number => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
/** Rounds after the first (a warm-up), or the only one. */
const counted = (ts: readonly Timing[]): readonly Timing[] => (ts.length > 1 ? ts.slice(1) : ts);
const gcShare = (t: Timing): number => {
  let ms = 0;
  for (const p of pauses) if (p.start >= t.wallStart && p.start < t.wallEnd) ms += p.ms;
  return ms / (t.wallEnd - t.wallStart);
};
/** Readings a timing is divided by: those into the case's first member, or into the rules for a conversion. */
const perReading = (timing: string): number => {
  if (timing === 'convert/chainOfFiveExit') return readingsIn(allCases.chainOfFive!);
  const c = cases[timing.slice(0, timing.indexOf('/'))];
  return c === undefined ? readings : readingsIn(c);
};
const summary: Record<string, { nsPerReading: number; cpuMs: number[]; gcShare: number }> = {};
for (const [name, ts] of Object.entries(runs)) {
  const c = counted(ts);
  summary[name] = {
    nsPerReading: Math.round((median(c.map((t) => t.cpuMs)) * 1e6) / perReading(name)),
    cpuMs: ts.map((t) => Math.round(t.cpuMs)),
    gcShare: Math.round(median(c.map(gcShare)) * 1000) / 1000,
  };
}
const ratios = Object.fromEntries(
  Object.keys(cases).map((name) => [
    name,
    Math.round((summary[`${name}/rows`]!.nsPerReading / summary[`${name}/columns`]!.nsPerReading) * 10) / 10,
  ]),
);
console.log(
  JSON.stringify(
    {
      meters: Number(values.meters),
      days: Number(values.days),
      readings,
      readingsIn: Object.fromEntries(Object.entries(cases).map(([name, c]) => [name, readingsIn(c)])),
      rough: values.rough,
      shortFaults: values['short-faults'],
      checks,
      summary,
      rowsOverColumns: ratios,
    },
    null,
    1,
  ),
);
