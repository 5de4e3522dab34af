/**
 * The cross-meter graph (`run --stage cross-meter`) with the peak exclusions' side inputs: hourly
 * aggregates of 30 April and 1 May 2024 arrive from one upstream partition; the holiday's hours leave the
 * daily peaks and reach the sink's `peakExclusions`, as in the all-partitions graph.
 */
import { BehaviorSubject, lastValueFrom, Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { type FlowEvent, SideInput, StateStore, type UpstreamRecord } from '../../core/index.js';
import type { MeterRegistry } from '../../operators/outputs.js';
import type { PeakExclusion, WeatherLookup } from '../../operators/peak-exclusions.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { OutputBuffers } from '../../pipelines/meter-quality-outputs.js';
import { crossMeterGraph } from '../../pipelines/repartition.js';
import type { MaintenanceWindow } from '../../schemas/external.js';
import type { HourlyConsumption, MeterInfo } from '../../schemas/reading.js';

const HOUR = 3_600_000;
const START = Date.UTC(2024, 3, 30);
const HOLIDAY = { from: Date.UTC(2024, 3, 30, 22), to: Date.UTC(2024, 4, 1, 22) };

function meter(meterId: string): MeterInfo {
  return {
    meterId,
    region: 'north',
    neighborhood: 'n1',
    meterType: 'residential',
    vacant: false,
    maxKw: null,
  };
}

async function runCrossMeter(withExclusions: boolean): Promise<ReturnType<OutputBuffers['take']>> {
  const registry: MeterRegistry = new Map([
    ['m1', meter('m1')],
    ['m2', meter('m2')],
  ]);
  const { connect } = crossMeterGraph({
    profile: resolveRuleProfile(),
    registry: new SideInput('registry', new BehaviorSubject(registry)),
    store: new StateStore(),
    partitions: [0],
    ...(withExclusions
      ? {
          exclusions: {
            weather: new SideInput<WeatherLookup>('weather', new BehaviorSubject<WeatherLookup>(new Map())),
            maintenance: new SideInput<readonly MaintenanceWindow[]>('maintenance', new BehaviorSubject([])),
          },
        }
      : {}),
  });
  const input = new Subject<FlowEvent<UpstreamRecord<HourlyConsumption>>>();
  const sink = new OutputBuffers();
  const done = lastValueFrom(connect(input, sink), { defaultValue: undefined });
  const items: UpstreamRecord<HourlyConsumption>[] = [];
  for (let hour = START; hour < START + 2 * 24 * HOUR; hour += HOUR)
    for (const meterId of ['m1', 'm2']) {
      // The holiday's evening hours are the heaviest: without exclusions they are the peaks.
      const avgKw =
        hour >= HOLIDAY.from && hour < HOLIDAY.to
          ? 10 + (hour % (7 * HOUR)) / HOUR
          : 1 + (hour % (5 * HOUR)) / HOUR;
      items.push({
        kind: 'element',
        item: { meterId, neighborhood: 'n1', hour, avgKw, minKw: avgKw, maxKw: avgKw, stddevKw: 0, count: 4 },
      });
    }
  items.push({ kind: 'watermark', partitions: [0], time: START + 3 * 24 * HOUR });
  input.next({ kind: 'data', items });
  input.next({ kind: 'watermark', time: Number.POSITIVE_INFINITY });
  input.complete();
  await done;
  return sink.take(0, 0);
}

describe('cross-meter graph with peak exclusions', () => {
  it('ranks the holiday hours without exclusions and leaves them out, reported, with them', async () => {
    const plain = await runCrossMeter(false);
    const excluded = await runCrossMeter(true);
    const inHoliday = (h: number) => h >= HOLIDAY.from && h < HOLIDAY.to;
    expect(plain.dailyPeaks.length).toBe(6);
    expect(plain.dailyPeaks.some((p) => inHoliday(p.hour))).toBe(true);
    expect(plain.peakExclusions).toEqual([]);
    // 1 May keeps only its two hours after the holiday's local end (22:00 UTC).
    expect(excluded.dailyPeaks.length).toBe(5);
    expect(excluded.dailyPeaks.some((p) => inHoliday(p.hour))).toBe(false);
    const reported = excluded.peakExclusions as PeakExclusion[];
    expect(reported.map((e) => e.hour).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 24 }, (_, i) => HOLIDAY.from + i * HOUR),
    );
    expect(
      reported.every((e) => e.reason === 'excluded_holiday' && e.meters === 2 && e.region === 'north'),
    ).toBe(true);
  });
});
