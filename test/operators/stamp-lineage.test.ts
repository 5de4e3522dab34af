import { describe, expect, it } from 'vitest';
import { type FlowEvent, taggedEvent } from '../../core/index.js';
import { QUARANTINE } from '../../operators/outputs.js';
import { stampLineage } from '../../operators/stamp-lineage.js';
import type { Reading } from '../../schemas/reading.js';
import { data, testScheduler, wm } from '../core/helpers.js';
import { quarantined, reading, T0 } from './fixtures.js';

describe('stampLineage', () => {
  it('stamps one processing time per batch and the pipeline version, leaving source and watermarks alone', () => {
    let calls = 0;
    const lineage = { pipelineVersion: '1.2.3', processedAt: () => T0 + 1000 * ++calls };
    testScheduler().run(({ cold, expectObservable }) => {
      const q = quarantined();
      const input = cold<FlowEvent<Reading>>('a-b-c-d|', {
        a: data(
          reading({ source: 'raw/2024/03/04/00/gw-1.csv' }),
          reading({ ts: T0 + 1, source: 'stream:r:7' }),
        ),
        b: wm(T0),
        c: taggedEvent(QUARANTINE, [q]) as FlowEvent<Reading>,
        d: data(reading({ ts: T0 + 2 })),
      });
      expectObservable(input.pipe(stampLineage(lineage))).toBe('a-b-c-d|', {
        a: data(
          reading({ source: 'raw/2024/03/04/00/gw-1.csv', processedAt: T0 + 1000, pipelineVersion: '1.2.3' }),
          reading({ ts: T0 + 1, source: 'stream:r:7', processedAt: T0 + 1000, pipelineVersion: '1.2.3' }),
        ),
        b: wm(T0),
        c: taggedEvent(QUARANTINE, [q]),
        d: data(reading({ ts: T0 + 2, processedAt: T0 + 2000, pipelineVersion: '1.2.3' })),
      });
    });
    expect(calls).toBe(2);
  });
});
