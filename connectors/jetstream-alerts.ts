/**
 * Alerts on core NATS, for whoever subscribes (an on-call bridge, the CLI's `watch`): subject
 * `greenstream.alerts.<severity>.<kind>`, so a subscriber can take `greenstream.alerts.critical.>`
 * only. Fire-and-forget by design: the durable record of an alert is the `alerts` table.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Alert } from '../schemas/reading.js';
import { messageOf, PublishError } from './jetstream-errors.js';

export const ALERT_SUBJECT_PREFIX = 'greenstream.alerts';

export function alertSubject(alert: Pick<Alert, 'severity' | 'kind'>): string {
  return `${ALERT_SUBJECT_PREFIX}.${alert.severity}.${alert.kind}`;
}

/** Publishes the alert as JSON; with `flush`, waits until the server has it. */
export async function publishAlert(
  nc: NatsConnection,
  alert: Alert,
  options: { readonly flush?: boolean } = {},
): Promise<void> {
  const subject = alertSubject(alert);
  try {
    nc.publish(subject, JSON.stringify(alert));
    if (options.flush ?? false) await nc.flush();
  } catch (error) {
    throw new PublishError(
      `cannot publish alert on ${subject}: ${messageOf(error)}`,
      { subject },
      { cause: error },
    );
  }
}
