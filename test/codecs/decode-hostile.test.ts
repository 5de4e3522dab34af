import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { decodeReadings, detachedCopy } from '../../codecs/decode.js';
import { safeSlice, wellFormed } from '../../codecs/unicode.js';

const decode = (text: string, options: { maxRecords?: number; maxFailures?: number } = {}) =>
  decodeReadings(Buffer.from(text), { source: 'f', receivedAt: 0, ...options });

describe('decodeReadings on hostile payloads', () => {
  it('caps the records of one payload: the rest becomes one too_many_records failure with an excerpt', () => {
    const csv = `meter_id,timestamp,value,unit\n${Array.from({ length: 50 }, (_, i) => `m,t,${i},kW`).join('\n')}\n`;
    const r = decode(csv, { maxRecords: 10 });
    if (!r.ok) throw new Error(r.failure.reason);
    expect(r.readings).toHaveLength(10);
    expect(r.failures).toEqual([
      expect.objectContaining({
        code: 'too_many_records',
        line: 12,
        raw: expect.stringMatching(/^m,t,10,kW\n/),
      }),
    ]);
    expect(r.records).toBe(11);
  });

  it('caps failures: `[{},{},…]` of 8 MiB is 10,000 failures and one too_many_records, not 2.8 M rows', () => {
    const json = `[${'{},'.repeat(2_700_000)}{}]`;
    const r = decode(json);
    if (!r.ok) throw new Error(r.failure.reason);
    expect(r.readings).toEqual([]);
    expect(r.failures).toHaveLength(10_001);
    expect(r.failures.at(-1)).toMatchObject({ code: 'too_many_records', line: 10_001 });
    expect(r.failures.at(-1)!.raw.length).toBeLessThanOrEqual(1024);
  });

  it('replaces lone surrogates from JSON escapes, and never cuts a surrogate pair', () => {
    const r = decode('[{"meter_id":"m\\ud800","timestamp":"t","value":1,"unit":"\\udc00"}]');
    if (!r.ok) throw new Error(r.failure.reason);
    expect(r.readings[0]).toMatchObject({ meterId: 'm\ufffd', unit: '\ufffd' });
    expect(/\p{Cs}/u.test(r.readings[0]!.raw)).toBe(false);
    expect(safeSlice('ab😀', 0, 3)).toBe('ab');
    expect(wellFormed('ok😀')).toBe('ok😀');
  });

  it('keeps interned meter ids detached from the payload text they were sliced from', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().heapUsed;
    const kept: string[] = [];
    for (let f = 0; f < 50; f++) {
      const id = `DETACHED-${String(f).padStart(11, '0')}`;
      const filler = Array.from({ length: 20_000 }, (_, i) => `${id},2024-03-11T00:00:00Z,${i},kW`).join(
        '\n',
      );
      const r = decode(`meter_id,timestamp,value,unit\n${filler}\n`);
      if (!r.ok) throw new Error(r.failure.reason);
      kept.push(r.readings[0]!.meterId);
    }
    gc();
    // 50 payloads of ~0.9 MB each: pinned, they would hold ~45 MB (and Buffer round trips cost nothing here).
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(20 * 1024 * 1024);
    expect(detachedCopy(kept[0]!)).toBe(kept[0]);
  });
});
