/**
 * The polling sources against msw-mocked services with recorded-shape payloads: Open-Meteo's hourly JSON
 * and ENTSO-E's load document normalised; 429 with Retry-After, 5xx, timeouts, truncated and
 * schema-breaking bodies; positions resuming after the last period fetched.
 */
import { readFileSync } from 'node:fs';
import { delay, HttpResponse, http } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { heatIndexC, windChillC } from '../../codecs/apparent-temperature.js';
import { decodeEntsoeLoad, type GridArea } from '../../codecs/entsoe-load.js';
import { decodeOpenMeteo, type OpenMeteoPlace } from '../../codecs/open-meteo.js';
import { fetchPage, HttpSourceError, retryAfterMs } from '../../connectors/http-poll.js';
import { gridFeed, weatherFeed } from '../../pipelines/external-feeds.js';
import { type PollPull, pollingSource } from '../../pipelines/polling-source.js';

const fixture = (name: string) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
const WEATHER = fixture('open-meteo-berlin-2024-07-15.json');
const GRID = fixture('entsoe-a65-50hertz-2024-07-15.xml');
const ACK = fixture('entsoe-ack-999.xml');
const BERLIN: OpenMeteoPlace = { city: 'berlin', region: 'north', latitude: 52.52, longitude: 13.41 };
const HERTZ: GridArea = { eic: '10YDE-VE-------2', operator: '50hertz', region: 'north', capacityMw: 20_000 };
const WEATHER_URL = 'http://weather.test/v1/archive';
const GRID_URL = 'http://grid.test/api';
const DAY0 = Date.UTC(2024, 6, 15);
const DAY = 86_400_000;

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const noWait = () => {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms), random: () => 0.5 };
};

describe('Open-Meteo adapter', () => {
  it('normalises a recorded day to the weather model with derived indices', () => {
    const r = decodeOpenMeteo(WEATHER, BERLIN, 'open-meteo:berlin');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.rows).toHaveLength(24);
    const noon = r.rows.find((w) => w.ts === DAY0 + 15 * 3_600_000)!;
    expect(noon).toMatchObject({ city: 'berlin', region: 'north', temperatureC: 36, humidityPct: 55 });
    expect(noon.visibilityKm).toBeCloseTo(24.14, 2);
    expect(noon.heatIndexC).toBeGreaterThan(noon.temperatureC);
    expect(noon.windChillC).toBe(noon.temperatureC);
  });

  it('converts km/h wind and ISO times local to utc_offset_seconds', () => {
    const body = JSON.stringify({
      utc_offset_seconds: 3600,
      hourly_units: { temperature_2m: '°C', wind_speed_10m: 'km/h' },
      hourly: { time: ['2024-01-10T01:00'], temperature_2m: [-12], wind_speed_10m: [36] },
    });
    const r = decodeOpenMeteo(body, BERLIN, 's');
    expect(r.ok && r.rows[0]).toMatchObject({
      ts: Date.UTC(2024, 0, 10),
      windSpeedMs: 10,
      humidityPct: null,
    });
    if (r.ok) expect(r.rows[0]!.windChillC).toBeCloseTo(windChillC(-12, 10), 2);
  });

  it('refuses a schema-breaking or truncated body with a reason', () => {
    expect(decodeOpenMeteo(WEATHER.slice(0, 300), BERLIN, 's')).toMatchObject({
      ok: false,
      reason: /not JSON/,
    });
    const broken = JSON.parse(WEATHER);
    broken.hourly.temperature_2m[3] = 'hot';
    expect(decodeOpenMeteo(JSON.stringify(broken), BERLIN, 's')).toMatchObject({
      ok: false,
      reason: /temperature_2m\[3\]/,
    });
    broken.hourly.temperature_2m = [1, 2];
    expect(decodeOpenMeteo(JSON.stringify(broken), BERLIN, 's')).toMatchObject({
      ok: false,
      reason: /2 values/,
    });
  });

  it('heat index and wind chill follow the published tables', () => {
    // NWS table: 96 °F at 65 % → 121 °F; Environment Canada: −20 °C at 30 km/h → −32.6 °C.
    expect(heatIndexC(((96 - 32) * 5) / 9, 65)).toBeCloseTo(((121 - 32) * 5) / 9, 0);
    expect(windChillC(-20, 30 / 3.6)).toBeCloseTo(-32.6, 1);
    expect(heatIndexC(20, 90)).toBe(20);
    expect(windChillC(15, 20)).toBe(15);
  });
});

describe('ENTSO-E load adapter', () => {
  it('averages quarter hours into hourly grid status of the configured operator', () => {
    const r = decodeEntsoeLoad(GRID, HERTZ, 'entsoe:50hertz');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.rows).toHaveLength(24);
    expect(r.rows[0]).toMatchObject({
      operator: '50hertz',
      region: 'north',
      ts: DAY0,
      loadMw: 9150,
      totalCapacityMw: 20_000,
      availableCapacityMw: 10_850,
      loadFactor: 0.4575,
      frequencyHz: null,
    });
  });

  it('reads "no matching data" as an empty page and other acknowledgements as refusals', () => {
    expect(decodeEntsoeLoad(ACK, HERTZ, 's')).toEqual({ ok: true, rows: [] });
    expect(decodeEntsoeLoad(ACK.replace('999', '401'), HERTZ, 's')).toMatchObject({ ok: false });
    expect(decodeEntsoeLoad(GRID.slice(0, 2000), HERTZ, 's')).toMatchObject({ ok: false, reason: /XML/ });
    expect(decodeEntsoeLoad(GRID.replace('MAW', 'KWH'), HERTZ, 's')).toMatchObject({
      ok: false,
      reason: /unit/,
    });
  });
});

describe('fetchPage', () => {
  it('honours Retry-After on 429, then succeeds', async () => {
    let calls = 0;
    server.use(
      http.get(WEATHER_URL, () =>
        ++calls === 1
          ? new HttpResponse('slow down', { status: 429, headers: { 'Retry-After': '7' } })
          : HttpResponse.text(WEATHER),
      ),
    );
    const t = noWait();
    const page = await fetchPage(WEATHER_URL, t);
    expect(page).toMatchObject({ status: 200, attempts: 2 });
    expect(t.waits).toEqual([7000]);
  });

  it('retries 5xx with jittered exponential backoff and gives up with a retryable error', async () => {
    server.use(http.get(WEATHER_URL, () => new HttpResponse('oops', { status: 503 })));
    const t = noWait();
    const err = await fetchPage(`${WEATHER_URL}?apikey=secret`, { ...t, retries: 3, baseDelayMs: 100 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HttpSourceError);
    expect((err as HttpSourceError).retryable).toBe(true);
    expect((err as HttpSourceError).message).not.toContain('secret');
    expect(t.waits).toEqual([50, 100, 200]);
  });

  it('times out a stalled server and retries', async () => {
    let calls = 0;
    server.use(
      http.get(WEATHER_URL, async () => {
        if (++calls === 1) await delay(5_000);
        return HttpResponse.text(WEATHER);
      }),
    );
    const page = await fetchPage(WEATHER_URL, { ...noWait(), timeoutMs: 200 });
    expect(page.attempts).toBe(2);
  });

  it('a network error is retried; a 404 is returned for the caller to dead-letter', async () => {
    let calls = 0;
    server.use(
      http.get(WEATHER_URL, () =>
        ++calls === 1 ? HttpResponse.error() : new HttpResponse('', { status: 404 }),
      ),
    );
    expect(await fetchPage(WEATHER_URL, noWait())).toMatchObject({ status: 404, attempts: 2 });
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(retryAfterMs('3', 0)).toBe(3000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(retryAfterMs('soon', 0)).toBeUndefined();
  });
});

describe('pollingSource', () => {
  const drain = async (source: ReturnType<typeof pollingSource>) => {
    const pulls: PollPull[] = [];
    for (;;) {
      const p = await source.next();
      if (p === 'end' || p === 'idle') return { pulls, last: p };
      pulls.push(p);
    }
  };

  it('fetches each period once, dead-letters refused pages with status and reason, resumes from its position', async () => {
    const asked: string[] = [];
    server.use(
      http.get(WEATHER_URL, ({ request }) => {
        const day = new URL(request.url).searchParams.get('start_date')!;
        asked.push(`w ${day}`);
        if (day === '2024-07-16') return HttpResponse.text(WEATHER.slice(0, 100)); // truncated
        return HttpResponse.text(WEATHER.replaceAll('2024-07-15', day));
      }),
      http.get(GRID_URL, ({ request }) => {
        const start = new URL(request.url).searchParams.get('periodStart')!;
        asked.push(`g ${start}`);
        if (start.startsWith('20240716'))
          return new HttpResponse('<html>bad request</html>', { status: 400 });
        return HttpResponse.text(start.startsWith('20240715') ? GRID : ACK);
      }),
    );
    const feeds = [weatherFeed(BERLIN, DAY0, WEATHER_URL), gridFeed(HERTZ, DAY0, 'tok3n', GRID_URL)];
    const first = pollingSource({ feeds, clock: () => DAY0 + 2 * DAY + 5, http: noWait() });
    await first.open(undefined);
    const a = await drain(first);
    expect(a.last).toBe('idle');
    expect(a.pulls.flatMap((p) => p.weather)).toHaveLength(24);
    expect(a.pulls.flatMap((p) => p.grid)).toHaveLength(24);
    const dead = a.pulls.flatMap((p) => p.deadLetters);
    expect(dead.map((d) => [d.feed, d.status, d.reason.slice(0, 12)])).toEqual([
      ['weather:berlin', 200, 'not JSON (tr'],
      ['grid:50hertz', 400, 'HTTP 400'],
    ]);
    expect(dead[1]!.url).not.toContain('tok3n');
    const position = first.position();
    expect(position).toEqual({ feeds: { 'weather:berlin': DAY0 + 2 * DAY, 'grid:50hertz': DAY0 + 2 * DAY } });

    const second = pollingSource({
      feeds,
      clock: () => DAY0 + 3 * DAY,
      until: DAY0 + 3 * DAY,
      http: noWait(),
    });
    await second.open(JSON.parse(JSON.stringify(position)));
    asked.length = 0;
    const b = await drain(second);
    expect(b.last).toBe('end');
    expect(asked).toEqual(['w 2024-07-17', 'g 202407170000']);
    expect(b.pulls.flatMap((p) => p.grid)).toEqual([]);
  });

  it('a schema-breaking weather body is dead-lettered; the run goes on with the next period', async () => {
    server.use(http.get(WEATHER_URL, () => HttpResponse.json({ latitude: 1, hourly: { time: 'now' } })));
    const source = pollingSource({
      feeds: [weatherFeed(BERLIN, DAY0, WEATHER_URL)],
      until: DAY0 + DAY,
      http: noWait(),
    });
    await source.open(undefined);
    const p = (await source.next()) as PollPull;
    expect(p.deadLetters[0]).toMatchObject({ status: 200, reason: '"hourly.time" is not an array' });
    expect(await source.next()).toBe('end');
  });

  it('persistent 5xx stops the run with a retryable error and keeps the position', async () => {
    server.use(http.get(WEATHER_URL, () => new HttpResponse(null, { status: 502 })));
    const source = pollingSource({
      feeds: [weatherFeed(BERLIN, DAY0, WEATHER_URL)],
      until: DAY0 + DAY,
      http: { ...noWait(), retries: 2 },
    });
    await source.open({ feeds: { 'weather:berlin': DAY0 } });
    await expect(source.next()).rejects.toMatchObject({ name: 'HttpSourceError', retryable: true });
    expect(source.position()).toEqual({ feeds: { 'weather:berlin': DAY0 } });
  });
});
