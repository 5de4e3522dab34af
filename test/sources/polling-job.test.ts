/**
 * The polling sources on the epoch coordinator into chDB: rows and dead letters stored, the feeds'
 * positions saved in the checkpoint, and a restart asking only for the periods after them.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpResponse, http } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GridArea } from '../../codecs/entsoe-load.js';
import type { OpenMeteoPlace } from '../../codecs/open-meteo.js';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import { fileCheckpointStore } from '../../pipelines/checkpoints.js';
import type { CheckpointStore } from '../../pipelines/contracts.js';
import { gridFeed, weatherFeed } from '../../pipelines/external-feeds.js';
import { type PollTotals, runPollingJob } from '../../pipelines/polling-job.js';
import { pollingSource } from '../../pipelines/polling-source.js';

const fixture = (name: string) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
const WEATHER = fixture('open-meteo-berlin-2024-07-15.json');
const GRID = fixture('entsoe-a65-50hertz-2024-07-15.xml');
const ACK = fixture('entsoe-ack-999.xml');
const BERLIN: OpenMeteoPlace = { city: 'berlin', region: 'north', latitude: 52.52, longitude: 13.41 };
const HERTZ: GridArea = { eic: '10YDE-VE-------2', operator: '50hertz', region: 'north', capacityMw: 20_000 };
const DAY0 = Date.UTC(2024, 6, 15);
const DAY = 86_400_000;

const asked: string[] = [];
const server = setupServer(
  http.get('http://weather.test/v1/archive', ({ request }) => {
    const day = new URL(request.url).searchParams.get('start_date')!;
    asked.push(`w ${day}`);
    if (day === '2024-07-16') return HttpResponse.text(WEATHER.slice(0, 200));
    return HttpResponse.text(WEATHER.replaceAll('2024-07-15', day));
  }),
  http.get('http://grid.test/api', ({ request }) => {
    const start = new URL(request.url).searchParams.get('periodStart')!;
    asked.push(`g ${start.slice(0, 8)}`);
    return HttpResponse.text(start.startsWith('20240715') ? GRID : ACK);
  }),
);

describe('the polling job', () => {
  let dir: string;
  let store: HotStore;
  beforeAll(() => {
    server.listen({ onUnhandledRequest: 'bypass' });
    dir = mkdtempSync(join(tmpdir(), 'gs-poll-'));
    store = openHotStore({ kind: 'chdb', path: join(dir, 'chdb') });
  });
  afterAll(async () => {
    server.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const run = (upTo: number) =>
    runPollingJob({
      source: pollingSource({
        feeds: [
          weatherFeed(BERLIN, DAY0, 'http://weather.test/v1/archive'),
          gridFeed(HERTZ, DAY0, 'secret-token', 'http://grid.test/api'),
        ],
        clock: () => upTo,
        until: upTo,
        http: { sleep: async () => {} },
      }),
      store,
      checkpoints: fileCheckpointStore(
        join(dir, 'checkpoint.json'),
      ) as unknown as CheckpointStore<PollTotals>,
      untilIdle: true,
    });
  const count = async (table: string) =>
    Number(
      (
        await store.query<{ n: string }>(
          sql`SELECT count() AS n FROM ${sql.ident(store.database, table)} FINAL`,
        )
      )[0]!.n,
    );

  it('stores rows and dead letters, and keeps each feed’s last period in the checkpoint', async () => {
    const totals = await run(DAY0 + 2 * DAY);
    expect(totals).toEqual({ weather: 24, grid: 24, deadLettered: 1 });
    expect(await count('weather_observations')).toBe(24);
    expect(await count('grid_status')).toBe(24);
    const [dead] = await store.query<{ feed: string; status: number; reason: string; url: string }>(
      sql`SELECT feed, status, reason, url FROM ${sql.ident(store.database, 'source_dead_letters')} FINAL`,
    );
    expect(dead).toMatchObject({ feed: 'weather:berlin', status: 200 });
    expect(dead!.reason).toMatch(/^not JSON/);
    const checkpoint = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8'));
    expect(checkpoint.position).toEqual({
      feeds: { 'weather:berlin': DAY0 + 2 * DAY, 'grid:50hertz': DAY0 + 2 * DAY },
    });
    expect(JSON.stringify(checkpoint)).not.toContain('secret-token');
  });

  it('a restart asks only for the periods after the checkpoint', async () => {
    asked.length = 0;
    const totals = await run(DAY0 + 3 * DAY);
    expect(asked).toEqual(['w 2024-07-17', 'g 20240717']);
    expect(totals.weather).toBe(48);
    expect(await count('weather_observations')).toBe(48);
  });
});
