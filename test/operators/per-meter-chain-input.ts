/**
 * The input of the per-meter chain's checkpoint-upgrade test (`per-meter-chain-upgrade.test.ts`) and of the
 * script that wrote its fixture with an earlier build (`per-meter-chain-v9.fixture.ts`): eight meters over
 * four days, each with something in progress at the cuts, arriving a little out of order, with duplicates
 * and late readings, in hourly batches each followed by its watermark. Deterministic: a fixed seed.
 */

import { createHash } from 'node:crypto';
import { dataEvent, type FlowEvent, watermarkEvent } from '../../core/index.js';
import { addFlag } from '../../operators/add-flag.js';
import type { MeterInfo, Reading } from '../../schemas/reading.js';
import { DAY, HOUR, INTERVAL, MINUTE, reading, T0 } from './fixtures.js';

/** The meters and what each has under way around the cuts. */
export const CHAIN_METERS: readonly Partial<MeterInfo>[] = [
  { meterId: 'MTR-000001' }, // NULL run, short gaps; its last reading before the full cut is a NULL
  { meterId: 'MTR-000002' }, // zero run: fault open at both cuts
  { meterId: 'MTR-000003' }, // stuck value: fault open at both cuts
  { meterId: 'MTR-000004' }, // overload chain across the delta cut
  { meterId: 'MTR-000005' }, // rate of change: spikes and drops
  { meterId: 'MTR-000006' }, // silent a day and a half: the extended alert raised before the cuts
  { meterId: 'MTR-000007' }, // every 5 min, then every 30 min from day 2.6: cadence changing at the cut
  { meterId: 'MTR-000008', meterType: 'commercial' }, // over-limit readings: no value to interpolate from
];

/** Event time of the full checkpoint's cut, and of the delta's. */
export const FULL_CUT_TS = T0 + 2 * DAY + 6 * HOUR;
export const DELTA_CUT_TS = T0 + 2 * DAY + 18 * HOUR;
const END_TS = T0 + 4 * DAY;
const MAX_OUT_OF_ORDERNESS = HOUR;

/** The input events, and the indexes at which the two cuts fall (between an hour's watermark and the next batch). */
export function chainEvents(): { events: FlowEvent<Reading>[]; fullCut: number; deltaCut: number } {
  const random = mulberry32(20261207);
  const readings: Reading[] = [];
  const add = (meterId: string, ts: number, kw: number | null, flags: Reading['flags'] = []): void => {
    const r = reading({ meterId, ts, kw, rawValue: kw === null ? '' : String(kw), flags });
    if (kw === null) addFlag(r, 'MISSING_READING');
    readings.push(r);
  };
  const load = (ts: number): number => {
    const h = ((ts - T0) % DAY) / HOUR;
    return Math.round((0.6 + 0.4 * Math.sin((h / 24) * 2 * Math.PI) + 0.1 * random()) * 10_000) / 10_000;
  };
  for (let ts = T0; ts < END_TS; ts += INTERVAL) {
    const t = ts - T0;
    // 1: NULL runs, a short gap, a NULL reading last before the full cut and a gap just after it.
    if (!((t >= 30 * HOUR && t < 31 * HOUR) || (ts > FULL_CUT_TS && ts < FULL_CUT_TS + 2 * HOUR))) {
      const isNull = (t >= 36 * HOUR && t < 37.5 * HOUR) || ts === FULL_CUT_TS - INTERVAL;
      add('MTR-000001', ts, isNull ? null : load(ts));
    }
    // 2: zeros from 12 h to 3 days 6 h (48 h reached at 2 days 12 h).
    add('MTR-000002', ts, t >= 12 * HOUR && t < 3 * DAY + 6 * HOUR ? 0 : load(ts));
    // 3: stuck at 1.111 from day 1 to day 3 (a day reached at day 2).
    add('MTR-000003', ts, t >= DAY && t < 3 * DAY ? 1.111 : load(ts));
    // 4: 25 kW from 45 min before the delta cut for 8 readings, and a broken chain on day 3.
    const over =
      (ts >= DELTA_CUT_TS - 45 * MINUTE && ts < DELTA_CUT_TS + 75 * MINUTE) || t === 3 * DAY + 2 * HOUR;
    add('MTR-000004', ts, over ? 25 : load(ts));
    // 5: a spike every 7 hours, a drop after it.
    const phase = Math.floor(t / INTERVAL) % 28;
    add('MTR-000005', ts, phase === 5 ? 4.2 : phase === 6 ? 0.2 : load(ts));
    // 6: silent from day 1 to day 2 12 h.
    if (t < DAY || t >= 2 * DAY + 12 * HOUR) add('MTR-000006', ts, load(ts));
    // 8: a reading over the physical limit every 10 hours, flagged as validation leaves it.
    if (Math.floor(t / INTERVAL) % 40 === 9) add('MTR-000008', ts, 420, ['over_limit']);
    else add('MTR-000008', ts, load(ts) * 10);
  }
  // 7: every 5 min, then every 30 min.
  for (let ts = T0; ts < END_TS; ts += ts < T0 + 2 * DAY + 14 * HOUR ? 5 * MINUTE : 30 * MINUTE)
    add('MTR-000007', ts, load(ts));

  // Arrival: most within minutes, some up to 50 min late (still ahead of the watermark), a few 2–3 h late
  // (behind it), a few sent twice.
  const arrivals: { at: number; r: Reading }[] = [];
  for (const r of readings) {
    const u = random();
    const delay =
      u < 0.005
        ? 2 * HOUR + random() * HOUR
        : u < 0.04
          ? 20 * MINUTE + random() * 30 * MINUTE
          : random() * 5 * MINUTE;
    arrivals.push({ at: r.ts + delay, r });
    if (random() < 0.005)
      arrivals.push({ at: r.ts + delay + random() * HOUR, r: { ...r, flags: [...r.flags] } });
  }
  arrivals.sort((a, b) => a.at - b.at);

  const events: FlowEvent<Reading>[] = [];
  let fullCut = -1;
  let deltaCut = -1;
  let maxTs = Number.NEGATIVE_INFINITY;
  let i = 0;
  for (let hour = T0; hour < END_TS + 4 * HOUR; hour += HOUR) {
    if (hour === FULL_CUT_TS) fullCut = events.length;
    if (hour === DELTA_CUT_TS) deltaCut = events.length;
    const batch: Reading[] = [];
    for (; i < arrivals.length && arrivals[i]!.at < hour + HOUR; i++) {
      batch.push(arrivals[i]!.r);
      maxTs = Math.max(maxTs, arrivals[i]!.r.ts);
    }
    if (batch.length > 0) events.push(dataEvent(batch));
    events.push(watermarkEvent(maxTs - MAX_OUT_OF_ORDERNESS));
  }
  events.push(watermarkEvent(END_TS + 2 * DAY));
  return { events, fullCut, deltaCut };
}

/**
 * A digest of what the chain emitted, fields in name order: a reading a restored worker releases from its
 * sort buffer is a new object with the fields of the one it took, in parsing's order (`unpack`).
 */
export function outputDigest(out: readonly FlowEvent<unknown>[]): string {
  const sorted = (_key: string, value: unknown): unknown =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value;
  return createHash('sha256').update(JSON.stringify(out, sorted)).digest('hex');
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
