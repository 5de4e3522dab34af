/**
 * One reading per message through a real nats-server: a pull mixing the common one-reading JSON message
 * (the decoder's fast path) with messages only the full decoder reads, and hostile ones. Every message is
 * processed, quarantined or dead-lettered exactly as the full decoder alone would have it, with its
 * reason, and the batch's deliveries are acknowledged at the commit.
 */
import { headers as natsHeaders } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { type DecodeResult, decodeReadings } from '../../codecs/decode.js';
import {
  ensureDeadLetterStream,
  ensureReadingsStream,
  GsHeaders,
  JetStreamSource,
} from '../../connectors/jetstream.js';
import type { ReadingSource } from '../../pipelines/runner.js';
import { messageReadingSource, partitionedReadingSource } from '../../pipelines/sources.js';
import type { QuarantineRecord, RawReading } from '../../schemas/reading.js';
import { natsClients } from '../harness/nats-clients.js';
import { uniqueName } from '../harness/servers.js';

const nats = natsClients();

const reading = (i: number) =>
  JSON.stringify({
    meter_id: `MTR-${i % 7}`,
    timestamp: new Date(Date.UTC(2024, 2, 11) + i * 900_000).toISOString(),
    value: (i * 1.25).toFixed(2),
    unit: 'kW',
  });

/** Payloads in publish order, each with the Content-Type it is sent with (none when undefined). */
const PAYLOADS: { readonly data: Uint8Array; readonly contentType?: string }[] = [
  { data: Buffer.from(reading(1)) },
  { data: Buffer.from('{"meter_id":"MTR-1","timestamp":') }, // bad JSON
  { data: Buffer.from(reading(2)) },
  { data: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }, // not UTF-8
  {
    data: Buffer.from(
      `{ "meter_id": "MTR-3", "timestamp": "2024-03-11T01:00:00Z", "value": 3, "unit": "kW" }`,
    ),
  },
  {
    data: Buffer.from(
      '{"meter_id":"MTR-4","timestamp":"2024-03-11T01:15:00Z","value":"1","unit":"kW","voltage":"231.5"}',
    ),
  },
  { data: Buffer.from('{"meter_id":{"x":1},"timestamp":"t","value":"1","unit":"kW"}') }, // wrong shape: quarantined
  { data: Buffer.from('42'), contentType: 'application/json' }, // JSON root not an object
  { data: Buffer.from(reading(5)), contentType: 'text/csv' }, // declared CSV: no usable header
  { data: Buffer.from(reading(6)), contentType: 'application/json' },
  { data: Buffer.from('{"meter_id":"MTR-\\u00e9","timestamp":"t","value":"1","unit":"kW"}') },
  { data: Buffer.from([0x7b, 0x00, 0x7d]) }, // binary
  {
    data: Buffer.from(
      `{"meter_id":"MTR-9","timestamp":"2024-03-11T02:00:00Z","value":"${'9'.repeat(2000)}","unit":"kW"}`,
    ),
  },
  { data: Buffer.from('[]') },
  { data: Buffer.from(reading(7)) },
];

async function published() {
  const stream = uniqueName('ONE');
  const prefix = stream.toLowerCase();
  const dlq = `${stream}_DLQ`;
  await ensureReadingsStream(nats.jsm, { name: stream, subjects: [`${prefix}.>`], storage: 'memory' });
  await ensureDeadLetterStream(nats.jsm, { name: dlq, subjects: [`dlq.${prefix}.>`], storage: 'memory' });
  const stored: { seq: number }[] = [];
  for (const [i, p] of PAYLOADS.entries()) {
    const h = natsHeaders();
    if (p.contentType !== undefined) h.set('Content-Type', p.contentType);
    const subject = `${prefix}.${i % 2}`;
    const ack = await nats.js.publish(subject, p.data, p.contentType === undefined ? {} : { headers: h });
    stored.push({ seq: ack.seq });
  }
  return { stream, prefix, dlq, stored };
}

/** What the full decoder alone makes of every payload: the oracle. */
function expected(stream: string, stored: readonly { seq: number }[], now: number) {
  const records: RawReading[] = [];
  const quarantined: QuarantineRecord[] = [];
  const deadLetters: { seq: number; reason: string }[] = [];
  PAYLOADS.forEach((p, i) => {
    const source = `stream:${stream}:${stored[i]!.seq}`;
    const decoded: DecodeResult = decodeReadings(p.data, {
      source,
      // The stream's stored time in the run; compared as 0 below.
      receivedAt: 0,
      contentType: p.contentType ?? null,
      lineRefs: true,
    });
    if (!decoded.ok) {
      deadLetters.push({ seq: stored[i]!.seq, reason: decoded.failure.reason });
      return;
    }
    records.push(...decoded.readings);
    for (const f of decoded.failures)
      quarantined.push({
        meterId: f.meterId,
        ts: null,
        raw: f.raw,
        reasons: [f.reason],
        source: `${f.source}#${f.line}`,
        quarantinedAt: now,
      });
  });
  return { records, quarantined, deadLetters };
}

async function readAll(source: ReadingSource) {
  const records: RawReading[] = [];
  const quarantined: QuarantineRecord[] = [];
  let deadLettered = 0;
  await source.open(undefined);
  for (let i = 0; i < 50; i++) {
    const batch = await source.next();
    if (batch === 'idle' || batch === 'end') break;
    records.push(...batch.records);
    quarantined.push(...batch.quarantined);
    deadLettered += batch.deadLettered;
    await source.commit();
  }
  return { records, quarantined, deadLettered };
}

function opener(stream: string, dlq: string, durable: string, subject?: string) {
  return async (resumeAfterSeq: number) => {
    await nats.jsm.consumers.delete(stream, durable).catch(() => false);
    return JetStreamSource.open(nats.js, {
      stream,
      durable,
      start: resumeAfterSeq === 0 ? { kind: 'all' } : { kind: 'sequence', seq: resumeAfterSeq + 1 },
      deadLetter: { stream: dlq },
      ...(subject === undefined ? {} : { filterSubjects: [subject] }),
    });
  };
}

describe('one reading per message, fast path and full decoder in one pull', () => {
  it.each(['all partitions', 'partitioned'])(
    '%s: records, quarantine and dead letters (with reasons) as the full decoder alone gives them; all acknowledged',
    async (kind) => {
      const { stream, prefix, dlq, stored } = await published();
      const now = 1_800_000_000_000;
      const durable = `one_${kind === 'partitioned' ? 'p' : 'a'}`;
      const source =
        kind === 'partitioned'
          ? partitionedReadingSource(
              (p, after) => opener(stream, dlq, `${durable}${p}`, `${prefix}.${p}`)(after),
              {
                partitions: [0, 1],
                streamLastSeq: async () => (await nats.jsm.streams.info(stream)).state.last_seq,
                now: () => now,
              },
            )
          : messageReadingSource(opener(stream, dlq, durable), { batchSize: 64, now: () => now });
      const got = await readAll(source);
      const want = expected(stream, stored, now);
      // Fast-path records included; the receive time is the stream's stored time, not known to the oracle.
      expect(got.records.map((r) => ({ ...r, receivedAt: 0 }))).toEqual(
        want.records.map((r) => ({ ...r, receivedAt: 0 })),
      );
      expect(got.records.length).toBeGreaterThanOrEqual(6);
      expect(got.quarantined).toEqual(want.quarantined);
      expect(want.quarantined.length).toBeGreaterThan(0);
      expect(got.deadLettered).toBe(want.deadLetters.length);
      expect(want.deadLetters.map((d) => d.reason)).toEqual([
        expect.stringMatching(/^invalid JSON/),
        'payload is not valid UTF-8',
        expect.stringMatching(/^JSON root must be an object/),
        expect.stringMatching(/^CSV header/),
        'payload contains NUL bytes (binary data?)',
      ]);
      // Each dead letter is in the dead-letter stream with its reason.
      const letters: { seq: string; reason: string }[] = [];
      for (let seq = 1; seq <= want.deadLetters.length; seq++) {
        const m = await nats.jsm.streams.getMessage(dlq, { seq });
        letters.push({ seq: m!.header.get(GsHeaders.SourceSeq), reason: m!.header.get(GsHeaders.Reason) });
      }
      expect(letters.sort((a, b) => Number(a.seq) - Number(b.seq))).toEqual(
        want.deadLetters.map((d) => ({ seq: String(d.seq), reason: d.reason })),
      );
      // Everything handed out or dead-lettered is acknowledged: nothing left for the consumer(s).
      expect(await source.pending!()).toBe(0);
      await source.close();
    },
  );
});
