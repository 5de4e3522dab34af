import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DecodedPayload,
  type DecodeResult,
  decodeReadings,
  detectContentType,
  encodeReadingsCsv,
  splitCsvRecords,
} from '../../codecs/decode.js';

const RECEIVED_AT = Date.UTC(2024, 2, 15, 15);
const bytes = (text: string) => Buffer.from(text, 'utf8');

function decoded(result: DecodeResult): DecodedPayload {
  if (!result.ok)
    throw new Error(`expected a decoded payload, got ${result.failure.code}: ${result.failure.reason}`);
  return result;
}

function decodeCsv(text: string, source = 'raw/2024/03/15/14/MTR-1.csv') {
  return decodeReadings(bytes(text), { source, receivedAt: RECEIVED_AT });
}

describe('decodeReadings: CSV', () => {
  it('reads the four columns in any order, ignores extra columns, keeps the line as raw', () => {
    const result = decoded(
      decodeCsv(
        'timestamp,location,unit,meter_id,value\n' +
          '2024-03-15T14:00:00Z,Residential_Zone_7,W,SM-48291,3250\n' +
          '2024-03-15T14:15:00Z,Residential_Zone_7,kW,SM-48291,\n',
      ),
    );
    expect(result.contentType).toBe('text/csv');
    expect(result.failures).toEqual([]);
    expect(result.records).toBe(2);
    expect(result.readings).toEqual([
      {
        meterId: 'SM-48291',
        timestamp: '2024-03-15T14:00:00Z',
        value: '3250',
        unit: 'W',
        raw: '2024-03-15T14:00:00Z,Residential_Zone_7,W,SM-48291,3250',
        source: 'raw/2024/03/15/14/MTR-1.csv',
        receivedAt: RECEIVED_AT,
      },
      {
        meterId: 'SM-48291',
        timestamp: '2024-03-15T14:15:00Z',
        value: '',
        unit: 'kW',
        raw: '2024-03-15T14:15:00Z,Residential_Zone_7,kW,SM-48291,',
        source: 'raw/2024/03/15/14/MTR-1.csv',
        receivedAt: RECEIVED_AT,
      },
    ]);
  });

  it('accepts CRLF line ends, a BOM, a header in any case, blank lines and no final newline', () => {
    const text = '\uFEFFMeter_ID, Timestamp ,VALUE,unit\r\nM1,t1,1,kW\r\n\r\nM2,t2,2,kW';
    const result = decoded(decodeCsv(text));
    expect(result.readings.map((r) => [r.meterId, r.timestamp, r.value, r.unit, r.raw])).toEqual([
      ['M1', 't1', '1', 'kW', 'M1,t1,1,kW'],
      ['M2', 't2', '2', 'kW', 'M2,t2,2,kW'],
    ]);
  });

  it('appends the line number to each source when asked', () => {
    const result = decoded(
      decodeReadings(bytes('meter_id,timestamp,value,unit\nM1,t,1,kW\n\nM2,t,2,kW\n'), {
        source: 'f.csv',
        receivedAt: 0,
        lineRefs: true,
      }),
    );
    expect(result.readings.map((r) => r.source)).toEqual(['f.csv#2', 'f.csv#4']);
  });

  it('turns lines with the wrong column count into record failures while the good lines decode', () => {
    const result = decoded(
      decodeCsv('meter_id,timestamp,value,unit\nM1,t1,1,kW\nM2,t2,2\nM3,t3,3,kW,extra\nM4,t4,4,kW\n'),
    );
    expect(result.readings.map((r) => r.meterId)).toEqual(['M1', 'M4']);
    expect(result.records).toBe(4);
    expect(result.failures).toEqual([
      {
        level: 'record',
        code: 'column_count',
        reason: 'expected 4 columns, found 3',
        raw: 'M2,t2,2',
        meterId: 'M2',
        line: 3,
        source: 'raw/2024/03/15/14/MTR-1.csv#3',
      },
      {
        level: 'record',
        code: 'column_count',
        reason: 'expected 4 columns, found 5',
        raw: 'M3,t3,3,kW,extra',
        meterId: 'M3',
        line: 4,
        source: 'raw/2024/03/15/14/MTR-1.csv#4',
      },
    ]);
  });

  it('reads RFC-4180 quoting: commas, escaped quotes and line breaks inside quoted fields', () => {
    const text =
      'meter_id,timestamp,value,unit,location\n' +
      '"M,1",2024-01-01T00:00:00Z,"1.5",kW,"Zone ""A"""\n' +
      'M2,2024-01-01T00:15:00Z,2,kW,"two\nlines"\n' +
      'M3,2024-01-01T00:30:00Z,3,kW,plain\n' +
      'M4,2024-01-01T00:45:00Z,4,kW\n';
    const result = decoded(decodeCsv(text));
    expect(result.readings.map((r) => r.meterId)).toEqual(['M,1', 'M2', 'M3']);
    expect(result.readings[0].value).toBe('1.5');
    expect(result.readings[0].raw).toBe('"M,1",2024-01-01T00:00:00Z,"1.5",kW,"Zone ""A"""');
    expect(result.readings[1].raw).toBe('M2,2024-01-01T00:15:00Z,2,kW,"two\nlines"');
    // The record with the embedded line break spans lines 3-4, so the broken one is on line 6.
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]).toMatchObject({
      code: 'column_count',
      line: 6,
      raw: 'M4,2024-01-01T00:45:00Z,4,kW',
    });
  });

  it('reports quoting errors per line with a clear reason and keeps decoding the lines after them', () => {
    const text =
      'meter_id,timestamp,value,unit\n' +
      'M1,t,"1,kW\n' + // unterminated quote (would otherwise swallow the rest)
      'M2,t,3"5,kW\n' + // quote inside an unquoted field
      'M3,t,"3"5,kW\n' + // text after a closing quote
      'M4,t,4,kW\n';
    const result = decoded(decodeCsv(text));
    expect(result.readings.map((r) => r.meterId)).toEqual(['M4']);
    expect(result.failures.map((f) => [f.code, f.line, f.raw])).toEqual([
      ['unterminated_quote', 2, 'M1,t,"1,kW'],
      ['stray_quote', 3, 'M2,t,3"5,kW'],
      ['text_after_quote', 4, 'M3,t,"3"5,kW'],
    ]);
    for (const failure of result.failures) expect(failure.reason).toMatch(/quote/);
  });

  it('keeps huge numbers, NaN and other garbage values as the strings that arrived', () => {
    const huge = '9'.repeat(400);
    const result = decoded(
      decodeCsv(
        `meter_id,timestamp,value,unit\nM1,t,${huge},kW\nM2,t,NaN,kW\nM3,t,1e999,W\nM4,t,-Infinity,kW\n`,
      ),
    );
    expect(result.readings.map((r) => r.value)).toEqual([huge, 'NaN', '1e999', '-Infinity']);
  });

  it('dead-letters a payload whose header lacks a required column, or names one twice', () => {
    const missing = decodeCsv('meter_id,timestamp,energy_value\nM1,t,1\n');
    expect(missing).toMatchObject({ ok: false, failure: { level: 'message', code: 'bad_header' } });
    if (!missing.ok) expect(missing.failure.reason).toContain('lacks value, unit');
    const twice = decodeCsv('meter_id,timestamp,value,unit,value\nM1,t,1,kW,2\n');
    expect(twice).toMatchObject({ ok: false, failure: { code: 'bad_header' } });
    const brokenHeader = decodeCsv('"meter_id,timestamp,value,unit\nM1,t,1,kW\n');
    expect(brokenHeader).toMatchObject({ ok: false, failure: { code: 'bad_header' } });
  });

  it('decodes a header-only file to no readings, and refuses an empty one', () => {
    expect(decoded(decodeCsv('meter_id,timestamp,value,unit\n')).records).toBe(0);
    expect(decodeCsv('')).toMatchObject({ ok: false, failure: { code: 'empty' } });
    expect(decodeCsv(' \n\n')).toMatchObject({ ok: false, failure: { code: 'empty' } });
  });
});

describe('decodeReadings: whole-message failures', () => {
  it('refuses invalid UTF-8 whole', () => {
    const payload = Buffer.concat([
      bytes('meter_id,timestamp,value,unit\nM1,t,'),
      Buffer.from([0xc3, 0x28]),
      bytes(',kW\n'),
    ]);
    const result = decodeReadings(payload, { source: 's', receivedAt: 0 });
    expect(result).toEqual({
      ok: false,
      failure: {
        level: 'message',
        code: 'invalid_utf8',
        reason: 'payload is not valid UTF-8',
        source: 's',
        byteLength: payload.length,
      },
    });
  });

  it('refuses binary garbage without throwing', () => {
    let seed = 42;
    const garbage = Buffer.alloc(64 * 1024);
    for (let i = 0; i < garbage.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      garbage[i] = seed >> 16;
    }
    const result = decodeReadings(garbage, { source: 's', receivedAt: 0 });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(['binary', 'invalid_utf8', 'bad_header']).toContain(result.failure.code);
  });

  it('refuses a 50 MB payload whole, without reading it', () => {
    const line = 'MTR-00001,2024-03-15T14:00:00Z,1234.5,W\n';
    const payload = Buffer.alloc(50 * 1024 * 1024, line);
    payload.write('meter_id,timestamp,value,unit\n');
    const started = performance.now();
    const result = decodeReadings(payload, { source: 'big.csv', receivedAt: 0 });
    expect(performance.now() - started).toBeLessThan(50);
    expect(result).toMatchObject({ ok: false, failure: { code: 'too_large', byteLength: 50 * 1024 * 1024 } });
    if (!result.ok) expect(result.failure.reason).toContain('exceeds the limit of 8388608 bytes');
    // The limit is a setting.
    const small = bytes('meter_id,timestamp,value,unit\nM1,t,1,kW\n');
    expect(decodeReadings(small, { source: 's', receivedAt: 0, maxBytes: 16 })).toMatchObject({
      ok: false,
      failure: { code: 'too_large' },
    });
    expect(decodeReadings(small, { source: 's', receivedAt: 0, maxBytes: small.length }).ok).toBe(true);
  });

  it('takes the type from a Content-Type header, and refuses types it does not read', () => {
    const csv = bytes('meter_id,timestamp,value,unit\nM1,t,1,kW\n');
    expect(
      decoded(decodeReadings(csv, { source: 's', receivedAt: 0, contentType: 'text/csv; charset=utf-8' }))
        .readings,
    ).toHaveLength(1);
    expect(
      decodeReadings(csv, { source: 's', receivedAt: 0, contentType: 'application/json' }),
    ).toMatchObject({
      ok: false,
      failure: { code: 'invalid_json' },
    });
    expect(
      decodeReadings(csv, { source: 's', receivedAt: 0, contentType: 'application/x-protobuf' }),
    ).toMatchObject({
      ok: false,
      failure: { code: 'unsupported_content_type' },
    });
    expect(
      decodeReadings(csv, { source: 's', receivedAt: 0, contentType: 'text/csv; charset=latin1' }),
    ).toMatchObject({
      ok: false,
      failure: { code: 'unsupported_content_type' },
    });
  });

  it('detects JSON by its first non-blank byte', () => {
    expect(detectContentType(bytes('  \n[{"a":1}]'))).toBe('application/json');
    expect(detectContentType(bytes('\uFEFF{"a":1}'))).toBe('application/json');
    expect(detectContentType(bytes('meter_id,timestamp'))).toBe('text/csv');
    expect(detectContentType(new Uint8Array())).toBe('text/csv');
  });
});

describe('decodeReadings: JSON', () => {
  const decodeJson = (text: string) =>
    decodeReadings(bytes(text), { source: 'stream:R:7', receivedAt: RECEIVED_AT });

  it('reads one object or an array; value may be a number, a numeric string or null', () => {
    const one = decoded(
      decodeJson('{"meter_id":"M1","timestamp":"2024-03-15T14:00:00Z","value":3250,"unit":"W"}'),
    );
    expect(one.readings).toEqual([
      {
        meterId: 'M1',
        timestamp: '2024-03-15T14:00:00Z',
        value: '3250',
        unit: 'W',
        raw: '{"meter_id":"M1","timestamp":"2024-03-15T14:00:00Z","value":3250,"unit":"W"}',
        source: 'stream:R:7',
        receivedAt: RECEIVED_AT,
      },
    ]);
    const many = decoded(
      decodeJson(
        '[{"meter_id":"M1","timestamp":"t","value":"1.5","unit":"kW","location":"Z"},' +
          '{"meter_id":"M2","timestamp":"t","value":null,"unit":"kW"},' +
          '{"meter_id":"M3","timestamp":"t","value":2}]',
      ),
    );
    expect(many.readings.map((r) => [r.meterId, r.value, r.unit])).toEqual([
      ['M1', '1.5', 'kW'],
      ['M2', '', 'kW'],
      ['M3', '2', ''],
    ]);
    expect(many.readings[0].raw).toBe(
      '{"meter_id":"M1","timestamp":"t","value":"1.5","unit":"kW","location":"Z"}',
    );
  });

  it('quarantines elements that are not objects or carry fields of the wrong type', () => {
    const result = decoded(
      decodeJson(
        '[{"meter_id":"M1","timestamp":"t","value":1,"unit":"kW"}, 42, {"meter_id":"M3","timestamp":"t","value":{"x":1},"unit":"kW"}]',
      ),
    );
    expect(result.readings).toHaveLength(1);
    expect(result.failures).toEqual([
      {
        level: 'record',
        code: 'json_not_object',
        reason: 'expected a JSON object, got a number',
        raw: '42',
        meterId: '',
        line: 2,
        source: 'stream:R:7#2',
      },
      {
        level: 'record',
        code: 'json_field_type',
        reason: 'value: expected a string, a number or null',
        raw: '{"meter_id":"M3","timestamp":"t","value":{"x":1},"unit":"kW"}',
        meterId: 'M3',
        line: 3,
        source: 'stream:R:7#3',
      },
    ]);
  });

  it('keeps an overflowing number visible in value and raw instead of turning it into null', () => {
    const result = decoded(decodeJson('{"meter_id":"M1","timestamp":"t","value":1e400,"unit":"kW"}'));
    expect(result.readings[0].value).toBe('Infinity');
    expect(result.readings[0].raw).toBe('{"meter_id":"M1","timestamp":"t","value":"Infinity","unit":"kW"}');
    expect(
      decoded(decodeJson('{"meter_id":"M1","timestamp":"t","value":"NaN","unit":"kW"}')).readings[0].value,
    ).toBe('NaN');
  });

  it('dead-letters invalid JSON and roots that are not objects or arrays', () => {
    expect(decodeJson('{"meter_id":"M1",')).toMatchObject({ ok: false, failure: { code: 'invalid_json' } });
    expect(decodeJson('[{"value":NaN}]')).toMatchObject({ ok: false, failure: { code: 'invalid_json' } });
    expect(
      decodeReadings(bytes('42'), { source: 's', receivedAt: 0, contentType: 'application/json' }),
    ).toMatchObject({
      ok: false,
      failure: { code: 'json_root' },
    });
  });
});

describe('decodeReadings: properties', () => {
  it('never throws on arbitrary bytes, and every record is a reading or a failure', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.constantFrom(undefined, 'text/csv', 'application/json'),
        (payload, contentType) => {
          const result = decodeReadings(payload, { source: 's', receivedAt: 0, contentType });
          if (result.ok) expect(result.records).toBe(result.readings.length + result.failures.length);
          else expect(result.failure.reason.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('never throws on CSV-like text with quotes, commas and line breaks', () => {
    const csvish = fc
      .array(fc.constantFrom('a', '1', ',', '"', '\n', '\r\n', ' ', 'é', '\t'), { maxLength: 300 })
      .map((chars) => `meter_id,timestamp,value,unit\n${chars.join('')}`);
    fc.assert(
      fc.property(csvish, (text) => {
        const result = decoded(decodeReadings(bytes(text), { source: 's', receivedAt: 0 }));
        expect(result.records).toBe(result.readings.length + result.failures.length);
        for (const failure of result.failures) expect(text).toContain(failure.raw);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips readings through encodeReadingsCsv and decodeReadings', () => {
    // NUL marks a payload as binary, and lone surrogates cannot be encoded as UTF-8: neither is text.
    const field = fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !s.includes('\u0000'));
    const reading = fc.record({ meterId: field, timestamp: field, value: field, unit: field });
    fc.assert(
      fc.property(
        fc.array(reading, { maxLength: 30 }),
        fc.array(field, { minLength: 30, maxLength: 30 }),
        (readings, locations) => {
          const rows = readings;
          const text = encodeReadingsCsv(rows, [{ name: 'location', get: (i) => locations[i] }]);
          const result = decoded(decodeReadings(bytes(text), { source: 'f', receivedAt: 5 }));
          expect(result.failures).toEqual([]);
          expect(
            result.readings.map(({ meterId, timestamp, value, unit }) => ({
              meterId,
              timestamp,
              value,
              unit,
            })),
          ).toEqual(rows);
          expect(result.readings.every((r) => r.source === 'f' && r.receivedAt === 5)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('splitCsvRecords cuts text into the same records the decoder reads', () => {
    const text = 'meter_id,timestamp,value,unit\nM1,t,1,kW\n"M,2",t,"a\nb",kW\n\nM3,t,"broken\nM4,t,4,kW\n';
    const split = splitCsvRecords(text);
    if ('error' in split) throw new Error(split.error);
    expect(split.header).toBe('meter_id,timestamp,value,unit');
    expect(split.records.map((r) => [text.slice(r.start, r.end), r.meterId])).toEqual([
      ['M1,t,1,kW', 'M1'],
      ['"M,2",t,"a\nb",kW', 'M,2'],
      ['M3,t,"broken', ''],
      ['M4,t,4,kW', 'M4'],
    ]);
  });
});
