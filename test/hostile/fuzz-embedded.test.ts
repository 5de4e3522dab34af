import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeReadings, detectContentType, JSON_CONTENT_TYPE } from '../../codecs/decode.js';
import { sql } from '../../codecs/sql.js';
import { resolveRuleProfile } from '../../operators/rule-profile.js';
import { type JobResult, runMeterQualityJob } from '../../pipelines/job.js';
import { FUZZ_METERS, fuzzRuns, payloadBytes } from './fuzz.js';

/**
 * A smaller share of the fuzz cases through the real embedded worker (landing folder, chDB, Parquet
 * lake): the job ends normally, and the records, quarantine rows and dead-lettered files add up in the
 * pipeline's counters and in the stores.
 */
describe('fuzz: hostile landing files through the embedded worker (chDB and the lake)', () => {
  let dir: string | undefined;
  let result: JobResult | undefined;
  afterAll(async () => {
    await result?.lake?.close();
    await result?.hot.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const files = fuzzRuns(10_000) >= 100_000 ? 2_000 : 200;
  it(`stores, quarantines or dead-letters every record of ${files} generated files`, async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-fuzz-embedded-'));
    const landing = join(dir, 'landing');
    await mkdir(landing, { recursive: true });
    await writeFile(
      join(landing, 'registry.csv'),
      `meter_id,region,neighborhood,meter_type,vacant,max_kw\n${FUZZ_METERS.map((m) => `${m},north,nb-1,residential,false,`).join('\n')}\n`,
    );
    let records = 0;
    let undecodable = 0;
    const samples = fc.sample(payloadBytes, { numRuns: files, seed: Number(process.env.GS_FUZZ_SEED ?? 12) });
    for (const [i, bytes] of samples.entries()) {
      const hour = String(i % 24).padStart(2, '0');
      const ext = detectContentType(bytes) === JSON_CONTENT_TYPE ? 'json' : 'csv';
      const path = `raw/2024/03/11/${hour}/f-${String(i).padStart(5, '0')}.${ext}`;
      await mkdir(join(landing, path, '..'), { recursive: true });
      await writeFile(join(landing, path), bytes);
      const decoded = decodeReadings(bytes, { source: path, receivedAt: 0 });
      if (decoded.ok) records += decoded.records;
      else undecodable++;
    }
    result = await runMeterQualityJob({
      source: { kind: 'files', root: landing },
      registryPath: join(landing, 'registry.csv'),
      hot: { kind: 'chdb', path: join(dir, 'chdb') },
      coldDir: join(dir, 'lake'),
      checkpointPath: join(dir, 'checkpoint.json'),
      untilIdle: true,
      replay: false,
      profile: resolveRuleProfile(),
      workerId: 'fuzz',
    });
    const { totals, hot } = result;
    console.log(`[fuzz-embedded] ${files} files: ${JSON.stringify(totals)}`);
    expect(totals.recordsIn).toBe(records);
    expect(totals.deadLettered).toBe(undecodable);
    expect(totals.measured + totals.quarantined).toBe(records);
    const count = async (query: string) =>
      Number((await hot.query<{ n: number | string }>(sql.raw(query)))[0]!.n);
    expect(await count('SELECT count() AS n FROM greenstream.quarantine FINAL')).toBe(totals.quarantined);
    const [log] = await hot.query<{ r: string | number; d: string | number }>(
      sql.raw('SELECT sum(records_in) AS r, sum(dead_lettered) AS d FROM greenstream.quality_log FINAL'),
    );
    expect([Number(log!.r), Number(log!.d)]).toEqual([records, undecodable]);
  }, 300_000);
});
