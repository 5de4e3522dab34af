/**
 * fast-check arbitraries of hostile landing payloads: raw bytes, CSV and JSON built from hostile fields,
 * file names and content-type headers. Shared by the in-memory fuzz run and the embedded one.
 */
import fc from 'fast-check';

export const FUZZ_T0 = Date.UTC(2024, 2, 11);
export const FUZZ_METERS = ['MTR-000001', 'MTR-000002', 'MTR-000003'] as const;

const INTERVAL = 15 * 60_000;

const meterId = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...FUZZ_METERS) },
  fc.constantFrom('', ' ', 'MTR-000001 ', 'a,b', 'q"uote', 'line\nbreak', '😀'.repeat(20), 'x'.repeat(300)),
  fc.string({ maxLength: 24, unit: 'grapheme' }),
);

const isoOf = (ms: number) => new Date(ms).toISOString();

const timestamp = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .integer({ min: -200, max: 400 })
      .map((k) => isoOf(FUZZ_T0 + k * INTERVAL).replace('.000Z', 'Z')),
  },
  fc.integer({ min: -2_000, max: 2_000 }).map((k) => isoOf(FUZZ_T0 + k * 1_000)),
  fc.integer({ min: 0, max: 999 }).map((ms) => isoOf(FUZZ_T0 + ms)),
  fc
    .date({ min: new Date('1900-01-01'), max: new Date('2300-01-01'), noInvalidDate: true })
    .map((d) => d.toISOString()),
  fc.constantFrom(
    '2200-01-01T00:10:00Z',
    '1970-01-01T00:00:00Z',
    '2010-06-01T00:00:00Z',
    '2106-02-07T06:28:16Z',
    '2024-02-30T00:00:00Z',
    '2024-03-11T00:00:00+14:00',
    '2024-03-11 00:00',
    '',
    'yesterday',
  ),
  fc.string({ maxLength: 30, unit: 'grapheme' }),
);

const value = fc.oneof(
  { weight: 4, arbitrary: fc.double({ min: -50, max: 5_000, noNaN: true }).map(String) },
  fc.double().map(String),
  fc.constantFrom('', ' ', 'NaN', 'Infinity', '-0', '1e400', '1e-400', '0x10', '1,5', '١'),
  fc.string({ maxLength: 20, unit: 'grapheme' }),
);

const unit = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('kW', 'W', 'kWh', '', 'Watts', 'KILOWATT') },
  fc.constantFrom(`${'u'.repeat(31)}😀`, '\udc00', '\ud83d', `${'😀'.repeat(16)}`, ' kW '),
  fc.string({ maxLength: 40, unit: 'grapheme' }),
  fc.string({ maxLength: 8, unit: 'binary' }),
);

const field = fc.oneof(meterId, timestamp, value, unit);

const record = fc.record({ meterId, timestamp, value, unit });

const csvField = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

const header = fc.oneof(
  { weight: 14, arbitrary: fc.constant('meter_id,timestamp,value,unit') },
  fc.constantFrom(
    'meter_id,timestamp,value,unit,location',
    'unit,value,timestamp,meter_id',
    'METER_ID,Timestamp,Value,Unit',
    'meter_id,meter_id,value,unit',
    'meter_id,timestamp,value',
    '"meter_id","timestamp","value","unit"',
    '',
  ),
  fc.array(field, { maxLength: 6 }).map((fs) => fs.map(csvField).join(',')),
);

const csvText = fc
  .record({
    header,
    rows: fc.array(
      fc.oneof(
        {
          weight: 5,
          arbitrary: record.map((r) => [r.meterId, r.timestamp, r.value, r.unit].map(csvField).join(',')),
        },
        fc.array(field, { maxLength: 7 }).map((fs) => fs.map(csvField).join(',')),
        fc.string({ maxLength: 60, unit: 'grapheme' }),
      ),
      { maxLength: 40 },
    ),
    eol: fc.constantFrom('\n', '\n', '\r\n', '\r'),
    bom: fc.boolean(),
  })
  .map(({ header, rows, eol, bom }) => `${bom ? '\ufeff' : ''}${[header, ...rows].join(eol)}${eol}`);

const jsonValue = fc.oneof(
  field,
  fc.double(),
  fc.constant(null),
  fc.boolean(),
  fc.constant({}),
  fc.constant([]),
);

const jsonText = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .array(
        fc.oneof(
          {
            weight: 5,
            arbitrary: record.map((r) => ({
              meter_id: r.meterId,
              timestamp: r.timestamp,
              value: r.value,
              unit: r.unit,
            })),
          },
          fc.dictionary(fc.constantFrom('meter_id', 'timestamp', 'value', 'unit', 'x'), jsonValue),
          jsonValue,
        ),
        { maxLength: 40 },
      )
      .map((a) => JSON.stringify(a)),
  },
  record.map((r) =>
    JSON.stringify({ meter_id: r.meterId, timestamp: r.timestamp, value: r.value, unit: r.unit }),
  ),
  fc.json(),
  fc.string({ maxLength: 80, unit: 'binary' }).map((s) => `[${s}`),
);

/** A payload's bytes: raw bytes, CSV or JSON text (encoded as UTF-8), sometimes with a byte flipped. */
export const payloadBytes = fc
  .tuple(
    fc.oneof(
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
      { weight: 4, arbitrary: csvText.map((t) => Buffer.from(t)) },
      { weight: 3, arbitrary: jsonText.map((t) => Buffer.from(t)) },
    ),
    fc.oneof(
      { weight: 7, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })) },
    ),
  )
  .map(([bytes, flip]) => {
    if (flip !== null && bytes.length > 0) bytes[flip[0] % bytes.length] = flip[1];
    return bytes;
  });

/** A file name as a gateway might send it (the decoder takes it as lineage only). */
export const fileName = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9-]{1,12}\.(csv|json)$/) },
  fc.string({ maxLength: 40, unit: 'binary' }).map((s) => `${s}.csv`),
  fc.constantFrom('..%2f..%2fetc.csv', "x'; DROP TABLE readings; --.csv", 'a\nb.json', '😀.json'),
);

/** A `Content-Type` header (NATS carries one), or none (landing files). */
export const contentType = fc.oneof(
  { weight: 12, arbitrary: fc.constant(null) },
  fc.constantFrom(
    'text/csv',
    'application/json',
    'text/csv; charset=utf-8',
    'text/csv; charset=latin1',
    'application/xml',
    'text/plain',
    '',
    'application/json;charset="UTF-8"',
  ),
  fc.string({ maxLength: 30, unit: 'binary' }),
);

export const payload = fc.record({ bytes: payloadBytes, name: fileName, contentType });

/** How many generated cases a fuzz run takes: `GS_FUZZ_RUNS` (the longer run: 100000), else `fallback`. */
export function fuzzRuns(fallback: number): number {
  const text = process.env.GS_FUZZ_RUNS;
  const n = text === undefined || text === '' ? fallback : Number(text);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new Error(`GS_FUZZ_RUNS must be a positive integer, got "${text}"`);
  return n;
}
