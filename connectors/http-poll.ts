/**
 * HTTP GET for the polling sources (weather, grid status): one page per call, with a timeout, retries on
 * what may pass (no response, a timeout, 5xx, 429) after a jittered exponential backoff, and a 429's
 * `Retry-After` honoured. A response that will not change by asking again (another 4xx) is returned, not
 * thrown, so the caller can dead-letter the page with its status.
 */
import { GreenStreamError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';

export interface HttpPollOptions {
  /** Per attempt; default 10 s. */
  readonly timeoutMs?: number;
  /** Attempts after the first; default 4. */
  readonly retries?: number;
  /** Backoff before retry n (from 0) is a random share of min(maxDelayMs, baseDelayMs·2ⁿ) ("full jitter"). */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** A `Retry-After` longer than this is cut to it, so a hostile header cannot park the worker. */
  readonly maxRetryAfterMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** Injected in tests: [0, 1). */
  readonly random?: () => number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface HttpPage {
  readonly status: number;
  readonly body: string;
  /** Attempts it took (1: no retry). */
  readonly attempts: number;
}

/** Every attempt failed in a way that may pass later: the job stops and resumes from its position. */
export class HttpSourceError extends GreenStreamError<{
  readonly url: string;
  readonly status: number;
  readonly attempts: number;
}> {
  override readonly name = 'HttpSourceError';
}

/** The URL as safe to log: no query parameter whose name suggests a credential. */
export function redactUrl(url: string): string {
  const u = new URL(url);
  for (const key of [...u.searchParams.keys()])
    if (/token|key|secret|password|appid/i.test(key)) u.searchParams.set(key, '***');
  return u.toString();
}

/** Milliseconds a `Retry-After` value asks for (seconds or an HTTP date), or undefined. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

export async function fetchPage(url: string, options: HttpPollOptions = {}): Promise<HttpPage> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retries = options.retries ?? 4;
  const base = options.baseDelayMs ?? 500;
  const max = options.maxDelayMs ?? 30_000;
  const maxRetryAfter = options.maxRetryAfterMs ?? 300_000;
  const random = options.random ?? Math.random;
  const pause = options.sleep ?? sleep;
  let last = { status: 0, reason: '' };
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (options.signal?.aborted) break;
    let wait = Math.floor(random() * Math.min(max, base * 2 ** attempt));
    try {
      const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
      const response = await fetch(url, {
        headers: { accept: 'application/json, application/xml', ...options.headers },
        signal: AbortSignal.any(signals),
      });
      // The body is read under the same timeout: a server that stalls mid-body is retried too.
      const body = await response.text();
      if (response.status === 429) {
        const asked = retryAfterMs(response.headers.get('retry-after'), Date.now());
        if (asked !== undefined) wait = Math.min(asked, maxRetryAfter);
        last = { status: 429, reason: 'rate limited' };
      } else if (response.status >= 500) {
        last = { status: response.status, reason: `server error ${response.status}` };
      } else {
        return { status: response.status, body, attempts: attempt + 1 };
      }
    } catch (err) {
      const name = (err as Error).name;
      last = {
        status: 0,
        reason: name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : `request failed: ${name}`,
      };
    }
    if (attempt < retries) await pause(wait, options.signal);
  }
  const safe = redactUrl(url);
  throw new HttpSourceError(`${safe}: ${last.reason} after ${retries + 1} attempt(s)`, {
    retryable: true,
    context: { url: safe, status: last.status, attempts: retries + 1 },
  });
}
