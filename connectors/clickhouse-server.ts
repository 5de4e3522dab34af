/** The ClickHouse server engine of the hot store: `@clickhouse/client` over HTTP, errors read from the response. */
import { Readable } from 'node:stream';
import { type ClickHouseClient, createClient, type Logger } from '@clickhouse/client';
import { sql } from '../codecs/sql.js';
import {
  type Driver,
  type HotStoreEvent,
  type HotStoreFormat,
  type HotStoreTarget,
  piecesOf,
} from './clickhouse-driver.js';
import { ClickHouseHttpError, SinkRejectedError } from './clickhouse-errors.js';

export interface ServerDriverOptions {
  /** HTTP request timeout; a timed-out request is retried by the store. Default 30 s. */
  readonly requestTimeoutMs?: number;
  readonly onEvent?: (event: HotStoreEvent) => void;
}

function redactedUrl(url: string): { url: string; username?: string; password?: string } {
  const parsed = new URL(url);
  const username = parsed.username ? decodeURIComponent(parsed.username) : undefined;
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.toString().replace(/\/$/, ''), username, password };
}

/** Where the server is, for logs and errors: the URL without credentials. */
export function serverLocation(url: string): string {
  try {
    return redactedUrl(url).url;
  } catch {
    // Neither the URL nor the parser's error (which quotes it) may be shown: it can hold a password.
    throw new SinkRejectedError(
      'The ClickHouse server URL is not a valid URL',
      { engine: 'server', target: '(invalid URL)', operation: 'connect', attempts: 0 },
      undefined,
    );
  }
}

function clientLogger(onEvent: ((event: HotStoreEvent) => void) | undefined): new () => Logger {
  // The client's default logger writes to the console; library code must not. Warnings (such as
  // keep-alive socket resets) go to the side channel instead, message only: their arguments
  // carry query ids and settings that nobody asked to publish.
  const forward = (message: string) => onEvent?.({ type: 'client_warning', message });
  return class HotStoreClientLogger implements Logger {
    trace(): void {}
    debug(): void {}
    info(): void {}
    warn(params: { message: string }): void {
      forward(params.message);
    }
    error(params: { message: string }): void {
      forward(params.message);
    }
  };
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const CODE_IN_BODY = /\bCode: (\d+)[.,]/;

function parseJsonEachRow(body: string): unknown[] {
  const rows: unknown[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf('\n', start);
    if (end === -1) end = body.length;
    if (end > start) {
      const line = body.slice(start, end);
      try {
        rows.push(JSON.parse(line));
      } catch (error) {
        // An exception raised after the first rows were streamed arrives in the body, after a
        // 200 status; it is the server's error, not a parse error.
        const code = CODE_IN_BODY.exec(line);
        if (code) throw new ClickHouseHttpError(200, body.slice(start), Number(code[1]));
        throw error;
      }
    }
    start = end + 1;
  }
  return rows;
}

export function serverDriver(
  target: Extract<HotStoreTarget, { kind: 'server' }>,
  url: string,
  options: ServerDriverOptions,
): Driver<HotStoreFormat> {
  const fromUrl = redactedUrl(target.url);
  const client: ClickHouseClient = createClient({
    url,
    username: target.username ?? fromUrl.username ?? 'default',
    password: target.password ?? fromUrl.password ?? '',
    request_timeout: options.requestTimeoutMs ?? 30_000,
    application: 'greenstream',
    log: { LoggerClass: clientLogger(options.onEvent) },
  });

  // Everything goes through exec() with error responses returned rather than thrown, so the
  // HTTP status is known when deciding whether to retry (the client's own errors drop it).
  async function exec(query: string, values?: readonly Uint8Array[]): Promise<string> {
    const result = await client.exec({
      query,
      ignore_error_response: true,
      // A fresh stream per attempt: a retried insert resends the same bytes.
      ...(values === undefined ? {} : { values: Readable.from(values, { objectMode: false }) }),
    });
    const body = await readAll(result.stream);
    const status = result.http_status_code ?? 200;
    const header = result.response_headers['x-clickhouse-exception-code'];
    if (status !== 200 || header !== undefined) {
      const code = header !== undefined ? Number(header) : Number(CODE_IN_BODY.exec(body)?.[1] ?? Number.NaN);
      throw new ClickHouseHttpError(status, body, Number.isNaN(code) ? undefined : code);
    }
    return body;
  }

  return {
    async query(text) {
      return parseJsonEachRow(await exec(`${withoutTrailingSemicolons(text)}\nFORMAT JSONEachRow`));
    },
    // 18.16 has no Arrow input format; RowBinary and the text formats work on every version in scope.
    readsArrow: false,
    async command(text) {
      await exec(withoutTrailingSemicolons(text));
    },
    stageInsert({ database, table, columns, format }, encode) {
      const body = piecesOf(encode);
      const into = sql`INSERT INTO ${sql.ident(database, table)} (${sql.join(columns.map((c) => sql.ident(c.name)))})`;
      let bytes = 0;
      for (const piece of body) bytes += piece.byteLength;
      return {
        bytes,
        send: async () => {
          await exec(`${into.text} FORMAT ${format}`, body);
        },
        release: async () => {},
      };
    },
    close: () => client.close(),
  };
}

function withoutTrailingSemicolons(text: string): string {
  return text.replace(/[\s;]+$/, '');
}
