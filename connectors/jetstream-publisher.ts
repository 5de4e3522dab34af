/**
 * Uploading landing files into the readings stream.
 *
 * A file becomes one message, or, when larger than the message limit, several chunks of whole
 * records, each repeating the CSV header (JSON arrays are cut into smaller arrays; NEM12 files between
 * data streams or days, Green Button feeds between interval blocks). The message id is
 * the SHA-256 of the message body, so uploading a file twice stores it once (within the stream's
 * duplicate window) and a publish that timed out can be retried safely.
 *
 * Partitions: a message goes to `readings.<p>`, `p` = FNV-1a(key) mod `partitions`. With
 * `partitionBy: 'file'` (default) the key is the file name without extension: the landing layout
 * names a file after its meter (`raw/2024/03/15/14/MTR-78910.csv`), so a meter's files share a
 * partition and one worker sees all of a meter's readings. With `partitionBy: 'meter'` a CSV file
 * holding many meters is split by each line's `meter_id` (lines of one partition stay in file order);
 * JSON files are always keyed by file.
 */
import { createHash } from 'node:crypto';
import { basename, extname } from 'node:path';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import {
  CSV_CONTENT_TYPE,
  detectContentType,
  JSON_CONTENT_TYPE,
  type PayloadContentType,
  splitCsvRecords,
} from '../codecs/decode.js';
import { detectUtilityContentType } from '../codecs/dispatch.js';
import { type SplitText, splitGreenButton, splitNem12 } from '../codecs/split.js';
import { NEM12_CONTENT_TYPE } from '../codecs/types.js';
import { isTransientNatsError, messageOf, PayloadTooLargeError, PublishError } from './jetstream-errors.js';
import { READINGS_SUBJECT_PREFIX } from './jetstream-streams.js';
import { landingReceivedAt } from './landing.js';

/** Message headers GreenStream sets and reads. */
export const GsHeaders = {
  ContentType: 'Content-Type',
  /** The landing file the message came from. */
  Source: 'Gs-Source',
  /** `i/n` when a file was cut into n chunks. */
  Chunk: 'Gs-Chunk',
  Reason: 'Gs-Reason',
  SourceStream: 'Gs-Source-Stream',
  SourceSeq: 'Gs-Source-Seq',
  SourceSubject: 'Gs-Source-Subject',
  /**
   * Epoch ms the file was received (its landing hour), so a reading uploaded later is judged by when
   * it arrived, not by when it was published. Absent: the message's publish time stands in.
   */
  ReceivedAt: 'Gs-Received-At',
} as const;

/** Default message limit; the server's `max_payload` (1 MiB by default) caps it too. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
const MAX_RETRY_DELAY_MS = 5000;
/** Room left in a message for headers (source path, ids, chunk numbers). */
const HEADER_ROOM_BYTES = 2048;

export interface PublishableFile {
  /** Recorded as `Gs-Source` and so as the records' source downstream. */
  readonly path: string;
  readonly bytes: Uint8Array;
  /** Detected from the content when absent. */
  readonly contentType?: PayloadContentType | null;
  /** Epoch ms; taken from a landing path (`raw/YYYY/MM/DD/HH/…`) when absent. */
  readonly receivedAt?: number;
}

export interface PublisherOptions {
  readonly subjectPrefix?: string;
  /** Number of partitions (subjects `readings.0` … `readings.<n-1>`). Default 16. */
  readonly partitions?: number;
  readonly partitionBy?: 'file' | 'meter';
  /** Largest message body; capped by `maxPayload`. Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** The server's `max_payload` (`nc.info.max_payload`); default 1 MiB. */
  readonly maxPayload?: number;
  /** Publishes awaiting their acknowledgement at once. Default 256. */
  readonly maxInFlight?: number;
  /** Per publish; default the JetStream context's timeout. */
  readonly publishTimeoutMs?: number;
  /** Retries of a publish that failed transiently (safe: the message id de-duplicates). Default 5. */
  readonly retries?: number;
  /** Delay before the first retry, doubled each time up to 5 s. Default 250 ms. */
  readonly retryDelayMs?: number;
}

/** A message ready to publish. */
export interface PlannedMessage {
  readonly subject: string;
  readonly msgID: string;
  readonly contentType: PayloadContentType;
  readonly body: Uint8Array;
  /** 1-based chunk number and chunk count. */
  readonly chunk: number;
  readonly chunks: number;
}

export interface PublishedMessage {
  readonly subject: string;
  readonly msgID: string;
  readonly seq: number;
  /** The stream already held a message with this id: nothing new was stored. */
  readonly duplicate: boolean;
  readonly bytes: number;
  readonly chunk: number;
  readonly chunks: number;
}

export interface FilePublishResult {
  readonly path: string;
  readonly messages: PublishedMessage[];
  readonly stored: number;
  readonly duplicates: number;
}

export interface PublishSummary {
  readonly files: FilePublishResult[];
  readonly failed: { readonly path: string; readonly error: PublishError }[];
  readonly messages: number;
  readonly stored: number;
  readonly duplicates: number;
  readonly bytes: number;
}

export class ReadingsPublisher {
  readonly #js: JetStreamClient;
  readonly #prefix: string;
  readonly #partitions: number;
  readonly #partitionBy: 'file' | 'meter';
  readonly #maxBody: number;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  readonly #timeout: number | undefined;
  readonly #limiter: InFlightLimiter;

  constructor(js: JetStreamClient, options: PublisherOptions = {}) {
    this.#js = js;
    this.#prefix = options.subjectPrefix ?? READINGS_SUBJECT_PREFIX;
    this.#partitions = options.partitions ?? 16;
    if (!Number.isInteger(this.#partitions) || this.#partitions < 1) {
      throw new PublishError('partitions must be a positive integer', { partitions: this.#partitions });
    }
    this.#partitionBy = options.partitionBy ?? 'file';
    const ceiling = Math.min(
      options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      options.maxPayload ?? DEFAULT_MAX_MESSAGE_BYTES,
    );
    this.#maxBody = ceiling - HEADER_ROOM_BYTES;
    if (this.#maxBody < 1024) throw new PublishError('message limit too small', { maxMessageBytes: ceiling });
    this.#retries = options.retries ?? 5;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#timeout = options.publishTimeoutMs;
    this.#limiter = new InFlightLimiter(options.maxInFlight ?? 256);
  }

  /** A publisher sized to the connected server's `max_payload`. */
  static forConnection(
    nc: NatsConnection,
    js: JetStreamClient,
    options: PublisherOptions = {},
  ): ReadingsPublisher {
    return new ReadingsPublisher(js, { maxPayload: nc.info?.max_payload, ...options });
  }

  /** Largest message body this publisher sends. */
  get maxBodyBytes(): number {
    return this.#maxBody;
  }

  /**
   * Cuts a file into messages without publishing anything. Throws `PayloadTooLargeError` when the
   * file is over the limit and cannot be cut (not valid CSV/JSON, or a single record over the limit).
   */
  plan(file: PublishableFile): PlannedMessage[] {
    const contentType =
      file.contentType ?? detectUtilityContentType(file.bytes) ?? detectContentType(file.bytes);
    const fileKey = basename(file.path, extname(file.path));
    const splitByMeter = this.#partitionBy === 'meter' && contentType === CSV_CONTENT_TYPE;
    if (file.bytes.byteLength <= this.#maxBody && !splitByMeter) {
      return [this.#message(this.partitionOf(fileKey), contentType, file.bytes, 1, 1)];
    }
    const text = decodeUtf8(file.bytes);
    const tooLarge = (why: string) =>
      new PayloadTooLargeError(`${file.path}: ${file.bytes.byteLength} bytes ${why}`, {
        path: file.path,
        bytes: file.bytes.byteLength,
        maxMessageBytes: this.#maxBody,
      });
    if (text === null) {
      if (file.bytes.byteLength <= this.#maxBody)
        return [this.#message(this.partitionOf(fileKey), contentType, file.bytes, 1, 1)];
      throw tooLarge(
        `exceed the message limit of ${this.#maxBody} bytes and are not UTF-8 text, so cannot be cut`,
      );
    }
    const groups =
      contentType === CSV_CONTENT_TYPE
        ? this.#csvGroups(text, fileKey, splitByMeter)
        : contentType === JSON_CONTENT_TYPE
          ? this.#jsonGroups(text, fileKey)
          : this.#utilityGroups(text, fileKey, contentType);
    if (typeof groups === 'string') {
      if (file.bytes.byteLength <= this.#maxBody)
        return [this.#message(this.partitionOf(fileKey), contentType, file.bytes, 1, 1)];
      throw tooLarge(`exceed the message limit of ${this.#maxBody} bytes and cannot be cut: ${groups}`);
    }
    const bodies: { partition: number; body: Uint8Array }[] = [];
    for (const group of groups) {
      for (const body of group.pack(this.#maxBody)) {
        if (body === null)
          throw tooLarge(`hold a single record larger than the message limit of ${this.#maxBody} bytes`);
        bodies.push({ partition: group.partition, body });
      }
    }
    return bodies.map(({ partition, body }, i) =>
      this.#message(partition, contentType, body, i + 1, bodies.length),
    );
  }

  /** Publishes one file; resolves when every message of it is acknowledged by the stream. */
  async publishFile(file: PublishableFile): Promise<FilePublishResult> {
    const planned = this.plan(file);
    const receivedAt = file.receivedAt ?? landingReceivedAt(file.path);
    const messages = await Promise.all(
      planned.map((m) => this.#limiter.run(() => this.#publish(file.path, receivedAt, m))),
    );
    const duplicates = messages.filter((m) => m.duplicate).length;
    return { path: file.path, messages, stored: messages.length - duplicates, duplicates };
  }

  /**
   * Publishes many files with up to `maxInFlight` publishes awaiting acknowledgement. A file that
   * fails is reported in `failed` and does not stop the others.
   */
  async publishFiles(
    files: Iterable<PublishableFile> | AsyncIterable<PublishableFile>,
  ): Promise<PublishSummary> {
    const pending: Promise<FilePublishResult | { path: string; error: PublishError }>[] = [];
    for await (const file of files) {
      let planned: PlannedMessage[];
      try {
        planned = this.plan(file);
      } catch (error) {
        pending.push(Promise.resolve({ path: file.path, error: asPublishError(error, file.path) }));
        continue;
      }
      const acks: Promise<PublishedMessage>[] = [];
      const receivedAt = file.receivedAt ?? landingReceivedAt(file.path);
      for (const message of planned) {
        // Waiting for a slot here, not inside the promise, is what bounds memory and in-flight work.
        await this.#limiter.acquire();
        acks.push(this.#publish(file.path, receivedAt, message).finally(() => this.#limiter.release()));
      }
      const path = file.path;
      pending.push(
        Promise.all(acks).then(
          (messages) => {
            const duplicates = messages.filter((m) => m.duplicate).length;
            return { path, messages, stored: messages.length - duplicates, duplicates };
          },
          (error: unknown) => ({ path, error: asPublishError(error, path) }),
        ),
      );
    }
    const results = await Promise.all(pending);
    const done: FilePublishResult[] = [];
    const failed: { path: string; error: PublishError }[] = [];
    for (const r of results) {
      if ('error' in r) failed.push(r);
      else done.push(r);
    }
    let messages = 0;
    let stored = 0;
    let duplicates = 0;
    let bytes = 0;
    for (const f of done) {
      messages += f.messages.length;
      stored += f.stored;
      duplicates += f.duplicates;
      for (const m of f.messages) bytes += m.bytes;
    }
    return { files: done, failed, messages, stored, duplicates, bytes };
  }

  /** The partition a key (file name or meter id) maps to. */
  partitionOf(key: string): number {
    return partitionOf(key, this.#partitions);
  }

  #message(
    partition: number,
    contentType: PayloadContentType,
    body: Uint8Array,
    chunk: number,
    chunks: number,
  ): PlannedMessage {
    return {
      subject: `${this.#prefix}.${partition}`,
      msgID: createHash('sha256').update(body).digest('hex'),
      contentType,
      body,
      chunk,
      chunks,
    };
  }

  #csvGroups(text: string, fileKey: string, byMeter: boolean): RecordGroup[] | string {
    const split = splitCsvRecords(text);
    if ('error' in split) return split.error;
    const groups = new Map<number, RecordGroup>();
    const fileGroup = this.partitionOf(fileKey);
    for (const record of split.records) {
      const partition = byMeter && record.meterId !== '' ? this.partitionOf(record.meterId) : fileGroup;
      let group = groups.get(partition);
      if (group === undefined) {
        group = new RecordGroup(partition, `${split.header}\n`, '', '\n', '\n');
        groups.set(partition, group);
      }
      group.add(text.slice(record.start, record.end));
    }
    return [...groups.values()].sort((a, b) => a.partition - b.partition);
  }

  #jsonGroups(text: string, fileKey: string): RecordGroup[] | string {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      return `invalid JSON: ${messageOf(error)}`;
    }
    if (!Array.isArray(parsed)) return 'a single JSON object cannot be cut';
    const group = new RecordGroup(this.partitionOf(fileKey), '[', ']', ',', '');
    for (const element of parsed) group.add(JSON.stringify(element) ?? 'null');
    return [group];
  }

  /**
   * A NEM12 file is cut between data streams (and a long stream between days, repeating its 200 record),
   * a Green Button feed between interval blocks (every part repeating the usage points, meter readings
   * and reading types): each part is a file of the same format that decodes on its own.
   */
  #utilityGroups(text: string, fileKey: string, contentType: PayloadContentType): RecordGroup[] | string {
    const nem12 = contentType === NEM12_CONTENT_TYPE;
    const split: SplitText | string = nem12 ? splitNem12(text, this.#maxBody / 2) : splitGreenButton(text);
    if (typeof split === 'string') return split;
    const group = new RecordGroup(this.partitionOf(fileKey), split.head, split.tail, '\n', nem12 ? '\n' : '');
    for (const record of split.records) group.add(record);
    return [group];
  }

  async #publish(
    path: string,
    receivedAt: number | null,
    message: PlannedMessage,
  ): Promise<PublishedMessage> {
    const hdrs = natsHeaders();
    hdrs.set(GsHeaders.ContentType, message.contentType);
    hdrs.set(GsHeaders.Source, headerSafe(path));
    if (receivedAt !== null) hdrs.set(GsHeaders.ReceivedAt, String(receivedAt));
    if (message.chunks > 1) hdrs.set(GsHeaders.Chunk, `${message.chunk}/${message.chunks}`);
    const options = {
      msgID: message.msgID,
      headers: hdrs,
      ...(this.#timeout !== undefined ? { timeout: this.#timeout } : {}),
    };
    let ack: PubAck;
    for (let attempt = 0; ; attempt++) {
      try {
        ack = await this.#js.publish(message.subject, message.body, options);
        break;
      } catch (error) {
        if (attempt < this.#retries && isTransientNatsError(error)) {
          await sleep(Math.min(this.#retryDelayMs * 2 ** attempt, MAX_RETRY_DELAY_MS));
          continue;
        }
        throw new PublishError(
          `cannot publish ${path} (chunk ${message.chunk}/${message.chunks}) to ${message.subject}: ${messageOf(error)}`,
          { path, subject: message.subject, msgID: message.msgID, attempts: attempt + 1 },
          { cause: error },
        );
      }
    }
    return {
      subject: message.subject,
      msgID: message.msgID,
      seq: ack.seq,
      duplicate: ack.duplicate,
      bytes: message.body.byteLength,
      chunk: message.chunk,
      chunks: message.chunks,
    };
  }
}

/** Publishes files with a one-off publisher; see `ReadingsPublisher`. */
export function publishReadings(
  js: JetStreamClient,
  files: Iterable<PublishableFile> | AsyncIterable<PublishableFile>,
  options: PublisherOptions = {},
): Promise<PublishSummary> {
  return new ReadingsPublisher(js, options).publishFiles(files);
}

/** FNV-1a (32 bit) of the key's UTF-16 code units, mod `partitions`: stable across runs and hosts. */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** Records of one partition, packed into bodies of at most `max` bytes: prefix, records, suffix. */
class RecordGroup {
  readonly #records: string[] = [];
  constructor(
    readonly partition: number,
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly separator: string,
    private readonly terminator: string,
  ) {}

  add(record: string): void {
    this.#records.push(record);
  }

  /** Yields each body, or null for a record that cannot fit in any body. */
  *pack(max: number): Generator<Uint8Array | null> {
    const fixed =
      Buffer.byteLength(this.prefix) + Buffer.byteLength(this.suffix) + Buffer.byteLength(this.terminator);
    const separator = Buffer.byteLength(this.separator);
    let parts: string[] = [];
    let size = fixed;
    const flush = (): Uint8Array =>
      Buffer.from(`${this.prefix}${parts.join(this.separator)}${this.terminator}${this.suffix}`);
    for (const record of this.#records) {
      const bytes = Buffer.byteLength(record) + separator;
      if (fixed + bytes > max) {
        yield null;
        return;
      }
      if (size + bytes > max && parts.length > 0) {
        yield flush();
        parts = [];
        size = fixed;
      }
      parts.push(record);
      size += bytes;
    }
    if (parts.length > 0) yield flush();
  }
}

/**
 * Bounds the publishes awaiting their acknowledgement. Once full it admits more only after half
 * have been acknowledged, in a burst the client can coalesce into few socket writes, rather than
 * one small write per returning ack.
 */
class InFlightLimiter {
  #active = 0;
  #full = false;
  readonly #waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  acquire(): Promise<void> {
    if (!this.#full && this.#active < this.max) {
      this.#admit();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    this.#active--;
    if (this.#full && this.#active > this.max / 2) return;
    this.#full = false;
    while (this.#waiting.length > 0 && !this.#full) {
      this.#admit();
      this.#waiting.shift()?.();
    }
  }

  #admit(): void {
    this.#active++;
    if (this.#active >= this.max) this.#full = true;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Header values cannot hold line breaks; a path with one would corrupt the message. */
export function headerSafe(value: string, maxLength = 1024): string {
  const flat = value.replace(/[\r\n]+/g, ' ');
  return flat.length > maxLength ? `${flat.slice(0, maxLength)}…` : flat;
}

function asPublishError(error: unknown, path: string): PublishError {
  if (error instanceof PublishError) return error;
  return new PublishError(`cannot publish ${path}: ${messageOf(error)}`, { path }, { cause: error });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
