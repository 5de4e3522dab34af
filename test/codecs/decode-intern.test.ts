import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseQuotedRecord } from '../../codecs/csv-record.js';
import { decodeReadings, InternCursor, internKey, payloadText } from '../../codecs/decode.js';

/** Keys that are prefixes of one another, differ in a last character, or are blank: what a compare in place could confuse. */
const KEYS = ['MTR-1', 'MTR-12', 'MTR-2', 'MTR-21', 'MTR-1 ', ' MTR-1', '', 'kW', 'kWh', 'W', 'ÄÖ-1', 'M'];
const key = fc.constantFrom(...KEYS);

describe('InternCursor', () => {
  it('takes exactly the interned key of the text between the offsets, whatever the order of keys', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, fc.string({ maxLength: 3 }), fc.string({ maxLength: 3 }), fc.nat(1)), {
          maxLength: 60,
        }),
        (takes) => {
          const cursors = [new InternCursor(), new InternCursor()];
          for (const [k, before, after, which] of takes) {
            const text = `${before}${k}${after}`;
            const got = cursors[which]!.take(text, before.length, before.length + k.length);
            // The very object the table holds, so keyed stages compare ids by pointer.
            expect(got).toBe(internKey(k));
            expect(got).toBe(k);
          }
        },
      ),
    );
  });
});

/** A CSV payload of hostile lines: meter ids in any order, blanks, CRLF, BOM, quotes, extra columns. */
const csvPayload = fc
  .tuple(
    fc.boolean(),
    fc.constantFrom('meter_id,timestamp,value,unit', 'unit,value,meter_id,timestamp,location'),
    fc.array(
      fc.tuple(
        key,
        key,
        fc.constantFrom('2024-03-11T00:00:00Z', '2024-03-11 00:15:00', 'bad', ''),
        fc.constantFrom('1.5', '', ' 2 ', 'NaN'),
        fc.constantFrom('', '\r', '\n', ',x', '"', '"q,1"'),
      ),
      { maxLength: 30 },
    ),
  )
  .map(([bom, header, lines]) => {
    const five = header.endsWith('location');
    const body = lines.map(([meter, unit, ts, value, extra]) => {
      const line = five ? `${unit},${value},${meter},${ts},loc` : `${meter},${ts},${value},${unit}`;
      return `${line}${extra}`;
    });
    return `${bom ? '\uFEFF' : ''}${header}\n${body.join('\n')}\n`;
  });

describe('decodeReadings meter ids and units', () => {
  it('are the fields of each reading’s raw line, interned, across payloads naming them in any order', () => {
    fc.assert(
      fc.property(fc.array(csvPayload, { minLength: 1, maxLength: 4 }), (payloads) => {
        for (const text of payloads) {
          const decoded = decodeReadings(Buffer.from(text), {
            source: 'stream:test:1',
            receivedAt: 0,
            contentType: 'text/csv',
            lineRefs: true,
          });
          if (!decoded.ok) continue;
          const header = parseQuotedRecord(text.replace(/^\uFEFF/, ''), 0).fields;
          const meterColumn = header.indexOf('meter_id');
          const unitColumn = header.indexOf('unit');
          for (const r of decoded.readings) {
            const fields = parseQuotedRecord(r.raw, 0).fields;
            expect(r.meterId).toBe(fields[meterColumn]);
            expect(r.unit).toBe(fields[unitColumn]);
            expect(r.meterId).toBe(internKey(r.meterId));
            expect(r.unit).toBe(internKey(r.unit));
          }
        }
      }),
    );
  });
});

/** The payload's text as `decodeReadings` read it before: a `TextDecoder` refusing malformed UTF-8. */
function oldText(payload: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    return undefined;
  }
}

describe('payloadText', () => {
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.uint8Array({ min: 0, max: 0x7f, maxLength: 64 }),
    fc.string({ unit: 'binary', maxLength: 32 }).map((s) => new Uint8Array(Buffer.from(s))),
    fc.string({ maxLength: 32 }).map((s) => new Uint8Array(Buffer.from(`\uFEFF${s}`))),
    fc.constant(new Uint8Array([0xef, 0xbb, 0xbf])),
    fc.constant(new Uint8Array([0x41, 0xc3])),
  );

  it('is the text a fatal TextDecoder makes of any bytes, undefined where it refuses them (views too)', () => {
    fc.assert(
      fc.property(bytes, fc.nat(4), fc.nat(4), (payload, lead, trail) => {
        expect(payloadText(payload)).toBe(oldText(payload));
        // The same bytes as a view inside a larger buffer, as a fetch thread's batch hands them over.
        const framed = new Uint8Array(lead + payload.length + trail).fill(0xff);
        framed.set(payload, lead);
        const view = framed.subarray(lead, lead + payload.length);
        expect(payloadText(view)).toBe(oldText(payload));
      }),
    );
  });

  it('leaves a NUL outside a view unseen, and finds one inside', () => {
    const framed = new Uint8Array([0, 0x61, 0x2c, 0x62, 0]);
    const inner = framed.subarray(1, 4);
    const csv = (payload: Uint8Array) =>
      decodeReadings(payload, { source: 's', receivedAt: 0, contentType: 'text/csv' });
    expect(csv(inner)).toMatchObject({ ok: false, failure: { code: 'bad_header' } });
    expect(csv(framed.subarray(1))).toMatchObject({ ok: false, failure: { code: 'binary' } });
  });
});
