/** Turns a decoded payload (a landing file, a JetStream message) into the records and quarantine rows of a pull. */
import type { DecodeResult } from '../codecs/decode.js';
import type { QuarantineRecord, RawReading } from '../schemas/reading.js';

/** Turns one decoded payload into a source batch: record failures become quarantine rows. */
export function batchFromDecoded(
  decoded: DecodeResult,
  quarantinedAt: number,
  into: { records: RawReading[]; quarantined: QuarantineRecord[] },
): boolean {
  if (!decoded.ok) return false;
  for (const r of decoded.readings) into.records.push(r);
  for (const f of decoded.failures) {
    into.quarantined.push({
      meterId: f.meterId,
      ts: null,
      raw: f.raw,
      reasons: [f.reason],
      source: `${f.source}#${f.line}`,
      quarantinedAt,
    });
  }
  return true;
}
