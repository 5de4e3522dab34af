/**
 * `node --expose-gc dist/bench/per-meter-chain.js [--meters 5000] [--rounds 5] [--mode both|fused|unfused]`:
 * the CPU time of the per-meter rules alone, fused into one keyed chain (as the graph runs them) or piped
 * as separate `keyedProcess` stages, over the same input: the simulated day taken through the stages
 * before them once, then given to each round afresh. Rounds alternate between the modes; the machine is
 * shared, so compare medians of several runs. `--profile <file>` writes a V8 CPU profile of the rounds
 * alone (not of building the input), for `profile-top.js`; `--heap-profile <file>` a sampling heap profile
 * of the rounds (collected objects included, one sample per `--heap-interval` bytes, default 32 KB), for
 * `heap-top.js` (the bench's own copies of the input show as allocated by `round`).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { parseArgs } from 'node:util';
import { BehaviorSubject, from, Observable } from 'rxjs';
import {
  chainMember,
  dataEvent,
  type FlowEvent,
  type KeyedProcessSpec,
  keyedChain,
  keyedProcess,
  SideInput,
  StateStore,
  type Transform,
  watermarkEvent,
} from '../core/index.js';
import { detectCommFailureSpec } from '../operators/detect-comm-failure.js';
import { detectErraticExcursionSpec } from '../operators/detect-erratic-excursion.js';
import { detectLowVarianceSpec } from '../operators/detect-low-variance.js';
import { detectOverloadSpec } from '../operators/detect-overload.js';
import { detectRateOfChangeSpec } from '../operators/detect-rate-of-change.js';
import { detectStuckMeterSpec } from '../operators/detect-stuck-meter.js';
import { detectZeroMeterSpec } from '../operators/detect-zero-meter.js';
import { fillGapsSpec } from '../operators/fill-gaps.js';
import { METER_KEYS } from '../operators/meter-key.js';
import { orderByEventTimeSpec } from '../operators/order-by-event-time.js';
import type { MeterRegistry } from '../operators/outputs.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import type { RawReading, Reading } from '../schemas/reading.js';
import { startHeapSampling } from './heap-sampling.js';
import { cpuMsSince } from './protocol.js';
import { simulatedHours, stagesBeforeRules } from './tasks/feed.js';

const { values } = parseArgs({
  options: {
    meters: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    mode: { type: 'string', default: 'both' },
    profile: { type: 'string' },
    'heap-profile': { type: 'string' },
    'heap-interval': { type: 'string', default: '32768' },
  },
});
const profile = resolveRuleProfile();
const { registry, hours } = simulatedHours({
  meters: Number(values.meters),
  days: 1,
  start: '2024-03-11',
  seed: 1,
});
const side = new SideInput<MeterRegistry>('registry', new BehaviorSubject(registry));

// The per-meter rules' input: what the stages before them emit (their tagged outputs left out).
const first = new StateStore();
const input: FlowEvent<Reading>[] = [];
let maxTs = 0;
// Decoded an hour at a time and let go: a day of raw readings held besides the parsed ones took the heap
// of 50,000 meters near its limit, and the rounds were then mostly garbage collection of a full heap.
function* batches(): Generator<FlowEvent<RawReading>> {
  for (const h of hours()) yield dataEvent(h.records);
}
from(batches())
  .pipe(stagesBeforeRules(first, side, profile))
  .subscribe((e) => {
    if (e.kind === 'tagged') return;
    input.push(e);
    if (e.kind === 'data') for (const r of e.items) maxTs = Math.max(maxTs, r.ts);
  });
input.push(watermarkEvent(maxTs + profile.gaps.defaultIntervalMs));
const readings = input.reduce((n, e) => n + (e.kind === 'data' ? e.items.length : 0), 0);
const meterKeys = first.denseKeys(METER_KEYS).snapshot();

const specs = (store: StateStore): KeyedProcessSpec<Reading, Reading, unknown>[] =>
  [
    chainMember(orderByEventTimeSpec(store)),
    chainMember(fillGapsSpec(store, profile.gaps)),
    chainMember(detectRateOfChangeSpec(store, profile.rateOfChange)),
    chainMember(detectZeroMeterSpec(store, side, profile.faults)),
    chainMember(detectStuckMeterSpec(store, profile.faults)),
    chainMember(detectOverloadSpec(store, side, profile.faults)),
    chainMember(detectLowVarianceSpec(store, profile.faults)),
    chainMember(detectErraticExcursionSpec(store, profile.faults)),
    chainMember(detectCommFailureSpec(store, profile.faults)),
  ].map((m) => m.spec);

/**
 * One round: CPU ms of the rules over a fresh copy of the input (the rules flag readings in place). Each
 * batch is copied as the rules are about to take it, its copying time left out: copies of the whole day
 * made up front doubled the heap the rounds ran in.
 */
function round(mode: 'fused' | 'unfused'): number {
  const store = new StateStore();
  store.denseKeys(METER_KEYS).restore(meterKeys);
  const members = specs(store);
  const rules: Transform<Reading, Reading> =
    mode === 'fused'
      ? keyedChain(
          store,
          members.map((s) => chainMember(s)),
        )
      : (source: Observable<FlowEvent<Reading>>) =>
          members.reduce((flow, s) => flow.pipe(keyedProcess(store, s)), source);
  let copyingUs = 0;
  const events = new Observable<FlowEvent<Reading>>((subscriber) => {
    for (const e of input) {
      if (e.kind !== 'data') {
        subscriber.next(e);
        continue;
      }
      const copying = process.cpuUsage();
      const copy = dataEvent(e.items.map((r) => ({ ...r, flags: [...r.flags] })));
      const used = process.cpuUsage(copying);
      copyingUs += used.user + used.system;
      subscriber.next(copy);
    }
    subscriber.complete();
  });
  globalThis.gc?.();
  const cpu = process.cpuUsage();
  events.pipe(rules).subscribe();
  return cpuMsSince(cpu) - Math.round(copyingUs / 1000);
}

const modes = values.mode === 'both' ? (['unfused', 'fused'] as const) : [values.mode as 'fused' | 'unfused'];
const cpuMs: Record<string, number[]> = Object.fromEntries(modes.map((m) => [m, []]));
// The inspector session answers synchronously on the main thread: the profile covers the rounds only.
const session = values.profile === undefined ? undefined : new Session();
session?.connect();
session?.post('Profiler.enable');
session?.post('Profiler.start');
const stopHeap =
  values['heap-profile'] === undefined
    ? undefined
    : startHeapSampling(values['heap-profile'], Number(values['heap-interval']));
for (let i = 0; i < Number(values.rounds); i++) for (const m of modes) cpuMs[m]!.push(round(m));
stopHeap?.();
session?.post('Profiler.stop', (err, result) => {
  if (err !== null) throw err;
  writeFileSync(values.profile!, JSON.stringify(result.profile));
});
session?.disconnect();
const median = (a: number[]): number => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
console.log(
  JSON.stringify({
    readings,
    cpuMs,
    medianCpuMs: Object.fromEntries(Object.entries(cpuMs).map(([m, a]) => [m, median(a.slice(1))])),
  }),
);
