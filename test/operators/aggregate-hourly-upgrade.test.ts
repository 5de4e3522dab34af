/**
 * A checkpoint of state layout meter-quality/10, when the hourly stage under a fault hold released held
 * readings by a `release` timer per meter and closed hours by `end:<start>` timers, restored by this build
 * (one release pass per watermark, no timers): the stage goes on exactly as an uninterrupted run, and as
 * that build itself went on. `aggregate-hourly-v10.snapshot.json` was written by the layout-10 build (see
 * `aggregate-hourly-v10.fixture.ts`) over `hourlyEvents()`: a full checkpoint mid-hour, a delta on it.
 */
import { readFileSync } from 'node:fs';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { deserializeSnapshot, type FlowEvent, LATE, StateStore, type Transform } from '../../core/index.js';
import { aggregateHourly } from '../../operators/aggregate-hourly.js';
import type { FaultEvent, HourlyConsumption, Reading } from '../../schemas/reading.js';
import { HOLD, HOURLY_METERS, hourlyEvents } from './aggregate-hourly-input.js';
import { registry } from './fixtures.js';
import { outputDigest } from './per-meter-chain-input.js';

const fixture = JSON.parse(
  readFileSync(new URL('./aggregate-hourly-v10.snapshot.json', import.meta.url), 'utf8'),
) as {
  format: string;
  full: string;
  deltas: string[];
  continuation: { full: string; delta: string };
};
const bytes = (base64: string): Uint8Array => new Uint8Array(Buffer.from(base64, 'base64'));

type Item = Reading | FaultEvent;

function stage(store: StateStore): Transform<Item, HourlyConsumption> {
  return aggregateHourly(store, registry(...HOURLY_METERS), { allowedLatenessMs: 0, faultHoldMs: HOLD });
}

/** A transform fed event by event, its outputs collected. */
function driven(transform: Transform<Item, HourlyConsumption>): {
  feed: (events: readonly FlowEvent<Item>[]) => void;
  end: () => void;
  out: FlowEvent<HourlyConsumption>[];
} {
  const input = new Subject<FlowEvent<Item>>();
  const out: FlowEvent<HourlyConsumption>[] = [];
  input.pipe(transform).subscribe({
    next: (e) => out.push(e),
    error: (err: unknown) => {
      throw err;
    },
  });
  const feed = (events: readonly FlowEvent<Item>[]): void => {
    for (const e of events) input.next(e);
  };
  return { feed, end: () => input.complete(), out };
}

/** What an uninterrupted run emits after the input's first `cut` events. */
function uninterrupted(cut: number): FlowEvent<HourlyConsumption>[] {
  const { events } = hourlyEvents();
  const run = driven(stage(new StateStore()));
  run.feed(events.slice(0, cut));
  const before = run.out.length;
  run.feed(events.slice(cut));
  run.end();
  return run.out.slice(before);
}

describe('the hourly stage restored from a checkpoint of layout meter-quality/10', () => {
  const { fullCut, deltaCut } = hourlyEvents();

  it.each([
    ['the full checkpoint', 'built before the restore', false, true],
    ['the full checkpoint', 'built after the restore', false, false],
    ['the full checkpoint and its delta', 'built before the restore', true, true],
    ['the full checkpoint and its delta', 'built after the restore', true, false],
  ])('from %s goes on as an uninterrupted run (stage %s)', (_, __, withDelta, buildFirst) => {
    expect(fixture.format).toBe('meter-quality/10');
    const cut = withDelta ? deltaCut : fullCut;
    const store = new StateStore();
    const early = buildFirst ? stage(store) : undefined;
    store.restore(deserializeSnapshot(bytes(fixture.full)));
    store.applyDeltas(withDelta ? fixture.deltas.map(bytes) : []);
    // Mid-hour: readings held, hours open, an exclusion kept, and the old build's timers for them.
    const meters = store.denseKeys('meters');
    const held = store.vectors('aggregateHourly/held', 'meters');
    const hours = store.vectors('aggregateHourly/hours', 'meters');
    let heldReadings = 0;
    let openHours = 0;
    for (let n = 0; n < meters.size; n++) {
      heldReadings += held.length(n) / 2;
      openHours += hours.length(n) / 7;
    }
    expect(heldReadings).toBeGreaterThan(100);
    expect(openHours).toBeGreaterThanOrEqual(3);
    expect([...store.keyed('aggregateHourly').keys()]).toEqual([withDelta ? 'MTR-000003' : 'MTR-000002']);
    const timers = store.timers('aggregateHourly').entries();
    expect(timers.filter((t) => t.name === 'release').length).toBeGreaterThanOrEqual(
      HOURLY_METERS.length - 1,
    );
    expect(timers.some((t) => t.name.startsWith('end:'))).toBe(true);

    const resumed = driven(early ?? stage(store));
    resumed.feed(hourlyEvents().events.slice(cut));
    resumed.end();
    expect(resumed.out).toEqual(uninterrupted(cut));
    // … and as the layout-10 build went on from the same point.
    expect(outputDigest(resumed.out)).toBe(
      withDelta ? fixture.continuation.delta : fixture.continuation.full,
    );
    // Hours fired and late readings after the cut; the old timers were dropped, not carried on.
    const rows = resumed.out.flatMap((e) => (e.kind === 'data' ? e.items : []));
    expect(rows.length).toBeGreaterThan(100);
    expect(resumed.out.some((e) => e.kind === 'tagged' && e.tag === LATE.name)).toBe(true);
    expect(store.timers('aggregateHourly').size).toBe(0);
  });
});
