/**
 * The polling HTTP source (weather, grid status) as a `Source` of the epoch coordinator, so it runs on
 * the same runner as the meter readings: each feed is read page by page, a page being one period
 * [position, position + pageMs) that has ended by the clock; the position of every feed (the end of the
 * last period fetched) is what the checkpoint keeps, so a restarted worker asks for the next period and
 * never for one twice. A page the adapter refuses, or a 4xx answer, is dead-lettered with its status and
 * reason and the feed moves past it; a page that keeps failing in ways that may pass (5xx, 429, no
 * answer) stops the run with a retryable `HttpSourceError`, and the restart asks for it again.
 */
import { fetchPage, type HttpPollOptions, redactUrl } from '../connectors/http-poll.js';
import type { Json } from '../core/index.js';
import type { GridStatus, SourceDeadLetter, WeatherObservation } from '../schemas/external.js';
import type { Pull, Source } from './contracts.js';
import { SourcePositionError } from './source-positions.js';

export type PageDecode<R> = (
  body: string,
  source: string,
) => { readonly ok: true; readonly rows: R[] } | { readonly ok: false; readonly reason: string };

interface FeedBase<K extends string, R> {
  readonly kind: K;
  /** Unique and stable: names the feed's position in the checkpoint, e.g. `weather:berlin`. */
  readonly key: string;
  /** The first period's start (epoch ms) when the checkpoint has no position for the feed. */
  readonly startAt: number;
  /** Length of a page's period; the position moves by it. */
  readonly pageMs: number;
  /** The page's URL for [start, end). */
  readonly url: (start: number, end: number) => string;
  readonly decode: PageDecode<R>;
}

export type PolledFeed = FeedBase<'weather', WeatherObservation> | FeedBase<'grid', GridStatus>;

export interface PollPull extends Pull {
  readonly feed: string;
  readonly weather: readonly WeatherObservation[];
  readonly grid: readonly GridStatus[];
  readonly deadLetters: readonly SourceDeadLetter[];
}

export interface PollingSourceOptions {
  readonly feeds: readonly PolledFeed[];
  /** Processing time (ms); a period is fetched once it has ended by it. */
  readonly clock?: () => number;
  /** A bounded run: `next` says `end` once every feed's position has reached this. */
  readonly until?: number;
  readonly http?: HttpPollOptions;
}

const EXCERPT = 512;

export function pollingSource(options: PollingSourceOptions): Source<PollPull> {
  const clock = options.clock ?? Date.now;
  const positions = new Map<string, number>();
  let turn = 0;
  const keys = new Set<string>();
  for (const f of options.feeds) {
    if (keys.has(f.key)) throw new SourcePositionError(`two feeds named ${f.key}`, { feed: f.key });
    keys.add(f.key);
  }

  const due = (f: PolledFeed, pos: number): boolean => {
    const end = pos + f.pageMs;
    return end <= clock() && (options.until === undefined || pos < options.until);
  };

  return {
    name: 'polling',
    resumesFromPosition: true,
    async open(position: Json | undefined) {
      const stored =
        position !== null && typeof position === 'object' && !Array.isArray(position)
          ? position.feeds
          : undefined;
      for (const f of options.feeds) {
        const p =
          stored !== null && typeof stored === 'object' && !Array.isArray(stored) ? stored[f.key] : undefined;
        if (p !== undefined && (typeof p !== 'number' || !Number.isSafeInteger(p)))
          throw new SourcePositionError(`checkpoint position of feed ${f.key} is ${JSON.stringify(p)}`, {
            feed: f.key,
          });
        positions.set(f.key, p ?? f.startAt);
      }
    },
    async next() {
      const feeds = options.feeds;
      for (let i = 0; i < feeds.length; i++) {
        const f = feeds[(turn + i) % feeds.length]!;
        const start = positions.get(f.key)!;
        if (!due(f, start)) continue;
        turn = (turn + i + 1) % feeds.length;
        const end = start + f.pageMs;
        const url = f.url(start, end);
        const page = await fetchPage(url, options.http);
        const source = `${f.key}:${new Date(start).toISOString()}`;
        const deadLetter = (reason: string): PollPull => ({
          feed: f.key,
          weather: [],
          grid: [],
          deadLetters: [
            {
              feed: f.key,
              url: redactUrl(url),
              status: page.status,
              reason,
              excerpt: page.body.slice(0, EXCERPT),
              at: clock(),
            },
          ],
        });
        positions.set(f.key, end);
        if (page.status < 200 || page.status >= 300) return deadLetter(`HTTP ${page.status}`);
        const decoded = f.decode(page.body, source);
        if (!decoded.ok) return deadLetter(decoded.reason);
        // Rows outside the period asked for belong to another page: keeping them would store an hour twice
        // across two positions' worth of pages.
        const inside = <R extends { ts: number }>(rows: R[]) =>
          rows.filter((r) => r.ts >= start && r.ts < end);
        return f.kind === 'weather'
          ? { feed: f.key, weather: inside(decoded.rows as WeatherObservation[]), grid: [], deadLetters: [] }
          : { feed: f.key, weather: [], grid: inside(decoded.rows as GridStatus[]), deadLetters: [] };
      }
      if (options.until !== undefined && options.feeds.every((f) => positions.get(f.key)! >= options.until!))
        return 'end';
      return 'idle';
    },
    position() {
      return { feeds: Object.fromEntries(positions) };
    },
    async commit() {},
    async close() {},
  };
}
