import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JetStreamClient } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { type DecodedPayload, decodeReadings } from '../../codecs/decode.js';
import { ReadingsPublisher } from '../../connectors/jetstream-publisher.js';

/**
 * `publish` cuts NEM12 files and Green Button feeds into messages that are files of their own format:
 * decoded one by one, the messages give exactly the readings and record failures of the whole file.
 */
const DATA = fileURLToPath(new URL('../../../shared/data/', import.meta.url));
// Planning never talks to the server.
const publisher = (maxMessageBytes: number) =>
  new ReadingsPublisher({} as JetStreamClient, { maxMessageBytes, maxPayload: 8 * 1024 * 1024 });

function decodeAll(path: string, maxMessageBytes: number) {
  const bytes = readFileSync(path);
  const whole = decodeReadings(bytes, { source: 'f', receivedAt: 0, maxBytes: 1 << 30 }) as DecodedPayload;
  const planned = publisher(maxMessageBytes).plan({ path, bytes });
  const parts = planned.map((m) => {
    expect(m.body.byteLength).toBeLessThanOrEqual(maxMessageBytes);
    const d = decodeReadings(m.body, { source: 'f', receivedAt: 0, contentType: m.contentType });
    expect(d.ok).toBe(true);
    return d as DecodedPayload;
  });
  const key = (r: { meterId: string; timestamp: string; value: string; sourceFlags?: readonly string[] }) =>
    `${r.meterId}|${r.timestamp}|${r.value}|${(r.sourceFlags ?? []).join()}`;
  return {
    planned,
    whole: whole.readings.map(key).sort(),
    parts: parts.flatMap((p) => p.readings.map(key)).sort(),
    wholeFailures: whole.failures.map((f) => f.reason).sort(),
    partFailures: parts.flatMap((p) => p.failures.map((f) => f.reason)).sort(),
  };
}

describe('publishing NEM12 and Green Button files', () => {
  it('cuts a Green Button feed between interval blocks, each message a feed that decodes on its own', () => {
    const r = decodeAll(
      join(DATA, 'greenbutton', 'Desert_Single_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_7.xml'),
      512 * 1024,
    );
    expect(r.planned.length).toBeGreaterThan(3);
    expect(new Set(r.planned.map((m) => m.contentType))).toEqual(new Set(['application/atom+xml']));
    expect(new Set(r.planned.map((m) => m.subject)).size).toBe(1);
    expect(r.whole).toHaveLength(8760);
    expect(r.parts).toEqual(r.whole);
  });

  it('cuts a NEM12 file between data streams and days, repeating the header and the 200 record', () => {
    const r = decodeAll(join(DATA, 'nem12', 'NEM12#ManyNMIs-5min#EXAMPLE.csv'), 16 * 1024);
    expect(r.planned.length).toBeGreaterThan(5);
    expect(new Set(r.planned.map((m) => m.contentType))).toEqual(new Set(['text/x-nem12']));
    expect(r.parts).toEqual(r.whole);
    const withQuality = decodeAll(join(DATA, 'nem12', 'NEM12#SCENARIO10#UNITEDDP#NEMMCO.csv'), 4096);
    expect(withQuality.planned.length).toBe(2);
    expect(withQuality.parts).toEqual(withQuality.whole);
    const reactive = decodeAll(join(DATA, 'nem12', 'NEM12#000000000000003#CNRGYMDP#NEMMCO.csv'), 4096);
    expect(reactive.planned.length).toBe(2);
    expect(reactive.parts).toEqual(reactive.whole);
    expect(reactive.partFailures).toEqual(reactive.wholeFailures);
  });

  it('sends a small NEM12 file whole, typed by its content', () => {
    const path = join(DATA, 'nem12', 'NEM12#000000000000001#CNRGYMDP#NEMMCO.csv');
    const planned = publisher(1024 * 1024).plan({ path, bytes: readFileSync(path) });
    expect(planned).toHaveLength(1);
    expect(planned[0]!.contentType).toBe('text/x-nem12');
  });
});
