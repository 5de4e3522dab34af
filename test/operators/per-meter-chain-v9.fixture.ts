/**
 * Writes `per-meter-chain-v9.snapshot.json`, the fixture of `per-meter-chain-upgrade.test.ts`: the per-meter
 * chain of a build of state layout meter-quality/9 run over `chainEvents()`, its full checkpoint at the
 * first cut and a delta on it at the second, and digests of what that build emitted after each cut.
 *
 *   npm run build   # in a checkout of the layout-9 build, then from this worktree:
 *   npx vite-node test/operators/per-meter-chain-v9.fixture.ts <that checkout>/dist <its commit>
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Subject } from 'rxjs';
import type * as Core from '../../core/index.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { RuleProfile } from '../../operators/rule-profile.js';
import type { Reading } from '../../schemas/reading.js';
import { registry } from './fixtures.js';
import { CHAIN_METERS, chainEvents, outputDigest } from './per-meter-chain-input.js';

type Spec = Core.KeyedProcessSpec<Reading, Reading, unknown>;
type Registry = Core.SideInput<MeterRegistry>;
type Faults = RuleProfile['faults'];

const [dist, commit] = process.argv.slice(-2);
if (dist === undefined || commit === undefined)
  throw new Error('usage: <dist of the layout-9 build> <its commit>');
const load = async <T>(path: string): Promise<T> => (await import(join(dist, path))) as T;

const core = await load<typeof Core>('core/index.js');
const { defaultRuleProfile: profile } = await load<{ defaultRuleProfile: RuleProfile }>(
  'operators/rule-profile.js',
);
const { METER_QUALITY_STATE_FORMAT: format } = await load<{ METER_QUALITY_STATE_FORMAT: string }>(
  'pipelines/meter-quality.js',
);
if (format !== 'meter-quality/9')
  throw new Error(`${dist} is a build of layout ${format}, not meter-quality/9`);
// The rules' signatures in that build.
const { orderByEventTimeSpec } = await load<{ orderByEventTimeSpec: (s: Core.StateStore) => Spec }>(
  'operators/order-by-event-time.js',
);
const { fillGapsSpec } = await load<{ fillGapsSpec: (g: RuleProfile['gaps']) => Spec }>(
  'operators/fill-gaps.js',
);
const { detectRateOfChangeSpec } = await load<{
  detectRateOfChangeSpec: (t: RuleProfile['rateOfChange']) => Spec;
}>('operators/detect-rate-of-change.js');
const { detectZeroMeterSpec } = await load<{ detectZeroMeterSpec: (r: Registry, f: Faults) => Spec }>(
  'operators/detect-zero-meter.js',
);
const { detectStuckMeterSpec } = await load<{ detectStuckMeterSpec: (f: Faults) => Spec }>(
  'operators/detect-stuck-meter.js',
);
const { detectOverloadSpec } = await load<{
  detectOverloadSpec: (s: Core.StateStore, r: Registry, f: Faults) => Spec;
}>('operators/detect-overload.js');
const { detectLowVarianceSpec } = await load<{
  detectLowVarianceSpec: (s: Core.StateStore, f: Faults) => Spec;
}>('operators/detect-low-variance.js');
const { detectErraticExcursionSpec } = await load<{
  detectErraticExcursionSpec: (s: Core.StateStore, f: Faults) => Spec;
}>('operators/detect-erratic-excursion.js');
const { detectCommFailureSpec } = await load<{
  detectCommFailureSpec: (s: Core.StateStore, f: Faults) => Spec;
}>('operators/detect-comm-failure.js');

const store = new core.StateStore();
const reg = registry(...CHAIN_METERS);
const specs = [
  orderByEventTimeSpec(store),
  fillGapsSpec(profile.gaps),
  detectRateOfChangeSpec(profile.rateOfChange),
  detectZeroMeterSpec(reg, profile.faults),
  detectStuckMeterSpec(profile.faults),
  detectOverloadSpec(store, reg, profile.faults),
  detectLowVarianceSpec(store, profile.faults),
  detectErraticExcursionSpec(store, profile.faults),
  detectCommFailureSpec(store, profile.faults),
];
const input = new Subject<Core.FlowEvent<Reading>>();
const out: Core.FlowEvent<Reading>[] = [];
input
  .pipe(
    core.keyedChain(
      store,
      specs.map((s) => core.chainMember(s)),
    ),
  )
  .subscribe({
    next: (e) => out.push(e),
    error: (err: unknown) => {
      throw err;
    },
  });
const { events, fullCut, deltaCut } = chainEvents();
for (const e of events.slice(0, fullCut)) input.next(e);
const full = store.beginSnapshot({ incremental: true }).finish() as Uint8Array;
const afterFull = out.length;
for (const e of events.slice(fullCut, deltaCut)) input.next(e);
const delta = store.beginSnapshot({ incremental: true, delta: true }).finish() as Uint8Array;
const afterDelta = out.length;
for (const e of events.slice(deltaCut)) input.next(e);

const fixture = {
  format,
  commit,
  full: Buffer.from(full).toString('base64'),
  deltas: [Buffer.from(delta).toString('base64')],
  continuation: { full: outputDigest(out.slice(afterFull)), delta: outputDigest(out.slice(afterDelta)) },
};
writeFileSync(
  new URL('./per-meter-chain-v9.snapshot.json', import.meta.url),
  `${JSON.stringify(fixture, null, 1)}\n`,
);
console.log(
  `events ${events.length} (cuts ${fullCut}, ${deltaCut}), outputs ${out.length}; full ${full.byteLength} B, delta ${delta.byteLength} B`,
);
