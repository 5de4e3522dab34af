/** A first delivery of stream `READINGS` at `seq`, as a message source hands it out, for tests of the sources. */
import type { SourceMessage } from '../../connectors/jetstream-source.js';

export function sourceMessage(seq: number, data: Uint8Array): SourceMessage {
  return {
    stream: 'READINGS',
    seq,
    subject: 'readings.0',
    data,
    headers: {},
    source: `stream:READINGS:${seq}`,
    storedAt: 0,
    receivedAt: 0,
    deliveryCount: 1,
    redelivered: false,
  };
}
