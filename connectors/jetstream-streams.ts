/**
 * The streams GreenStream owns, created idempotently by whoever starts first (publisher or worker); an
 * existing stream keeps its limits: only `greenstream retention` changes one (`setStreamMaxAge`).
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
 *
 * Streams are created with these limits and `replicas` copies (3 on a cluster), but an existing stream is
 * never changed: its owner may have set other limits on purpose. When they differ from the recommended
 * ones, `onLimitsDiffer` is told (the worker logs a warning). With `manage: false` nothing is created
 * either: a missing stream is an error naming it, for platforms where streams belong to their owners.
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
import { FetchError, isTransientNatsError, messageOf, StreamSetupError } from './jetstream-errors.js';

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
  /** Copies of each message on a cluster (1, 3 or 5); only applies when the stream is created. */
  readonly replicas?: number;
}

/** A limit of an existing stream that is not the recommended one: `actual` is kept. */
export interface LimitDifference {
  readonly limit: string;
  readonly actual: string | number;
  readonly recommended: string | number;
}

/** How a process treats the streams it uses: create missing ones (default), or only check they exist. */
export interface StreamManagement {
  /** false: never create a stream, only look it up (a missing one is a `StreamSetupError`). */
  readonly manage?: boolean;
  /** An existing stream's limits differ from the recommended ones; they are kept as they are. */
  readonly onLimitsDiffer?: (stream: string, differences: readonly LimitDifference[]) => void;
}

export interface StreamOptions extends StreamRetention, StreamManagement {
  readonly name?: string;
  readonly subjects?: readonly string[];
}

export const DEFAULT_READINGS_RETENTION: Required<StreamRetention> = {
  maxAgeMs: 7 * DAY_MS,
  maxBytes: -1,
  duplicateWindowMs: HOUR_MS,
  maxMessageBytes: -1,
  storage: 'file',
  replicas: 1,
};

export const DEFAULT_DEAD_LETTER_RETENTION: Required<StreamRetention> = {
  maxAgeMs: 30 * DAY_MS,
  maxBytes: -1,
  duplicateWindowMs: HOUR_MS,
  maxMessageBytes: -1,
  storage: 'file',
  replicas: 1,
};

/** Creates the readings stream when missing (see the module comment for an existing one). Idempotent. */
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
    options,
  );
}

/** Creates the dead-letter stream when missing. Idempotent. */
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
    options,
  );
}

export async function managerOf(js: JetStreamClient | JetStreamManager): Promise<JetStreamManager> {
  return 'jetstreamManager' in js ? js.jetstreamManager() : js;
}

/** Creates stream `name` with `retention` when missing; an existing one is returned unchanged. */
export async function ensureStream(
  js: JetStreamClient | JetStreamManager,
  name: string,
  subjects: readonly string[],
  description: string,
  retention: Required<StreamRetention>,
  management: StreamManagement = {},
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
    if (existing !== null) {
      const differences = limitDifferences(existing.config, { ...wanted, num_replicas: retention.replicas });
      if (differences.length > 0) management.onLimitsDiffer?.(name, differences);
      return existing;
    }
    if (management.manage === false)
      throw new StreamSetupError(
        `stream ${name} does not exist and streams are not managed here (--no-manage-streams): ` +
          'its owner must create it (see deploy/nats/README.md)',
        context,
      );
    try {
      const config: Partial<StreamConfig> & { name: string } = {
        name,
        description,
        retention: RetentionPolicy.Limits,
        storage: retention.storage === 'memory' ? StorageType.Memory : StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: retention.replicas,
        ...wanted,
      };
      return await jsm.streams.add(config);
    } catch (error) {
      // Another process may have created the stream between our look and our add: look again once.
      if (attempt === 0 && isApiError(error, 10058)) continue;
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

/** The limits of `config` that differ from `wanted`, for the warning; replicas included. */
export function limitDifferences(
  config: StreamConfig,
  wanted: {
    subjects: string[];
    max_age: number;
    max_bytes: number;
    duplicate_window: number;
    max_msg_size: number;
    num_replicas: number;
  },
): LimitDifference[] {
  const out: LimitDifference[] = [];
  const subjects = [...config.subjects].sort().join(',');
  const wantedSubjects = [...wanted.subjects].sort().join(',');
  if (subjects !== wantedSubjects)
    out.push({ limit: 'subjects', actual: subjects, recommended: wantedSubjects });
  for (const limit of ['max_age', 'max_bytes', 'duplicate_window', 'max_msg_size', 'num_replicas'] as const) {
    if (config[limit] !== wanted[limit])
      out.push({ limit, actual: config[limit], recommended: wanted[limit] });
  }
  return out;
}

/**
 * Sets an existing stream's `max_age` (and caps its duplicate window to it), leaving every other limit as
 * its owner set it: the retention job's one change to a stream. Returns the stream as it now is.
 */
export async function setStreamMaxAge(
  js: JetStreamClient | JetStreamManager,
  name: string,
  maxAgeMs: number,
): Promise<StreamInfo> {
  const jsm = await managerOf(js);
  const existing = await streamInfo(jsm, name);
  if (existing === null) throw new StreamSetupError(`stream ${name} does not exist`, { stream: name });
  const maxAge = nanos(maxAgeMs);
  const window =
    maxAgeMs > 0 ? Math.min(existing.config.duplicate_window, maxAge) : existing.config.duplicate_window;
  if (existing.config.max_age === maxAge && existing.config.duplicate_window === window) return existing;
  try {
    return await jsm.streams.update(name, { ...existing.config, max_age: maxAge, duplicate_window: window });
  } catch (error) {
    throw new StreamSetupError(
      `cannot set max_age of stream ${name}: ${messageOf(error)}`,
      { stream: name },
      {
        cause: error,
      },
    );
  }
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
  if (options.replicas !== undefined) out.replicas = options.replicas;
  return out as Partial<Required<StreamRetention>>;
}

/**
 * The stream's last sequence, asked again while a cluster node restarts (up to `retryMs`); then a
 * `FetchError`, retryable when the server was out of reach.
 */
export async function streamLastSeq(
  jsm: JetStreamManager,
  stream: string,
  retryMs = 15_000,
): Promise<number> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return (await jsm.streams.info(stream)).state.last_seq;
    } catch (error) {
      if (!isTransientNatsError(error) || Date.now() - started > retryMs)
        throw new FetchError(`cannot read the state of stream ${stream}`, { stream }, { cause: error });
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 2_000)));
    }
  }
}
