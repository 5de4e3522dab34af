/**
 * The console in a real browser (Debian's Chromium through playwright-core) over a chDB store filled by
 * a small simulated run with a known gap: every page loads without console errors, the charts draw their
 * data, the meter page shades the gap, an approve on the Review page changes the stored reading and
 * writes one review_log row; an unknown meter and an empty store say so.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { openHotStore } from '../../connectors/clickhouse.js';
import { buildSampleStore, type SampleStore } from '../../console/sample-store.js';
import { type ConsoleServer, startConsoleServer } from '../../console/server.js';
import { type ConsoleStore, hotConsoleStore } from '../../console/store.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import { launchChromium } from '../harness/chromium.js';

/** What the tests read in the page (the project compiles without the DOM library). */
interface Canvas2d {
  readonly canvas: { readonly width: number; readonly height: number };
  getImageData(x: number, y: number, w: number, h: number): { readonly data: Uint8ClampedArray };
}
interface Chart {
  readonly data: (number | null)[][];
  readonly ctx: Canvas2d;
  readonly bbox: { readonly top: number; readonly height: number };
  valToPos(value: number, scale: string, canvasPixels: boolean): number;
}
interface PageGlobals {
  readonly __gs: {
    readonly charts: Record<string, Chart>;
    readonly bands: { status: string; from: number; to: number }[];
    readonly pipeline: {
      topology: { nodes: unknown[]; edges: unknown[] };
      stages: Record<string, { in: number }>;
    };
  };
  readonly document: {
    querySelectorAll(selector: string): { readonly length: number };
    querySelector(selector: string): { readonly textContent: string | null } | null;
  };
}

let dir: string;
let sample: SampleStore;
let store: ConsoleStore;
let server: ConsoleServer;
let browser: Browser;
const metrics = new JobMetrics();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gs-console-'));
  [sample, browser] = await Promise.all([
    buildSampleStore(dir, { observer: metrics.observer }),
    launchChromium(),
  ]);
  store = hotConsoleStore(sample.hot, 'sample store');
  server = await startConsoleServer({
    port: 0,
    host: '127.0.0.1',
    store: () => store,
    pipeline: async () => metrics.pipelineStatus(),
    pipelineSource: 'the sample run',
    readOnly: false,
    deadLetterDir: join(sample.landing, 'dead-letter'),
    describe: 'sample store',
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await store?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Opens a console page and collects what the browser reports as errors. */
async function open(path: string): Promise<{ page: Page; errors: string[]; status: number }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  const response = await page.goto(`${server.url}${path}`, { waitUntil: 'load' });
  return { page, errors, status: response?.status() ?? 0 };
}

describe('the console in Chromium', () => {
  it('draws the running graph with its stage counts', async () => {
    const { page, errors } = await open('/console/pipeline');
    await page.waitForSelector('#graph svg g.node[data-stage="parseReading"]');
    const drawn = await page.evaluate(() => {
      const { __gs: gs, document } = globalThis as unknown as PageGlobals;
      return {
        nodes: document.querySelectorAll('#graph svg g.node').length,
        edges: document.querySelectorAll('#graph svg path.edge').length,
        topologyNodes: gs.pipeline.topology.nodes.length,
        topologyEdges: gs.pipeline.topology.edges.length,
        parsed: gs.pipeline.stages.parseReading?.in ?? 0,
        label: document.querySelector('#graph g.node[data-stage="parseReading"]')?.textContent ?? '',
      };
    });
    expect(drawn.nodes).toBe(drawn.topologyNodes);
    expect(drawn.edges).toBe(drawn.topologyEdges);
    expect(drawn.nodes).toBeGreaterThan(10);
    expect(drawn.parsed).toBeGreaterThan(1000);
    expect(drawn.label).toContain(`in ${drawn.parsed.toLocaleString('en')}`);
    expect(await page.locator('#stage-table tbody tr').count()).toBeGreaterThan(10);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('charts readings by tier with data, and lists faults, reasons, alerts and the balance', async () => {
    const { page, errors } = await open('/console/quality');
    await page.waitForFunction(
      () => (globalThis as unknown as PageGlobals).__gs.charts['tiers-chart'] !== undefined,
    );
    const chart = await page.evaluate(() => {
      const u = (globalThis as unknown as PageGlobals).__gs.charts['tiers-chart']!;
      const { width, height } = u.ctx.canvas;
      const pixels = u.ctx.getImageData(0, 0, width, height).data;
      let green = 0;
      for (let i = 0; i < pixels.length; i += 4) {
        // The premium series' stroke, #15803d.
        if (
          Math.abs(pixels[i]! - 21) < 40 &&
          Math.abs(pixels[i + 1]! - 128) < 40 &&
          Math.abs(pixels[i + 2]! - 61) < 40 &&
          pixels[i + 3]! > 200
        )
          green++;
      }
      return {
        hours: u.data[0]!.length,
        premium: u.data[1]!.reduce<number>((s, v) => s + (v ?? 0), 0),
        green,
      };
    });
    expect(chart.hours).toBeGreaterThan(48);
    expect(chart.premium).toBeGreaterThan(1000);
    expect(chart.green).toBeGreaterThan(200);
    const text = await page.textContent('main');
    expect(text).toContain('Faults by kind × region');
    expect(text).toMatch(/✓/);
    expect(text).not.toMatch(/✗/);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shades the known gap on the meter page', async () => {
    const { page, errors } = await open(`/console/meter?id=${sample.gapMeter}`);
    await page.waitForFunction(
      () => (globalThis as unknown as PageGlobals).__gs.charts['meter-chart'] !== undefined,
    );
    const found = await page.evaluate(
      ([from, to]) => {
        const gs = (globalThis as unknown as PageGlobals).__gs;
        const u = gs.charts['meter-chart']!;
        const band = gs.bands.find((b) => b.from <= from! && b.to >= to!);
        const mid = (from! + to!) / 2;
        const x = Math.round(u.valToPos(mid, 'x', true));
        const y = Math.round(u.bbox.top + u.bbox.height / 2);
        const [r, g, b] = u.ctx.getImageData(x, y, 1, 1).data;
        const valued = u.data[1]!.filter((v) => v !== null).length;
        return { band, pixel: [r, g, b], valued };
      },
      [sample.gapFrom / 1000, sample.gapTo / 1000],
    );
    expect(found.band?.status).toBe('missing');
    expect(found.valued).toBeGreaterThan(100);
    // The missing band's red over white: red well above green and blue.
    const [r, g, b] = found.pixel as [number, number, number];
    expect(r - g).toBeGreaterThan(30);
    expect(r - b).toBeGreaterThan(30);
    const [, , missing] = ((await page.textContent('#meter-status')) ?? '').split(' / ').map(Number);
    expect(missing).toBeGreaterThanOrEqual(24);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('approves a quarantined record from the Review page: the reading changes, one review_log row', async () => {
    const [target] = await store.query<{ id: string; meter_id: string; ts: number }>(
      sql`SELECT toString(cityHash64(source, raw)) AS id, meter_id, toUnixTimestamp(ts) AS ts
        FROM ${store.table('quarantine')} FINAL
        WHERE ts IS NOT NULL AND meter_id IN (SELECT meter_id FROM ${store.table('meters')})
        ORDER BY id LIMIT 1`,
    );
    expect(target).toBeDefined();
    const { page, errors } = await open(`/console/review?meter=${encodeURIComponent(target!.meter_id)}`);
    await page.fill('#reviewer', 'ada');
    const form = page.locator(`form.act[data-id="${target!.id}"]`);
    await form.locator('input[name="value"]').fill('1.2345');
    await form.locator('input[name="reason"]').fill('meter re-read on site');
    await form.locator('button[value="approve"]').click();
    await page.waitForSelector('#review-status.ok');
    expect(await page.textContent('#review-status')).toContain(`approved quarantined record ${target!.id}`);
    const stored = await store.query<{ kw: number; flags: string[]; quality_score: number }>(
      sql`SELECT kw, flags, quality_score FROM ${store.table('readings')} FINAL
        WHERE meter_id = ${target!.meter_id} AND ts = toDateTime(${Number(target!.ts)}, 'UTC')`,
    );
    expect(stored).toHaveLength(1);
    expect(Number(stored[0]!.kw)).toBe(1.2345);
    expect(stored[0]!.flags).toEqual(['reviewed', 'reviewed_corrected']);
    const logged = await store.query<{ action: string; reviewer: string; reason: string }>(
      sql`SELECT action, reviewer, reason FROM ${store.table('review_log')} FINAL WHERE target_id = ${target!.id}`,
    );
    expect(logged).toEqual([{ action: 'approve', reviewer: 'ada', reason: 'meter re-read on site' }]);
    // A second approve is refused and changes nothing.
    expect(errors).toEqual([]);
    const again = await page.evaluate(async (id) => {
      const r = await fetch('/console/api/review', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ action: 'approve', id, reviewer: 'bob', reason: 'again', value: '9' }),
      });
      return { status: r.status, body: (await r.json()) as { error?: string } };
    }, target!.id);
    expect(again.status).toBe(409);
    expect(again.body.error).toContain('already approved by ada');
    const after = await store.query(
      sql`SELECT count() AS n FROM ${store.table('review_log')} FINAL WHERE target_id = ${target!.id}`,
    );
    expect(Number((after[0] as { n: string }).n)).toBe(1);
    await page.close();
  });

  it('says so for an unknown meter', async () => {
    const { page, status } = await open('/console/meter?id=NO-SUCH-METER');
    expect(status).toBe(404);
    expect(await page.textContent('#message')).toContain('Unknown meter "NO-SUCH-METER"');
    await page.close();
  });

  it('says so for an empty store', async () => {
    const database = `console_empty_${process.pid}`;
    const hot = openHotStore({ kind: 'server', url: inject('clickhouseUrl'), database });
    await hot.migrate();
    const empty = await startConsoleServer({
      port: 0,
      host: '127.0.0.1',
      store: () => hotConsoleStore(hot, 'empty'),
      pipelineSource: 'none',
      readOnly: true,
      describe: 'empty',
    });
    try {
      const page = await browser.newPage();
      for (const name of ['quality', 'review']) {
        const response = await page.goto(`${empty.url}/console/${name}`);
        expect(response?.status()).toBe(200);
        expect(await page.textContent('#empty-store')).toContain('The store is empty');
      }
      await page.close();
    } finally {
      await empty.close();
      await hot.command(sql`DROP DATABASE IF EXISTS ${sql.ident(database)}`);
      await hot.close();
    }
  });
});
