/**
 * Errors raised by the JetStream connector. Each carries `cause` (the client's error) and a context
 * of plain values that is safe to log: never a password, token or credential.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/transport-node';
import { GreenStreamError } from '../core/errors.js';

export type ErrorContext = Readonly<Record<string, string | number | boolean | null>>;

/** Retryable when the client's error says the server was briefly out of reach (see `isTransientNatsError`). */
export class JetStreamConnectorError extends GreenStreamError<ErrorContext> {
  override readonly name: string = 'JetStreamConnectorError';
  constructor(message: string, context: ErrorContext = {}, options?: { readonly cause?: unknown }) {
    super(message, {
      context,
      cause: options?.cause,
      retryable: options?.cause !== undefined && isTransientNatsError(options.cause),
    });
  }
}

/** The connection could not be established (or its configuration is invalid). */
export class NatsConnectError extends JetStreamConnectorError {
  override readonly name = 'NatsConnectError';
}

/** A stream, consumer or KV bucket could not be created or checked. */
export class StreamSetupError extends JetStreamConnectorError {
  override readonly name = 'StreamSetupError';
}

/** A message could not be stored in a stream (after retries when the failure was transient). */
export class PublishError extends JetStreamConnectorError {
  override readonly name: string = 'PublishError';
}

/** A payload cannot fit in one message and cannot be split (not line-oriented, or one huge record). */
export class PayloadTooLargeError extends PublishError {
  override readonly name = 'PayloadTooLargeError';
}

/** Pulling messages failed for a reason other than a transient disconnection. */
export class FetchError extends JetStreamConnectorError {
  override readonly name = 'FetchError';
}

/** The dead-letter publish failed; the source message stays unacknowledged and is redelivered. */
export class DeadLetterError extends JetStreamConnectorError {
  override readonly name = 'DeadLetterError';
}

/** Reading or writing a checkpoint in the KV bucket failed. */
export class CheckpointStoreError extends JetStreamConnectorError {
  override readonly name = 'CheckpointStoreError';
}

/**
 * Failures that say nothing about the message itself, only that the server was briefly out of
 * reach: a restart, a leader change, a slow disk. Retrying them is safe where publishes carry a
 * message id (the stream drops the second copy).
 */
export function isTransientNatsError(error: unknown): boolean {
  if (error instanceof natsErrors.TimeoutError) return true;
  if (error instanceof natsErrors.NoRespondersError) return true;
  if (error instanceof natsErrors.RequestError) return true;
  if (error instanceof natsErrors.ConnectionError) return true;
  // 10008 "JetStream system temporarily unavailable": no meta leader yet (a cluster node restarting).
  if (error instanceof JetStreamApiError && error.code === 10008) return true;
  if (error instanceof Error && error.cause !== undefined && error.cause !== error) {
    return isTransientNatsError(error.cause);
  }
  return false;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
