import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { RecentTexts } from '../../codecs/recent-texts.js';

describe('RecentTexts', () => {
  it('gives the text of every field, whatever the order and number of distinct texts', () => {
    const field = fc.oneof(
      fc.constantFrom('2024-03-04T00:00:00Z', '2024-03-04T00:15:00Z', '2024-03-04T00:15:00', '', 'x'),
      fc.string({ maxLength: 4 }),
    );
    fc.assert(
      fc.property(fc.array(field, { maxLength: 200 }), (fields) => {
        const text = fields.join(',');
        const recent = new RecentTexts();
        let start = 0;
        const taken: string[] = [];
        for (const f of fields) {
          taken.push(recent.take(text, start, start + f.length));
          start += f.length + 1;
        }
        expect(taken).toEqual(fields);
      }),
      { numRuns: 300 },
    );
  });

  it('decodes the timestamps of files in meter, time and no order, with few or many distinct times', () => {
    for (const times of [4, 16, 17, 300]) {
      const stamps = Array.from({ length: times }, (_, k) =>
        new Date(Date.UTC(2024, 2, 4) + k * 300_000).toISOString(),
      );
      const byMeter = Array.from({ length: 40 }, (_, m) => stamps.map((t) => `MTR-${m},${t},1.5,kW`)).flat();
      const byTime = stamps.flatMap((t) => Array.from({ length: 40 }, (_, m) => `MTR-${m},${t},1.5,kW`));
      const shuffled = byMeter.map((_line, k) => byMeter[(k * 7919) % byMeter.length]!);
      for (const lines of [byMeter, byTime, shuffled]) {
        const decoded = decodeReadings(Buffer.from(`meter_id,timestamp,value,unit\n${lines.join('\n')}\n`), {
          source: 'gw.csv',
          receivedAt: 0,
        });
        if (!decoded.ok) throw new Error('not decoded');
        expect(decoded.readings.map((r) => r.timestamp)).toEqual(lines.map((l) => l.split(',')[1]));
      }
    }
  });
});
