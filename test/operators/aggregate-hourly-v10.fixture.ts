/**
 * Writes `aggregate-hourly-v10.snapshot.json`, the fixture of `aggregate-hourly-upgrade.test.ts`: the hourly
 * stage under a fault hold, of a build of state layout meter-quality/10 (its `release` and `end:<start>`
 * timers), run over `hourlyEvents()`, its full checkpoint at the first cut and a delta on it at the second,
 * and digests of what that build emitted after each cut.
 *
 *   npm run build   # in a checkout of the layout-10 build, then from this worktree:
 *   npx vite-node test/operators/aggregate-hourly-v10.fixture.ts <that checkout>/dist <its commit>
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Subject } from 'rxjs';
import type * as Core from '../../core/index.js';
import type { aggregateHourly as AggregateHourly } from '../../operators/aggregate-hourly.js';
import type { FaultEvent, Reading } from '../../schemas/reading.js';
import { HOLD, HOURLY_METERS, hourlyEvents } from './aggregate-hourly-input.js';
import { registry } from './fixtures.js';
import { outputDigest } from './per-meter-chain-input.js';

const [dist, commit] = process.argv.slice(-2);
if (dist === undefined || commit === undefined)
  throw new Error('usage: <dist of the layout-10 build> <its commit>');
const load = async <T>(path: string): Promise<T> => (await import(join(dist, path))) as T;

const core = await load<typeof Core>('core/index.js');
const { METER_QUALITY_STATE_FORMAT: format } = await load<{ METER_QUALITY_STATE_FORMAT: string }>(
  'pipelines/meter-quality.js',
);
if (format !== 'meter-quality/10')
  throw new Error(`${dist} is a build of layout ${format}, not meter-quality/10`);
const { aggregateHourly } = await load<{ aggregateHourly: typeof AggregateHourly }>(
  'operators/aggregate-hourly.js',
);

const store = new core.StateStore();
const input = new Subject<Core.FlowEvent<Reading | FaultEvent>>();
const out: Core.FlowEvent<unknown>[] = [];
input
  .pipe(aggregateHourly(store, registry(...HOURLY_METERS), { allowedLatenessMs: 0, faultHoldMs: HOLD }))
  .subscribe({
    next: (e) => out.push(e),
    error: (err: unknown) => {
      throw err;
    },
  });
const { events, fullCut, deltaCut } = hourlyEvents();
for (const e of events.slice(0, fullCut)) input.next(e);
const timers = store.timers('aggregateHourly').size;
const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
const afterFull = out.length;
for (const e of events.slice(fullCut, deltaCut)) input.next(e);
const delta = store.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
const afterDelta = out.length;
for (const e of events.slice(deltaCut)) input.next(e);
input.complete();

const fixture = {
  format,
  commit,
  full: Buffer.from(full).toString('base64'),
  deltas: [Buffer.from(delta).toString('base64')],
  continuation: { full: outputDigest(out.slice(afterFull)), delta: outputDigest(out.slice(afterDelta)) },
};
writeFileSync(
  new URL('./aggregate-hourly-v10.snapshot.json', import.meta.url),
  `${JSON.stringify(fixture, null, 1)}\n`,
);
console.log(
  `events ${events.length} (cuts ${fullCut}, ${deltaCut}), outputs ${out.length}, timers at the full cut ${timers}; full ${full.byteLength} B, delta ${delta.byteLength} B`,
);
