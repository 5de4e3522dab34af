/**
 * The streams GreenStream owns, created idempotently by whoever starts first (publisher or worker); an
 * existing stream keeps its limits unless a caller asks for others (`greenstream retention` sets `max_age`).
 *
 * Retention (documented contract):
 * - `READINGS` (subjects `readings.>`): limits-based, file storage, messages kept 7 days
 *   (`max_age`), unbounded bytes unless configured, oldest discarded first. A message is one landing
 *   file or one bounded chunk of it. Duplicate window 1 hour: the publisher sets the message id to the
 *   SHA-256 of the content, so a file uploaded twice within the hour is stored once; later re-uploads
 *   are stored again and made harmless downstream by the record id (ReplacingMergeTree).
 * - `READINGS_DLQ` (subjects `dlq.readings.>`, i.e. `dlq.` + the original subject): limits-based,
 *   file storage, 30 days, so a dead letter outlives the message it copies. Its subjects cannot sit
 *   under `readings.>`: NATS refuses streams with overlapping subjects, and the readings consumers
 *   would read the dead letters back.
 */
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { messageOf, StreamSetupError } from './jetstream-errors.js';

export const READINGS_STREAM = 'READINGS';
export const READINGS_SUBJECT_PREFIX = 'readings';
export const DEAD_LETTER_STREAM = 'READINGS_DLQ';
/** A dead letter of a message on subject `s` is published on `dlq.<s>`. */
export const DEAD_LETTER_SUBJECT_PREFIX = 'dlq';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

export interface StreamRetention {
  /** Age after which messages are discarded; 0 keeps them forever. */
  readonly maxAgeMs?: number;
  /** Total size before the oldest messages are discarded; -1 for no limit. */
  readonly maxBytes?: number;
  /** How long a message id is remembered for de-duplication. */
  readonly duplicateWindowMs?: number;
  /** Largest accepted message; -1 for the server's `max_payload`. */
  readonly maxMessageBytes?: number;
  /** File storage survives a restart; memory is for tests. Only applies when the stream is created. */
  readonly storage?: 'file' | 'memory';
}

export interface StreamOptions extends StreamRetention {
  readonly name?: string;
  readonly subjects?: readonly string[];
}

export const DEFAULT_READINGS_RETENTION: Required<StreamRetention> = {
  maxAgeMs: 7 * DAY_MS,
  maxBytes: -1,
  duplicateWindowMs: HOUR_MS,
  maxMessageBytes: -1,
  storage: 'file',
};

export const DEFAULT_DEAD_LETTER_RETENTION: Required<StreamRetention> = {
  maxAgeMs: 30 * DAY_MS,
  maxBytes: -1,
  duplicateWindowMs: HOUR_MS,
  maxMessageBytes: -1,
  storage: 'file',
};

/** Creates the readings stream, or brings an existing one's limits to the given ones. Idempotent. */
export function ensureReadingsStream(
  js: JetStreamClient | JetStreamManager,
  options: StreamOptions = {},
): Promise<StreamInfo> {
  return ensureStream(
    js,
    options.name ?? READINGS_STREAM,
    options.subjects ?? [`${READINGS_SUBJECT_PREFIX}.>`],
    'GreenStream smart-meter readings: one landing file (or chunk) per message',
    { ...DEFAULT_READINGS_RETENTION, ...definedOnly(options) },
    definedOnly(options),
  );
}

/** Creates the dead-letter stream, or updates its limits. Idempotent. */
export function ensureDeadLetterStream(
  js: JetStreamClient | JetStreamManager,
  options: StreamOptions = {},
): Promise<StreamInfo> {
  return ensureStream(
    js,
    options.name ?? DEAD_LETTER_STREAM,
    options.subjects ?? [`${DEAD_LETTER_SUBJECT_PREFIX}.${READINGS_SUBJECT_PREFIX}.>`],
    'GreenStream dead letters: whole messages that could not be decoded, with Gs-Reason headers',
    { ...DEFAULT_DEAD_LETTER_RETENTION, ...definedOnly(options) },
    definedOnly(options),
  );
}

export async function managerOf(js: JetStreamClient | JetStreamManager): Promise<JetStreamManager> {
  return 'jetstreamManager' in js ? js.jetstreamManager() : js;
}

async function ensureStream(
  js: JetStreamClient | JetStreamManager,
  name: string,
  subjects: readonly string[],
  description: string,
  retention: Required<StreamRetention>,
  /**
   * The limits the caller asked for: only these are changed on an existing stream, so a worker that
   * starts with the defaults leaves the `max_age` that `greenstream retention` set.
   */
  explicit: Partial<Required<StreamRetention>>,
): Promise<StreamInfo> {
  const jsm = await managerOf(js);
  const wanted = {
    subjects: [...subjects],
    max_age: nanos(retention.maxAgeMs),
    max_bytes: retention.maxBytes,
    duplicate_window: nanos(
      Math.min(retention.duplicateWindowMs, retention.maxAgeMs || Number.MAX_SAFE_INTEGER),
    ),
    max_msg_size: retention.maxMessageBytes,
  };
  const context = { stream: name, subjects: subjects.join(',') };
  for (let attempt = 0; ; attempt++) {
    const existing = await streamInfo(jsm, name);
    try {
      if (existing === null) {
        const config: Partial<StreamConfig> & { name: string } = {
          name,
          description,
          retention: RetentionPolicy.Limits,
          storage: retention.storage === 'memory' ? StorageType.Memory : StorageType.File,
          discard: DiscardPolicy.Old,
          num_replicas: 1,
          ...wanted,
        };
        return await jsm.streams.add(config);
      }
      const asked = {
        subjects: wanted.subjects,
        ...(explicit.maxAgeMs === undefined ? {} : { max_age: wanted.max_age }),
        ...(explicit.maxBytes === undefined ? {} : { max_bytes: wanted.max_bytes }),
        ...(explicit.duplicateWindowMs === undefined && explicit.maxAgeMs === undefined
          ? {}
          : { duplicate_window: wanted.duplicate_window }),
        ...(explicit.maxMessageBytes === undefined ? {} : { max_msg_size: wanted.max_msg_size }),
      };
      if (sameLimits(existing.config, asked)) return existing;
      return await jsm.streams.update(name, { ...existing.config, ...asked });
    } catch (error) {
      // Another process may have created the stream between our look and our add: look again once.
      if (attempt === 0 && existing === null && isApiError(error, 10058)) continue;
      throw new StreamSetupError(`cannot set up stream ${name}: ${messageOf(error)}`, context, {
        cause: error,
      });
    }
  }
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isApiError(error, JetStreamApiCodes.StreamNotFound)) return null;
    throw new StreamSetupError(
      `cannot look up stream ${name}: ${messageOf(error)}`,
      { stream: name },
      { cause: error },
    );
  }
}

function sameLimits(
  config: StreamConfig,
  wanted: {
    subjects: string[];
    max_age?: number;
    max_bytes?: number;
    duplicate_window?: number;
    max_msg_size?: number;
  },
): boolean {
  const subjects = [...config.subjects].sort().join('\n');
  const same = (key: 'max_age' | 'max_bytes' | 'duplicate_window' | 'max_msg_size') =>
    wanted[key] === undefined || config[key] === wanted[key];
  return (
    subjects === [...wanted.subjects].sort().join('\n') &&
    same('max_age') &&
    same('max_bytes') &&
    same('duplicate_window') &&
    same('max_msg_size')
  );
}

export function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

function definedOnly(options: StreamOptions): Partial<Required<StreamRetention>> {
  const out: { -readonly [K in keyof StreamRetention]: StreamRetention[K] } = {};
  if (options.maxAgeMs !== undefined) out.maxAgeMs = options.maxAgeMs;
  if (options.maxBytes !== undefined) out.maxBytes = options.maxBytes;
  if (options.duplicateWindowMs !== undefined) out.duplicateWindowMs = options.duplicateWindowMs;
  if (options.maxMessageBytes !== undefined) out.maxMessageBytes = options.maxMessageBytes;
  if (options.storage !== undefined) out.storage = options.storage;
  return out as Partial<Required<StreamRetention>>;
}
