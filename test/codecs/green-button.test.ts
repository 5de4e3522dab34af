import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeReadings } from '../../codecs/decode.js';
import { decodeGreenButton, looksLikeGreenButton } from '../../codecs/green-button.js';
import type { CodecOutput } from '../../codecs/types.js';

const DATA = fileURLToPath(new URL('../../../shared/data/greenbutton/', import.meta.url));
const COASTAL = readFileSync(
  join(DATA, 'Coastal_Multi_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_5.xml'),
  'utf8',
);
const decode = (text: string) => decodeGreenButton(text, { source: 'gb.xml', receivedAt: 0 });
const ok = (text: string): CodecOutput => {
  const r = decode(text);
  if (!r.ok) throw new Error(`refused: ${r.reason}`);
  return r;
};

/** A minimal ESPI feed: one usage point, one meter reading, one block of the given readings. */
function feed(options: { uom?: string; multiplier?: string; kind?: string; readings: string }): string {
  const base = 'https://x.example/espi/1_1/resource';
  return `<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">
 <entry><link rel="self" href="${base}/RetailCustomer/9/UsagePoint/2"/>
  <link rel="related" href="${base}/RetailCustomer/9/UsagePoint/2/MeterReading"/>
  <link rel="related" href="${base}/LocalTimeParameters/1"/>
  <content><espi:UsagePoint><espi:ServiceCategory><espi:kind>${options.kind ?? '0'}</espi:kind></espi:ServiceCategory></espi:UsagePoint></content></entry>
 <entry><link rel="self" href="${base}/LocalTimeParameters/1"/>
  <content><LocalTimeParameters xmlns="http://naesb.org/espi"><dstEndRule>B40E2000</dstEndRule><dstOffset>3600</dstOffset><dstStartRule>360E2000</dstStartRule><tzOffset>-18000</tzOffset></LocalTimeParameters></content></entry>
 <entry><link rel="self" href="${base}/RetailCustomer/9/UsagePoint/2/MeterReading/1"/>
  <link rel="related" href="${base}/ReadingType/3"/>
  <content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>
 <entry><link rel="self" href="${base}/ReadingType/3"/>
  <content><ReadingType xmlns="http://naesb.org/espi"><intervalLength>900</intervalLength><powerOfTenMultiplier>${options.multiplier ?? '0'}</powerOfTenMultiplier><uom>${options.uom ?? '72'}</uom></ReadingType></content></entry>
 <entry><link rel="self" href="${base}/RetailCustomer/9/UsagePoint/2/MeterReading/1/IntervalBlock/5"/>
  <content><IntervalBlock xmlns="http://naesb.org/espi">${options.readings}</IntervalBlock></content></entry>
</feed>`;
}
const reading = (start: number, value: string, quality = '') =>
  `<IntervalReading>${quality === '' ? '' : `<ReadingQuality><quality>${quality}</quality></ReadingQuality>`}<timePeriod><duration>900</duration><start>${start}</start></timePeriod><value>${value}</value></IntervalReading>`;

describe('decodeGreenButton', () => {
  it('reads each IntervalReading of the sample feed as a Wh reading at its UTC start, with its interval', () => {
    const r = ok(COASTAL);
    expect(r.failures).toEqual([]);
    expect(r.readings).toHaveLength(8760);
    expect(r.readings[0]).toMatchObject({
      meterId: 'RetailCustomer/5/UsagePoint/1',
      timestamp: '2011-01-01T08:00:00Z',
      value: '450',
      unit: 'Wh',
      intervalMinutes: 60,
    });
    expect(r.readings[0]!.source).toBe(
      'gb.xml#RetailCustomer/5/UsagePoint/1/MeterReading/01/IntervalBlock/173/IntervalReading[1]',
    );
    expect(r.meters).toEqual([
      {
        meterId: 'RetailCustomer/5/UsagePoint/1',
        format: 'green_button',
        group: 'RetailCustomer/5/UsagePoint/1',
        intervalMinutes: 60,
        unit: 'Wh',
        localTime: {
          tzOffsetSeconds: -28800,
          dstOffsetSeconds: 3600,
          dstStartRule: '360E2000',
          dstEndRule: 'B40E2000',
        },
      },
    ]);
  });

  it('scales values by powerOfTenMultiplier and maps ReadingQuality codes to flags', () => {
    const r = ok(
      feed({
        multiplier: '-3',
        readings: [
          reading(1_700_000_000, '450'),
          reading(1_700_000_900, '7', '8'),
          reading(1_700_001_800, '1200', '7'),
          reading(1_700_002_700, '5', '0'),
        ].join(''),
      }),
    );
    expect(r.readings.map((x) => [x.value, x.sourceFlags])).toEqual([
      ['0.45', undefined],
      ['0.007', ['source_estimated']],
      ['1.2', ['source_substituted']],
      ['0.005', undefined],
    ]);
    expect(r.readings[0]).toMatchObject({
      meterId: 'RetailCustomer/9/UsagePoint/2',
      intervalMinutes: 15,
      timestamp: '2023-11-14T22:13:20Z',
    });
    expect(r.meters[0]!.localTime?.tzOffsetSeconds).toBe(-18000);
  });

  it('quarantines a reading it cannot read, naming the block and the reading, and keeps the others', () => {
    const r = ok(feed({ readings: reading(1_700_000_000, '450') + reading(1_700_000_900, 'abc') }));
    expect(r.readings).toHaveLength(1);
    expect(r.failures).toEqual([
      expect.objectContaining({
        code: 'green_button_reading',
        source: 'gb.xml#RetailCustomer/9/UsagePoint/2/MeterReading/1/IntervalBlock/5/IntervalReading[2]',
      }),
    ]);
    expect(r.failures[0]!.reason).toContain('value "abc" is not an integer');
  });

  it('quarantines blocks of reactive units and of usage points that are not electricity', () => {
    const reactive = ok(feed({ uom: '73', readings: reading(1_700_000_000, '450') }));
    expect(reactive.readings).toEqual([]);
    expect(reactive.failures[0]!.reason).toContain(
      'uom 73 (VArh) of RetailCustomer/9/UsagePoint/2 is reactive',
    );
    const gas = ok(feed({ kind: '1', readings: reading(1_700_000_000, '450') }));
    expect(gas.failures[0]!.reason).toContain('is not electricity (ServiceCategory kind 1)');
  });

  it('refuses a truncated feed with the parser reason and line', () => {
    const r = decode(COASTAL.slice(0, Math.floor(COASTAL.length * 0.6)));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/not well-formed XML \(truncated\?\): .* at line \d+/);
  });

  it('is detected from its content by decodeReadings and dead-lettered whole when truncated', () => {
    expect(looksLikeGreenButton(COASTAL)).toBe(true);
    expect(looksLikeGreenButton('<html></html>')).toBe(false);
    const whole = decodeReadings(Buffer.from(COASTAL), { source: 'gb.xml', receivedAt: 0 });
    expect(whole.ok && whole.contentType).toBe('application/atom+xml');
    const cut = decodeReadings(Buffer.from(COASTAL.slice(0, 200_000)), {
      source: 'gb.xml',
      receivedAt: 0,
      contentType: 'text/xml',
    });
    expect(cut.ok).toBe(false);
    if (!cut.ok) expect(cut.failure).toMatchObject({ code: 'green_button_feed', source: 'gb.xml' });
  });
});
