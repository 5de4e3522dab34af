/** Reading a delivery's numbers off its ack subject gives what the client's `JsMsg.info` gives. */
import type { JsMsg } from '@nats-io/jetstream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deliveryOf } from '../../connectors/jetstream-source.js';

interface Info {
  streamSequence: number;
  deliverySequence: number;
  deliveryCount: number;
  timestampNanos: number;
  pending: number;
}

/** A message with the given ack subject whose `info` is the client's own reading of it. */
function message(reply: string, info: Info): JsMsg {
  return { reply, info } as unknown as JsMsg;
}

function expectedInfo(tokens: string[]): Info {
  // The client's layout after it pads the 9-token form: delivered, seq, consumer seq, ns, pending at 6..10.
  const t = tokens.length === 9 ? [...tokens.slice(0, 2), '_', '', ...tokens.slice(2)] : tokens;
  return {
    deliveryCount: Number.parseInt(t[6]!, 10),
    streamSequence: Number.parseInt(t[7]!, 10),
    deliverySequence: Number.parseInt(t[8]!, 10),
    timestampNanos: Number.parseInt(t[9]!, 10),
    pending: Number.parseInt(t[10]!, 10),
  };
}

describe('deliveryOf', () => {
  it('reads the 9-, 11- and 12-token ack subjects as the client does', () => {
    const counter = fc.nat({ max: Number.MAX_SAFE_INTEGER });
    const nanos = fc.bigInt({ min: 0n, max: 9_999_999_999_999_999_999n }).map(String);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        counter,
        counter,
        nanos,
        counter,
        fc.constantFrom('old', 'domain', 'token'),
        (delivered, seq, consumerSeq, ns, pending, form) => {
          const numbers = [delivered, seq, consumerSeq, ns, pending].map(String);
          const tokens =
            form === 'old'
              ? ['$JS', 'ACK', 'READINGS', 'worker', ...numbers]
              : [
                  '$JS',
                  'ACK',
                  '_',
                  'ACCHASH',
                  'READINGS',
                  'worker',
                  ...numbers,
                  ...(form === 'token' ? ['x7Yq'] : []),
                ];
          const info = expectedInfo(tokens);
          // `info` answers only for a subject the fast path refuses; make it wrong to catch its use.
          const wrong = {
            streamSequence: -7,
            deliverySequence: -7,
            deliveryCount: -7,
            timestampNanos: -7,
            pending: -7,
          };
          const d = deliveryOf(message(tokens.join('.'), wrong));
          expect({ ...d }).toEqual({
            seq: info.streamSequence,
            consumerSeq: info.deliverySequence,
            deliveryCount: info.deliveryCount,
            timestampNanos: info.timestampNanos,
            pending: info.pending,
          });
        },
      ),
    );
  });

  it('falls back to the client for a subject of another shape', () => {
    const info = {
      streamSequence: 5,
      deliverySequence: 9,
      deliveryCount: 2,
      timestampNanos: 1.7e18,
      pending: 3,
    };
    for (const reply of [
      '',
      '$JS.ACK.R.w.1.2',
      'x.y.R.w.1.2.3.4.5',
      '$JS.ACK.R.w.1.2x.3.4.5',
      '$JS.ACK.R.w.1..3.4.5',
    ]) {
      expect({ ...deliveryOf(message(reply, info)) }).toEqual({
        seq: 5,
        consumerSeq: 9,
        deliveryCount: 2,
        timestampNanos: 1.7e18,
        pending: 3,
      });
    }
  });
});
