/**
 * A small store for the console's tests and screenshots: a simulated run (a few dozen meters, three
 * days) with one known gap cut out of one meter's input, processed by the real job into a chDB store.
 */

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HotStore } from '../connectors/clickhouse.js';
import { resolveRuleProfile } from '../operators/rule-profile.js';
import { type JobObserver, runMeterQualityJob } from '../pipelines/job.js';
import { simulate } from '../simulator/index.js';

export interface SampleStore {
  readonly hot: HotStore;
  readonly landing: string;
  readonly chdb: string;
  /** The meter whose input lost [gapFrom, gapTo) (epoch ms). */
  readonly gapMeter: string;
  readonly gapFrom: number;
  readonly gapTo: number;
}

export const SAMPLE_START = '2024-03-11';

/** Simulates, cuts the gap, runs the job until idle; the store stays open (the caller closes `hot`). */
export async function buildSampleStore(
  dir: string,
  options: { readonly meters?: number; readonly observer?: JobObserver } = {},
): Promise<SampleStore> {
  const meters = options.meters ?? 30;
  const landing = join(dir, 'landing');
  await simulate({ out: landing, meters, days: 3, start: SAMPLE_START, seed: 3 });
  const gapMeter = 'MTR-000005';
  const gapFrom = Date.parse('2024-03-12T06:00:00Z');
  const gapTo = Date.parse('2024-03-12T12:00:00Z');
  await cutGap(join(landing, 'raw'), gapMeter, gapFrom, gapTo);
  const chdb = join(dir, 'chdb');
  const { hot, lake } = await runMeterQualityJob({
    source: { kind: 'files', root: landing },
    registryPath: join(landing, 'registry.csv'),
    hot: { kind: 'chdb', path: chdb },
    checkpointPath: join(dir, 'checkpoint.json'),
    untilIdle: true,
    replay: false,
    profile: resolveRuleProfile(),
    workerId: 'sample',
    ...(options.observer === undefined ? {} : { observer: options.observer }),
  });
  await lake?.close();
  return { hot, landing, chdb, gapMeter, gapFrom, gapTo };
}

/** Removes the meter's lines timed in [from, to) from every landing CSV under `dir`. */
async function cutGap(dir: string, meter: string, from: number, to: number): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.csv')) continue;
    const path = join(entry.parentPath, entry.name);
    const lines = (await readFile(path, 'utf8')).split('\n');
    const kept = lines.filter((line) => {
      const [id, ts] = line.split(',');
      if (id !== meter || ts === undefined) return true;
      const t = Date.parse(ts);
      return !(t >= from && t < to);
    });
    if (kept.length !== lines.length) await writeFile(path, kept.join('\n'));
  }
}
