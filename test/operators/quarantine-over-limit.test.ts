import { describe, expect, it } from 'vitest';
import { dataEvent } from '../../core/index.js';
import { QUARANTINE } from '../../operators/outputs.js';
import { quarantineOverLimit } from '../../operators/quarantine-over-limit.js';
import { canonicalTimestamp, recordId } from '../../operators/record-id.js';
import { PROCESSED_AT, reading, runFlow, T0, testLineage } from './fixtures.js';

describe('quarantineOverLimit', () => {
  it('quarantines over-limit readings as out_of_range and leaves a missing row in their interval', () => {
    const ok = reading({ ts: T0, kw: 3 });
    const over = reading({
      ts: T0 + 900_000,
      kw: 27,
      rawValue: '27',
      rawUnit: 'kW',
      flags: ['over_limit', 'fault_excluded'],
    });
    const out = runFlow(quarantineOverLimit(testLineage()), [dataEvent([ok, over])]);
    expect(out.tagged(QUARANTINE)).toEqual([
      expect.objectContaining({
        meterId: over.meterId,
        ts: over.ts,
        reasons: ['out_of_range'],
        quarantinedAt: PROCESSED_AT,
      }),
    ]);
    expect(out.main).toEqual([
      ok,
      expect.objectContaining({
        ts: over.ts,
        kw: null,
        status: 'missing',
        rawValue: '',
        flags: ['fault_excluded'],
        recordId: recordId(over.meterId, canonicalTimestamp(over.ts), ''),
      }),
    ]);
  });
});
