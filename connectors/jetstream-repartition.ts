/**
 * The repartition stream between per-meter workers and the cross-meter stage: its subjects, its
 * messages (hourly aggregates keyed by neighborhood, upstream watermarks keyed by worker) and the
 * publisher the per-meter workers write them with.
 *
 * `GS_REPARTITION` (subjects `repartition.>`), limits-based, file storage, 7 days, duplicate window 1 h:
 * - `repartition.hourly.<neighborhood>`: a JSON array of up to `maxRowsPerMessage` hourly aggregates
 *   (`HourlyConsumption`) of that neighborhood, in the order the worker emitted them; a single JSON
 *   object (one row, as earlier releases published) is read too. The message id is a hash of the body,
 *   so a worker replaying an epoch that batches its rows the same way stores nothing twice within the
 *   window; rows batched differently on replay are dropped by the cross-meter stage, whose hold keeps one
 *   copy of each (meter, hour). Keyed by neighborhood so a later split of the neighborhood stage can
 *   filter its own; daily peaks need every neighborhood. One message per row cost one publish and one
 *   acknowledgement per meter-hour (1.2 M a day at 50,000 meters).
 * - `repartition.watermark.<worker>`: `{ worker, partitions, time, final? }`, published after the
 *   hourly rows it passes: no row of those partitions completing at or before `time` follows it.
 *   `final` marks the end of a bounded run (`--until-idle`).
 */
import { createHash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import type { HourlyConsumption } from '../schemas/reading.js';
import { isTransientNatsError, messageOf, PublishError } from './jetstream-errors.js';
import { ensureStream, type StreamManagement, type StreamRetention } from './jetstream-streams.js';

export const REPARTITION_STREAM = 'GS_REPARTITION';
export const REPARTITION_SUBJECT_PREFIX = 'repartition';

const HOUR_MS = 3_600_000;

export const DEFAULT_REPARTITION_RETENTION: Required<StreamRetention> = {
  maxAgeMs: 7 * 24 * HOUR_MS,
  maxBytes: -1,
  duplicateWindowMs: HOUR_MS,
  maxMessageBytes: -1,
  storage: 'file',
  replicas: 1,
};

/** An upstream worker's watermark over the partitions it owns. */
export interface UpstreamWatermark {
  readonly worker: string;
  readonly partitions: readonly number[];
  /** Epoch ms; `null` in JSON stands for +Infinity (a bounded run's end). */
  readonly time: number;
  readonly final?: boolean;
}

/** A repartition message, decoded. */
export type RepartitionMessage =
  | { readonly kind: 'hourly'; readonly rows: readonly HourlyConsumption[] }
  | { readonly kind: 'watermark'; readonly mark: UpstreamWatermark };

/** A subject token for any neighborhood name: `.`, `*`, `>` and spaces cannot appear in one. */
export function subjectToken(name: string): string {
  return name === '' ? '_' : name.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.codePointAt(0)!.toString(16)}`);
}

export function hourlySubject(neighborhood: string): string {
  return `${REPARTITION_SUBJECT_PREFIX}.hourly.${subjectToken(neighborhood)}`;
}

export function watermarkSubject(worker: string): string {
  return `${REPARTITION_SUBJECT_PREFIX}.watermark.${subjectToken(worker)}`;
}

/** Creates the repartition stream when missing; an existing one is kept (see `ensureStream`). */
export function ensureRepartitionStream(
  js: JetStreamClient | JetStreamManager,
  options: StreamRetention & StreamManagement & { readonly name?: string } = {},
): Promise<StreamInfo> {
  const { manage, onLimitsDiffer, name, ...retention } = options;
  return ensureStream(
    js,
    name ?? REPARTITION_STREAM,
    [`${REPARTITION_SUBJECT_PREFIX}.>`],
    'GreenStream repartition: hourly aggregates by neighborhood and upstream watermarks, for the cross-meter stage',
    { ...DEFAULT_REPARTITION_RETENTION, ...definedOnly(retention) },
    {
      ...(manage === undefined ? {} : { manage }),
      ...(onLimitsDiffer === undefined ? {} : { onLimitsDiffer }),
    },
  );
}

/** Decodes a message of the repartition stream; throws `RangeError` on anything else. */
export function decodeRepartitionMessage(subject: string, data: Uint8Array): RepartitionMessage {
  const body = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown> | unknown[];
  if (subject.startsWith(`${REPARTITION_SUBJECT_PREFIX}.hourly.`)) {
    const rows = (Array.isArray(body) ? body : [body]) as HourlyConsumption[];
    return { kind: 'hourly', rows };
  }
  if (subject.startsWith(`${REPARTITION_SUBJECT_PREFIX}.watermark.`) && !Array.isArray(body)) {
    const time = body.time === null ? Number.POSITIVE_INFINITY : Number(body.time);
    return {
      kind: 'watermark',
      mark: {
        worker: String(body.worker),
        partitions: (body.partitions as number[]).map(Number),
        time,
        ...(body.final === true ? { final: true } : {}),
      },
    };
  }
  throw new RangeError(`not a repartition subject: ${subject}`);
}

export interface RepartitionPublisherOptions {
  /** Attempts on a transient failure (a NATS node restarting), with doubling delays from 200 ms. */
  readonly retries?: number;
  /**
   * Hourly rows per message, at most; default 500 (~80 KB of JSON, well under the server's default
   * 1 MB `max_payload`).
   */
  readonly maxRowsPerMessage?: number;
}

export const DEFAULT_MAX_ROWS_PER_MESSAGE = 500;

const encoder = new TextEncoder();

/**
 * Publishes a per-meter worker's hourly aggregates, then its watermark, to the repartition stream. The
 * rows' acknowledgements are awaited before the watermark goes out, so it never overtakes them.
 */
export class RepartitionPublisher {
  readonly #js: JetStreamClient;
  readonly #retries: number;
  readonly #maxRows: number;

  constructor(js: JetStreamClient, options: RepartitionPublisherOptions = {}) {
    this.#js = js;
    this.#retries = options.retries ?? 8;
    this.#maxRows = options.maxRowsPerMessage ?? DEFAULT_MAX_ROWS_PER_MESSAGE;
    if (!Number.isInteger(this.#maxRows) || this.#maxRows < 1)
      throw new RangeError(`maxRowsPerMessage must be a positive integer, got ${String(this.#maxRows)}`);
  }

  async publish(rows: readonly HourlyConsumption[], mark: UpstreamWatermark | undefined): Promise<void> {
    const byNeighborhood = new Map<string, HourlyConsumption[]>();
    for (const row of rows) {
      const group = byNeighborhood.get(row.neighborhood);
      if (group === undefined) byNeighborhood.set(row.neighborhood, [row]);
      else group.push(row);
    }
    const sends: Promise<void>[] = [];
    for (const [neighborhood, group] of byNeighborhood) {
      for (let i = 0; i < group.length; i += this.#maxRows) {
        const body = JSON.stringify(group.slice(i, i + this.#maxRows));
        sends.push(this.#publish(hourlySubject(neighborhood), body, `h.${bodyHash(body)}`));
      }
    }
    await Promise.all(sends);
    if (mark !== undefined) {
      const time = Number.isFinite(mark.time) ? mark.time : null;
      await this.#publish(
        watermarkSubject(mark.worker),
        JSON.stringify({ ...mark, time }),
        `wm.${mark.worker}.${time ?? 'inf'}${mark.final === true ? '.final' : ''}`,
      );
    }
  }

  async #publish(subject: string, body: string, msgID: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#js.publish(subject, encoder.encode(body), { msgID });
        return;
      } catch (error) {
        if (attempt < this.#retries && isTransientNatsError(error)) {
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5_000)));
          continue;
        }
        throw new PublishError(
          `cannot publish to ${subject}: ${messageOf(error)}`,
          { subject, msgID, attempts: attempt + 1 },
          { cause: error },
        );
      }
    }
  }
}

/** A message id naming the body: the same rows in the same order get the same id. */
function bodyHash(body: string): string {
  return createHash('sha256').update(body).digest('base64url');
}

function definedOnly(options: StreamRetention): Partial<Required<StreamRetention>> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<
    Required<StreamRetention>
  >;
}
