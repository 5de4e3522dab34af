import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DenseKeyIndex, dataEvent, type FlowEvent, taggedEvent, watermarkEvent } from '../../core/index.js';
import { addFlag, NO_FLAGS } from '../../operators/add-flag.js';
import { QUARANTINE } from '../../operators/outputs.js';
import { type ParsedReading, parseReading, parseValue } from '../../operators/parse-reading.js';
import { recordId } from '../../operators/record-id.js';
import { METER_IX, type QuarantineRecord, type RawReading } from '../../schemas/reading.js';
import { testScheduler } from '../core/helpers.js';
import { PROCESSED_AT, raw, run, runBatch, T0, testLineage } from './fixtures.js';

const parse = (items: RawReading[]) => runBatch(parseReading(testLineage()), items);
const tsOf = (timestamp: string): number | null => {
  const r = parse([raw({ timestamp })]);
  return r.main.length === 1 ? r.main[0]!.ts : null;
};

describe('parseReading routing', () => {
  it('emits good readings, quarantines bad ones ahead of them in the same batch, passes watermarks', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const good = raw({ timestamp: '2024-03-04T00:00:00Z', value: '1.5' });
      const badTs = raw({ timestamp: 'yesterday', value: '2', raw: 'MTR-000001,yesterday,2,kW' });
      const input = cold<FlowEvent<RawReading>>('a 9ms b 9ms c|', {
        a: dataEvent([good, badTs]),
        b: watermarkEvent(T0),
        c: dataEvent([]), // an empty batch emits nothing
      });
      const lineage = testLineage();
      const quarantined: QuarantineRecord = {
        meterId: 'MTR-000001',
        ts: null,
        raw: 'MTR-000001,yesterday,2,kW',
        reasons: ['invalid_timestamp'],
        source: 'test',
        quarantinedAt: PROCESSED_AT,
      };
      expectObservable(input.pipe(parseReading(lineage))).toBe('(qa) 6ms b 10ms |', {
        q: taggedEvent(QUARANTINE, [quarantined]),
        a: dataEvent([expect.objectContaining({ ts: T0, kw: 1.5 }) as ParsedReading]),
        b: watermarkEvent(T0),
      });
    });
  });
});

describe('parseReading timestamps', () => {
  it('parses a batch repeating timestamps, as equal or as the same strings, as it parses each alone', () => {
    const pool = [
      '2024-03-04T00:00:00Z',
      '2024-03-04 00:15:00+01:00',
      '2024-03-04T00:00:00.500Z',
      '2024-02-30T00:00:00Z',
      'yesterday',
      '',
      '2024-03-04T00:30:00Z',
    ];
    // Equal texts as one string object (as the CSV decoder hands them out) and as distinct ones.
    const text = fc.oneof(
      fc.constantFrom(...pool),
      fc.constantFrom(...pool).map((t) => [...t].join('')),
    );
    fc.assert(
      fc.property(fc.array(text, { minLength: 1, maxLength: 40 }), (timestamps) => {
        const batch = parse(timestamps.map((timestamp, i) => raw({ timestamp, value: `${i}` })));
        const alone = timestamps.map((timestamp, i) => parse([raw({ timestamp, value: `${i}` })]));
        expect(batch.main).toEqual(alone.flatMap((r) => r.main));
        expect(batch.tagged(QUARANTINE)).toEqual(alone.flatMap((r) => r.tagged(QUARANTINE)));
      }),
      { numRuns: 200 },
    );
  });

  it('parses a payload cycling through its timestamps, with strays and past 4,096 texts, as each alone', () => {
    // Meters in turn, each through the hour's timestamps in order (what a gateway file holds), broken by
    // texts out of the cycle; a backfill's batch of more distinct texts than a batch remembers.
    const hour = ['00', '15', '30', '45'].map((m) => `2024-03-04T00:${m}:00Z`);
    const stray = fc.constantFrom('2024-03-04 01:00:00+01:00', '2024-03-04T00:00:00.500Z', 'bad', hour[2]!);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.option(stray, { nil: undefined })), {
          minLength: 1,
          maxLength: 12,
        }),
        (meters) => {
          const timestamps = meters.flatMap(([count, extra]) => [
            ...hour.slice(0, count),
            ...(extra === undefined ? [] : [extra]),
          ]);
          const batch = parse(timestamps.map((timestamp, i) => raw({ timestamp, value: `${i}` })));
          const alone = timestamps.map((timestamp, i) => parse([raw({ timestamp, value: `${i}` })]));
          expect(batch.main).toEqual(alone.flatMap((r) => r.main));
          expect(batch.tagged(QUARANTINE)).toEqual(alone.flatMap((r) => r.tagged(QUARANTINE)));
        },
      ),
      { numRuns: 300 },
    );
    const many = Array.from({ length: 4200 }, (_, i) => new Date(T0 + i * 60_000).toISOString());
    const texts = [...many, ...many.slice(4090, 4110), ...many.slice(0, 8)];
    const batch = parse(texts.map((timestamp) => raw({ timestamp })));
    expect(batch.main.map((r) => r.ts)).toEqual(texts.map((t) => Date.parse(t)));
  });

  it.each([
    ['2024-03-04T00:00:00Z', T0],
    ['2024-03-04T00:00:00', T0], // no zone: UTC
    ['2024-03-04 00:00:00', T0],
    ['2024-03-04T00:00', T0],
    ['2024-03-04T00:00Z', T0],
    ['2024-03-04T00:00:00.000Z', T0],
    ['2024-03-04T00:00:00.0000001Z', T0], // below a millisecond: truncated like Date.parse
    ['2024-03-04T01:00:00+01:00', T0],
    ['2024-03-04T01:30:00+0130', T0],
    ['2024-03-03T19:00:00-05:00', T0],
    ['2024-03-04t00:00:00z', T0],
    ['  2024-03-04T00:00:00Z  ', T0],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
    ['2000-02-29T00:00:00Z', Date.UTC(2000, 1, 29)],
    ['2024-12-31T23:59:59Z', Date.UTC(2024, 11, 31, 23, 59, 59)],
  ])('%j is %d', (timestamp, expected) => {
    expect(tsOf(timestamp)).toBe(expected);
  });

  it('quarantines a timestamp with a fraction of a second, as every store keeps whole seconds', () => {
    for (const timestamp of [
      '2024-03-04T00:00:00.250Z',
      '2024-03-04T00:00:00.5',
      '2024-03-04T00:00:00.123456789Z',
    ]) {
      const r = parse([raw({ timestamp })]);
      expect(r.main).toEqual([]);
      expect(r.tagged(QUARANTINE).map((q) => [q.ts, q.reasons])).toEqual([
        [expect.any(Number), ['subsecond_timestamp']],
      ]);
    }
  });

  it.each([
    '',
    'garbage',
    '2024-03-04', // a date is not an instant
    '1709510400000', // epoch numbers are not ISO-8601
    '2024-3-4T00:00:00Z',
    '2024/03/04 00:00:00',
    '2024-03-04T0:00:00Z',
    '2024-02-30T00:00:00Z', // Date.parse rolls this over to 1 March
    '2023-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-00-01T00:00:00Z',
    '2024-03-00T00:00:00Z',
    '2024-03-04T24:00:00Z',
    '2024-03-04T00:60:00Z',
    '2024-03-04T00:00:60Z',
    '2024-03-04T00:00:00.Z',
    '2024-03-04T00:00:00ZZ',
    '2024-03-04T00:00:00 Z',
    '2024-03-04T00:00:00+01',
    '2024-03-04T00:00:00+24:00',
    '2024-03-04T00:00:00+01:60',
    '2024-03-04T00:00:00+01:00:00',
    '2024-03-04X00:00:00Z',
    '2024-03-04T00:00:00 UTC',
  ])('%j is quarantined as invalid_timestamp', (timestamp) => {
    const r = parse([raw({ timestamp })]);
    expect(r.main).toEqual([]);
    expect(r.tagged(QUARANTINE)).toEqual([
      expect.objectContaining({ ts: null, reasons: ['invalid_timestamp'] }),
    ]);
  });

  it('agrees with Date.parse on generated ISO-8601 timestamps (no zone read as UTC)', () => {
    const two = (n: number) => String(n).padStart(2, '0');
    const timestamp = fc
      .record({
        year: fc.integer({ min: 0, max: 9999 }),
        month: fc.integer({ min: 1, max: 12 }),
        day: fc.integer({ min: 1, max: 31 }),
        hour: fc.integer({ min: 0, max: 23 }),
        minute: fc.integer({ min: 0, max: 59 }),
        second: fc.option(fc.integer({ min: 0, max: 59 })),
        fraction: fc.option(fc.stringMatching(/^[0-9]{1,6}$/)),
        separator: fc.constantFrom('T', ' '),
        zone: fc.oneof(
          fc.constant(''),
          fc.constant('Z'),
          fc.tuple(
            fc.constantFrom('+', '-'),
            fc.integer({ min: 0, max: 23 }),
            fc.integer({ min: 0, max: 59 }),
          ),
        ),
      })
      .filter((t) => t.day <= new Date(Date.UTC(2000, t.month, 0)).getUTCDate()) // 29 Feb: leap-checked below
      .map((t) => {
        const date = `${String(t.year).padStart(4, '0')}-${two(t.month)}-${two(t.day)}`;
        const seconds =
          t.second === null ? '' : `:${two(t.second)}${t.fraction === null ? '' : `.${t.fraction}`}`;
        const zone = typeof t.zone === 'string' ? t.zone : `${t.zone[0]}${two(t.zone[1])}:${two(t.zone[2])}`;
        const time = `${two(t.hour)}:${two(t.minute)}${seconds}`;
        // The reference: Date.parse reads a zoneless date-time as local time and a space differently.
        return { text: `${date}${t.separator}${time}${zone}`, reference: `${date}T${time}${zone || 'Z'}` };
      });
    fc.assert(
      fc.property(timestamp, ({ text, reference }) => {
        const expected = Date.parse(reference);
        const year = Number(reference.slice(0, 4));
        const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
        if (reference.slice(5, 10) === '02-29' && !leap) expect(tsOf(text)).toBeNull();
        else if (expected % 1000 !== 0)
          expect(tsOf(text)).toBeNull(); // subsecond_timestamp
        else expect(tsOf(text)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('parseReading values', () => {
  it.each([
    ['1.5', 1.5],
    ['  3.2 ', 3.2],
    ['0', 0],
    ['-0', 0],
    ['-1.5', -1.5], // negative values are validateReading's to reject, with their own reason
    ['+2', 2],
    ['.5', 0.5],
    ['5.', 5],
    ['1e3', 1000],
    ['2.5E-1', 0.25],
    ['1250', 1250],
  ])('%j is %d', (value, kw) => {
    const [r] = parse([raw({ value })]).main;
    expect(r!.kw).toBe(kw);
    expect(Object.is(r!.kw, -0)).toBe(false);
    expect(r!.flags).toEqual([]);
    expect(r!.rawValue).toBe(value);
  });

  it.each(['', ' ', '\t'])('%j is a NULL reading kept as MISSING_READING', (value) => {
    const r = parse([raw({ value })]);
    expect(r.tagged(QUARANTINE)).toEqual([]);
    expect(r.main).toEqual([
      expect.objectContaining({ kw: null, flags: ['MISSING_READING'], status: 'measured', rawValue: value }),
    ]);
  });

  it.each([
    'abc',
    'NaN',
    'Infinity',
    '-Infinity',
    '1e999',
    '-1e999',
    '0x10',
    '0b1',
    '1,5',
    '1.2.3',
    '--1',
    '+-1',
    '1e',
    'e5',
    '.',
    '-',
    '1 2',
    '12kW',
    'null',
  ])('%j is quarantined as invalid_value', (value) => {
    const r = parse([raw({ value })]);
    expect(r.main).toEqual([]);
    expect(r.tagged(QUARANTINE)).toEqual([expect.objectContaining({ ts: T0, reasons: ['invalid_value'] })]);
  });

  it('accumulates both reasons in one quarantine record that keeps the raw line and source', () => {
    const bad = raw({
      timestamp: 'soon',
      value: 'lots',
      raw: 'MTR-9,soon,lots,kW',
      source: 'raw/2024/03/04/00/gw-1.csv',
    });
    expect(parse([bad]).tagged(QUARANTINE)).toEqual([
      {
        meterId: 'MTR-000001',
        ts: null,
        raw: 'MTR-9,soon,lots,kW',
        reasons: ['invalid_timestamp', 'invalid_value'],
        source: 'raw/2024/03/04/00/gw-1.csv',
        quarantinedAt: PROCESSED_AT,
      },
    ]);
  });
});

describe('parseReading draft fields', () => {
  it('fills lineage, raw strings, receivedAt, record id and best-case scoring defaults', () => {
    const lineage = testLineage(T0 + 42, '1.2.3');
    const input = raw({ value: ' 1250 ', unit: 'W', source: 'stream:readings:7', receivedAt: T0 + 900_000 });
    const [r] = runBatch(parseReading(lineage), [input]).main;
    expect(r).toEqual({
      meterId: 'MTR-000001',
      ts: T0,
      kw: 1250,
      rawValue: ' 1250 ',
      rawUnit: 'W',
      status: 'measured',
      flags: [],
      warnings: 0,
      qualityScore: 100,
      qualityTier: 'premium',
      grade: 'A',
      peakClass: 'standard',
      season: 'spring',
      recordId: recordId('MTR-000001', '2024-03-04T00:00:00Z', '1250'),
      source: 'stream:readings:7',
      processedAt: T0 + 42,
      pipelineVersion: '1.2.3',
      receivedAt: T0 + 900_000,
    });
  });

  it('gives flagless readings the one frozen empty array, and NULL or source-flagged readings their own', () => {
    const [plain, other, missing, estimated, both] = parse([
      raw({ value: '1' }),
      { ...raw({ value: '2' }), sourceFlags: [] },
      raw({ value: '' }),
      { ...raw({ value: '3' }), sourceFlags: ['source_estimated'] },
      { ...raw({ value: ' ' }), sourceFlags: ['source_estimated'] },
    ]).main;
    // Frozen, so that a stage pushing into it instead of going through `addFlag` fails at once.
    expect(plain!.flags).toBe(NO_FLAGS);
    expect(other!.flags).toBe(NO_FLAGS);
    expect(Object.isFrozen(NO_FLAGS)).toBe(true);
    expect(missing!.flags).toEqual(['MISSING_READING']);
    expect(estimated!.flags).toEqual(['source_estimated']);
    expect(both!.flags).toEqual(['MISSING_READING', 'source_estimated']);
    for (const r of [missing, estimated, both]) expect(Object.isFrozen(r!.flags)).toBe(false);
    addFlag(plain!, 'unit_converted');
    expect(plain!.flags).toEqual(['unit_converted']);
    expect(other!.flags).toEqual([]);
  });

  it('adds a flag to one reading only, when readings share a flags array', () => {
    // A reading copied by spread shares its flags array with the original: `addFlag` gives the one
    // flagged a new array, so the other keeps what it had.
    const [estimated] = parse([{ ...raw({ value: '3' }), sourceFlags: ['source_estimated'] }]).main;
    const copy = { ...estimated! };
    addFlag(copy, 'spike');
    expect(copy.flags).toEqual(['source_estimated', 'spike']);
    expect(estimated!.flags).toEqual(['source_estimated']);
  });

  it('gives one instant written in different zones and spellings the same record id', () => {
    const ids = parse([
      raw({ timestamp: '2024-03-04T00:00:00Z' }),
      raw({ timestamp: '2024-03-04 01:00:00+01:00' }),
      raw({ timestamp: '2024-03-04T00:00' }),
      raw({ timestamp: '2024-03-03T19:00:00.000-05:00' }),
    ]).main.map((r) => r.recordId);
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toBe(recordId('MTR-000001', '2024-03-04T00:00:00Z', '1'));
  });

  it('tags a placeholder season from the UTC month', () => {
    const seasons = parse(
      ['2024-01-15', '2024-04-15', '2024-07-15', '2024-10-15', '2024-12-15'].map((d) =>
        raw({ timestamp: `${d}T00:00:00Z` }),
      ),
    ).main.map((r) => r.season);
    expect(seasons).toEqual(['winter', 'spring', 'summer', 'fall', 'winter']);
  });

  it('never throws and routes every raw reading exactly once, whatever its strings', () => {
    const text = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('2024-03-04T00:00:00Z', '1.5', ''));
    fc.assert(
      fc.property(
        fc.array(fc.record({ timestamp: text, value: text, unit: text, meterId: text })),
        (fields) => {
          const r = parse(fields.map((f) => raw(f)));
          expect(r.main.length + r.tagged(QUARANTINE).length).toBe(fields.length);
        },
      ),
    );
  });
});

/** The value grammar checked by a regex, then `Number()`: what `parseValue` must return for every string. */
function referenceValue(s: string): number | null {
  let i = 0;
  let n = s.length;
  while (i < n && s.charCodeAt(i) <= 32) i++;
  while (n > i && s.charCodeAt(n - 1) <= 32) n--;
  if (i === n) return null;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s.slice(i, n))) return Number.NaN;
  const v = Number(s);
  if (!Number.isFinite(v)) return Number.NaN;
  return v === 0 ? 0 : v;
}

describe('parseValue', () => {
  const digits = (max: number) => fc.stringMatching(new RegExp(`^[0-9]{0,${max}}$`));
  // Blanks Number() trims, and two control characters it does not.
  const blanks = fc
    .array(fc.constantFrom(' ', '\t', '\r', '\n', '\u000b', '\u000c', '\u0001', '\u001f'), { maxLength: 2 })
    .map((b) => b.join(''));
  const decimal = fc
    .record({
      before: blanks,
      sign: fc.constantFrom('', '+', '-'),
      whole: digits(18),
      point: fc.boolean(),
      fraction: digits(18),
      exponent: fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(3))),
      after: blanks,
    })
    .map(
      (p) =>
        `${p.before}${p.sign}${p.whole}${p.point ? '.' : ''}${p.fraction}${p.exponent === null ? '' : p.exponent.join('')}${p.after}`,
    );
  const printed = fc.oneof(
    fc.double({ noNaN: true }).map(String),
    fc
      .tuple(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.integer({ min: 0, max: 15 }))
      .map(([x, k]) => x.toFixed(k)),
  );

  it('returns what Number() returns for every decimal it accepts (the exact path and the fallback alike)', () => {
    fc.assert(
      fc.property(fc.oneof(decimal, printed, fc.string({ maxLength: 24 })), (s) => {
        expect(Object.is(parseValue(s), referenceValue(s))).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('rounds at the limits of the exact path as Number() does', () => {
    for (const s of [
      '0.1',
      '-0.0',
      '-0',
      '.5',
      '5.',
      '999999999999999',
      '9999999999999999',
      '0.000000000000001',
      '1.00000000000000',
      '123456789012.345',
      '9007199254740993',
      '\u00011.5',
      ' 1.5\t',
      '1e3',
    ])
      expect(Object.is(parseValue(s), referenceValue(s)), s).toBe(true);
    expect(parseValue('-0.0')).toBe(0);
    expect(Object.is(parseValue('\u00011.5'), Number.NaN)).toBe(true);
  });
});

describe('parseReading meter numbers', () => {
  it('numbers each reading’s meter as the index numbers it, batches naming meters in any order', () => {
    const meter = fc.constantFrom('MTR-1', 'MTR-2', 'MTR-3', 'MTR-12', 'MTR-4');
    fc.assert(
      fc.property(
        fc.array(meter, { maxLength: 5 }),
        fc.array(fc.array(meter, { maxLength: 12 }), { maxLength: 4 }),
        (known, batches) => {
          const index = new DenseKeyIndex();
          // Numbered before, in an order of their own (a restored checkpoint's).
          for (const id of known) index.intern(id);
          const stage = parseReading(testLineage(), index);
          const events = run(
            stage,
            // Equal ids as other string objects, as payloads decoded apart bring them.
            batches.map((ids) => dataEvent(ids.map((id) => raw({ meterId: ` ${id}`.slice(1) })))),
          );
          const expected = new DenseKeyIndex();
          for (const id of [...known, ...batches.flat()]) expected.intern(id);
          const readings = events.flatMap((e) => (e.kind === 'data' ? e.items : []));
          expect(readings.map((r) => r.meterId)).toEqual(batches.flat());
          for (const r of readings) {
            const n = (r as ParsedReading & { [METER_IX]?: number })[METER_IX]!;
            expect(n).toBe(expected.numberOf(r.meterId));
            // The index's own instance of the id, for the keyed stages' pointer compare.
            expect(r.meterId).toBe(index.keyOf(n));
          }
          expect(index.snapshot()).toEqual(expected.snapshot());
        },
      ),
    );
  });
});
