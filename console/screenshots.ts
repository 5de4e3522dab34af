/**
 * `npm run console:screenshots`: writes `docs/console/{pipeline,quality,meter,review}.png`, the README's
 * pictures of the console, from the sample store (a small simulated run with a known gap) shot in
 * Debian's Chromium (`deploy/local/install-chromium.sh` installs it).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { sql } from '../codecs/sql.js';
import { JobMetrics } from '../pipelines/job-metrics.js';
import { rejectQuarantined } from './review.js';
import { buildSampleStore } from './sample-store.js';
import { startConsoleServer } from './server.js';
import { hotConsoleStore } from './store.js';

const CHROMIUM = '/usr/bin/chromium';

async function main(): Promise<void> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: sudo sh deploy/local/install-chromium.sh`);
  const out = resolve(process.argv[2] ?? 'docs/console');
  await mkdir(out, { recursive: true });
  const dir = await mkdtemp(join(tmpdir(), 'gs-screenshots-'));
  const metrics = new JobMetrics();
  const sample = await buildSampleStore(dir, { observer: metrics.observer });
  const store = hotConsoleStore(sample.hot, `chdb:${sample.chdb}`);
  const [first] = await store.query<{ id: string }>(
    sql`SELECT toString(cityHash64(source, raw)) AS id FROM ${store.table('quarantine')} FINAL ORDER BY id LIMIT 1`,
  );
  if (first !== undefined)
    await rejectQuarantined(store, first.id, { reviewer: 'ada', reason: 'duplicate upload, already stored' });
  const server = await startConsoleServer({
    port: 0,
    host: '127.0.0.1',
    store: () => store,
    pipeline: async () => metrics.pipelineStatus(),
    pipelineSource: 'Live figures of the sample run (30 meters × 3 days), refreshed every 2 s.',
    readOnly: false,
    deadLetterDir: join(sample.landing, 'dead-letter'),
    describe: store.describe,
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const shots: [string, string, string][] = [
      ['pipeline', '/console/pipeline', '#graph svg'],
      ['quality', '/console/quality', '#tiers-chart canvas'],
      [
        'meter',
        `/console/meter?id=${sample.gapMeter}&from=2024-03-11T00:00&to=2024-03-14T00:00`,
        '#meter-chart canvas',
      ],
      ['review', '/console/review?decision=all', '#reviewer'],
    ];
    for (const [name, path, ready] of shots) {
      await page.goto(`${server.url}${path}`);
      await page.waitForSelector(ready);
      await page.fill('#reviewer', 'ada').catch(() => undefined);
      await page.waitForTimeout(300);
      const file = join(out, `${name}.png`);
      await page.screenshot({ path: file, fullPage: name !== 'review' });
      process.stdout.write(`wrote ${file}\n`);
    }
  } finally {
    await browser.close();
    await server.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`console:screenshots: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
