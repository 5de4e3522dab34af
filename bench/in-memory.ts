/**
 * `node --expose-gc dist/bench/in-memory.js [--meters 5000] [--days 1] [--repeat 3]`: the figure the
 * hot-path work is measured with — `runGraphInMemory` (the graph alone, every output collected) over the
 * simulated fleet decoded beforehand, one batch per hour. Prints wall and CPU time per run: the machine
 * is shared, so CPU time is the steadier of the two. `--heap-profile <file>` writes a sampling heap profile
 * of the runs (collected objects included, one sample per `--heap-interval` bytes, default 32 KB), for
 * `heap-top.js` (the bench's own copies of the input show as allocated at the top level).
 */
import { parseArgs } from 'node:util';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import { runGraphInMemory } from '../pipelines/in-memory.js';
import type { RawReading } from '../schemas/reading.js';
import { startHeapSampling } from './heap-sampling.js';
import { cpuMsSince, peakRssMb } from './protocol.js';
import { simulatedHours } from './tasks/feed.js';

const { values } = parseArgs({
  options: {
    meters: { type: 'string', default: '5000' },
    days: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '3' },
    'heap-profile': { type: 'string' },
    'heap-interval': { type: 'string', default: '32768' },
  },
});
const sim = { meters: Number(values.meters), days: Number(values.days), start: '2024-03-11', seed: 1 };
const { registry, hours } = simulatedHours(sim);
const batches: RawReading[][] = [];
let decodeMs = 0;
for (const h of hours()) {
  batches.push(h.records);
  decodeMs += h.decodeMs;
}
const records = batches.reduce((n, b) => n + b.length, 0);
const profile = resolveRuleProfile();
const runs: { wallMs: number; cpuMs: number }[] = [];
const stopHeap =
  values['heap-profile'] === undefined
    ? undefined
    : startHeapSampling(values['heap-profile'], Number(values['heap-interval']));
for (let i = 0; i < Number(values.repeat); i++) {
  // Stages mutate readings in place: every run gets fresh copies.
  const input = batches.map((b) => b.map((r) => ({ ...r })));
  globalThis.gc?.();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const out = runGraphInMemory(input, registry, profile);
  const wallMs = Math.round(performance.now() - t0);
  const cpuMs = cpuMsSince(cpu0);
  runs.push({ wallMs, cpuMs });
  if (i === 0)
    console.error(
      `readings out ${out.readings.length}, quarantine ${out.quarantine.length}, faults ${out.faults.length}`,
    );
}
stopHeap?.();
const best = runs.reduce((a, b) => (b.cpuMs < a.cpuMs ? b : a));
console.log(
  JSON.stringify({
    ...sim,
    records,
    decodeMs: Math.round(decodeMs),
    runs,
    bestCpuMs: best.cpuMs,
    bestWallMs: Math.min(...runs.map((r) => r.wallMs)),
    readingsPerCpuSecond: Math.round(records / (best.cpuMs / 1000)),
    peakRssMb: peakRssMb(),
  }),
);
