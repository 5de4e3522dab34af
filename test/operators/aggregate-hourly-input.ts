/**
 * The input of the hourly stage's checkpoint-upgrade test (`aggregate-hourly-upgrade.test.ts`) and of the
 * script that wrote its fixture with an earlier build (`aggregate-hourly-v10.fixture.ts`): six meters over
 * three days under a 6 h fault hold, with zero and stuck faults whose exclusions span the cuts, a fault
 * type the hold ignores, readings that arrive behind the held watermark (counted at once, or late), in
 * half-hour batches each followed by a watermark 20 min behind them. Deterministic: a fixed seed.
 */

import { dataEvent, type FlowEvent, watermarkEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import type { FaultEvent, MeterInfo, Reading } from '../../schemas/reading.js';
import { DAY, HOUR, MINUTE, reading, T0 } from './fixtures.js';

export const HOLD = 6 * HOUR;

export const HOURLY_METERS: readonly Partial<MeterInfo>[] = [
  { meterId: 'MTR-000001', neighborhood: 'N-01' }, // every 15 min, late readings now and then
  { meterId: 'MTR-000002', neighborhood: 'N-01' }, // zero run recognised 10 min before the full cut
  { meterId: 'MTR-000003', neighborhood: 'N-02' }, // stuck run recognised 10 min before the delta cut
  { meterId: 'MTR-000004', neighborhood: 'N-02' }, // every 5 min, 7 min off the quarter hours
  { meterId: 'MTR-000005', neighborhood: 'N-03' }, // silent from 2 h before the full cut to 5 h after it
  { meterId: 'MTR-000006', neighborhood: 'N-03' }, // overload faults (not held for), NULL readings
];

/** Event time of the full checkpoint's cut, and of the delta's: both mid-hour. */
export const FULL_CUT_TS = T0 + DAY + 14 * HOUR + 30 * MINUTE;
export const DELTA_CUT_TS = T0 + DAY + 20 * HOUR + 30 * MINUTE;
const END_TS = T0 + 3 * DAY;
const BATCH = 30 * MINUTE;
const WATERMARK_LAG = 20 * MINUTE;

type Item = Reading | FaultEvent;

/** The input events, and the indexes at which the two cuts fall (between a batch's watermark and the next batch). */
export function hourlyEvents(): { events: FlowEvent<Item>[]; fullCut: number; deltaCut: number } {
  const random = mulberry32(20261208);
  const arrivals: { at: number; item: Item }[] = [];
  const add = (meterId: string, ts: number, kw: number | null, delay = random() * 4 * MINUTE): void => {
    const r = reading({ meterId, ts, kw, rawValue: kw === null ? '' : String(kw) });
    if (kw === null) addFlag(r, 'MISSING_READING');
    arrivals.push({ at: ts + delay, item: r });
  };
  const fault = (meterId: string, faultType: FaultEvent['faultType'], from: number, to: number): void => {
    arrivals.push({
      at: to + MINUTE,
      item: { meterId, faultType, windowStart: from, windowEnd: to, detectedAt: to, evidence: '{}' },
    });
  };
  const load = (ts: number): number => {
    const h = ((ts - T0) % DAY) / HOUR;
    return Math.round((0.6 + 0.4 * Math.sin((h / 24) * 2 * Math.PI) + 0.1 * random()) * 10_000) / 10_000;
  };
  for (let ts = T0; ts < END_TS; ts += 15 * MINUTE) {
    // 1: now and then a reading behind the held watermark: 7 h late (counted at once while its hour is
    // open, else late) or 8 h (late).
    const u = random();
    add('MTR-000001', ts, load(ts), u < 0.03 ? HOLD + HOUR : u < 0.05 ? HOLD + 2 * HOUR : undefined);
    add('MTR-000002', ts, ts >= FULL_CUT_TS - 4 * HOUR && ts < FULL_CUT_TS + HOUR ? 0 : load(ts));
    add('MTR-000003', ts, ts >= FULL_CUT_TS + HOUR && ts < DELTA_CUT_TS ? 1.111 : load(ts));
    if (ts < FULL_CUT_TS - 2 * HOUR || ts >= FULL_CUT_TS + 5 * HOUR) add('MTR-000005', ts, load(ts));
    add('MTR-000006', ts, Math.floor((ts - T0) / (15 * MINUTE)) % 11 === 3 ? null : load(ts) * 10);
  }
  for (let ts = T0 + 7 * MINUTE; ts < END_TS; ts += 5 * MINUTE) add('MTR-000004', ts, load(ts));
  // Recognised within the hold (after 3 h 50 min and 5 h 20 min): their readings from the start on leave
  // the held lists, and each exclusion is still kept at its cut.
  fault('MTR-000002', 'zero', FULL_CUT_TS - 4 * HOUR, FULL_CUT_TS - 10 * MINUTE);
  fault('MTR-000003', 'stuck', FULL_CUT_TS + HOUR, DELTA_CUT_TS - 10 * MINUTE);
  fault('MTR-000006', 'overload', FULL_CUT_TS - HOUR, FULL_CUT_TS - 10 * MINUTE);
  fault('MTR-000001', 'zero', T0 + 5 * HOUR, T0 + 7 * HOUR);
  arrivals.sort((a, b) => a.at - b.at);

  const events: FlowEvent<Item>[] = [];
  let fullCut = -1;
  let deltaCut = -1;
  let maxTs = Number.NEGATIVE_INFINITY;
  let i = 0;
  for (let at = T0; at < END_TS + HOUR; at += BATCH) {
    if (at === FULL_CUT_TS) fullCut = events.length;
    if (at === DELTA_CUT_TS) deltaCut = events.length;
    const batch: Item[] = [];
    for (; i < arrivals.length && arrivals[i]!.at < at + BATCH; i++) {
      const item = arrivals[i]!.item;
      batch.push(item);
      if ('ts' in item) maxTs = Math.max(maxTs, item.ts);
    }
    if (batch.length > 0) events.push(dataEvent(batch));
    events.push(watermarkEvent(maxTs - WATERMARK_LAG));
  }
  events.push(watermarkEvent(END_TS + 2 * DAY));
  return { events, fullCut, deltaCut };
}

/** A small seeded generator (mulberry32): the same sequence on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
