/**
 * What the hot store needs of an engine (the ClickHouse server over HTTP, or chDB in the process): a few
 * calls on raw SQL text and staged inserts, plus the types and helpers both engines share.
 */

import type { InsertFormat, TextSink } from '../codecs/clickhouse-encode.js';
import type { Column } from '../schemas/reading.js';
import type { HotStoreOperation } from './clickhouse-errors.js';

export type HotStoreTarget =
  | {
      readonly kind: 'server';
      /** `http://host:8123`; credentials in the URL are moved out of it and never logged. */
      readonly url: string;
      readonly username?: string;
      readonly password?: string;
      /** The GreenStream database; default `greenstream`. Tests pick their own to stay isolated. */
      readonly database?: string;
    }
  | {
      readonly kind: 'chdb';
      /** The chDB data directory; one per process (a chDB limit). */
      readonly path: string;
      readonly database?: string;
    };

/** Side channel for what the store does on its own (retries, migrations, client warnings). */
export type HotStoreEvent =
  | {
      readonly type: 'retry';
      readonly operation: HotStoreOperation;
      readonly table?: string;
      /** The attempt that failed, 1-based. */
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | {
      /** An operation succeeded after failing: the store is back. */
      readonly type: 'recovered';
      readonly operation: HotStoreOperation;
      readonly table?: string;
      /** Attempts it took, the successful one included. */
      readonly attempts: number;
      /** From the first attempt to the success. */
      readonly downMs: number;
    }
  | { readonly type: 'migration_applied'; readonly version: number; readonly name: string }
  | { readonly type: 'client_warning'; readonly message: string };

/** One insert, its body encoded and kept ready to send (again, on a retry). */
export interface StagedInsert {
  /** Encoded body size. */
  readonly bytes: number;
  send(): Promise<void>;
  /** Frees the body; called once, whether it was sent or not. */
  release(): Promise<void>;
}

/** Every insert format of the hot store: the engines' common ones, and RowBinary (the server only). */
export type HotStoreFormat = InsertFormat | 'RowBinary';

/** Where an insert goes and in which format (`Format`: those the engine reads). */
export interface InsertTarget<Format extends HotStoreFormat = InsertFormat> {
  readonly database: string;
  readonly table: string;
  readonly columns: readonly Pick<Column<unknown>, 'name' | 'type'>[];
  readonly format: Format;
}

/** The engine-specific part: a few calls on raw SQL text. */
export interface Driver<Format extends HotStoreFormat = InsertFormat> {
  /** Whether inserts may be `ArrowStream` (else only the text formats). */
  readonly readsArrow: boolean;
  query(text: string): Promise<unknown[]>;
  command(text: string): Promise<void>;
  /**
   * Runs `encode` (synchronous; it throws what the encoder throws) and keeps its output as the
   * body of one insert into `target`. Nothing is sent yet.
   */
  stageInsert(target: InsertTarget<Format>, encode: (sink: TextSink) => void): StagedInsert;
  close(): Promise<void>;
}

/**
 * An insert body as the pieces to send: binary pieces as they came (a RowBinary body is never copied into
 * one buffer), text as one buffer, converted once (a Buffer per piece costs more than the copy it saves).
 */
export function piecesOf(encode: (sink: TextSink) => void): Uint8Array[] {
  let text = '';
  const bytes: Uint8Array[] = [];
  encode((piece) => {
    if (typeof piece === 'string') text += piece;
    else bytes.push(piece);
  });
  if (text.length > 0) bytes.push(Buffer.from(text, 'utf8'));
  return bytes;
}

/** An insert body in memory, in one buffer: text as converted, binary pieces joined. */
export function bodyOf(encode: (sink: TextSink) => void): Buffer {
  const pieces = piecesOf(encode);
  const only = pieces[0];
  return pieces.length === 1 && only instanceof Buffer ? only : Buffer.concat(pieces);
}

/** The first line of an error's message, shortened: what a log or another error may quote. */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split('\n', 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
