import { describe, expect, it } from 'vitest';
import { type SimulationLabel, scoreDetections } from '../../simulator/index.js';

const label = (
  meterId: string,
  kind: SimulationLabel['kind'],
  role: SimulationLabel['role'],
): SimulationLabel => ({
  meterId,
  kind,
  role,
  start: '2024-03-11T00:00:00Z',
  end: '2024-03-12T00:00:00Z',
  count: 1,
});

describe('scoreDetections', () => {
  const labels = [
    label('MTR-000001', 'zero', 'injected'),
    label('MTR-000002', 'zero', 'injected'),
    label('MTR-000001', 'stuck', 'side_effect'),
    label('MTR-000003', 'stuck', 'injected'),
  ];

  it('counts injected hits, misses and unlabeled reports; repeats collapse per meter', () => {
    const scores = scoreDetections(
      labels,
      [
        { meterId: 'MTR-000001', kind: 'zero' },
        { meterId: 'MTR-000001', kind: 'zero' },
        { meterId: 'MTR-000009', kind: 'zero' },
      ],
      ['zero'],
    );
    expect(scores.zero).toMatchObject({
      expected: 2,
      detected: 2,
      truePositives: 1,
      falsePositives: 1,
      falseNegatives: 1,
      precision: 0.5,
      recall: 0.5,
      falsePositiveMeters: ['MTR-000009'],
      missedMeters: ['MTR-000002'],
    });
  });

  it('neither credits nor blames a report that matches only a side effect', () => {
    const scores = scoreDetections(
      labels,
      [
        { meterId: 'MTR-000001', kind: 'stuck' },
        { meterId: 'MTR-000003', kind: 'stuck' },
      ],
      ['stuck'],
    );
    expect(scores.stuck).toMatchObject({
      truePositives: 1,
      falsePositives: 0,
      tolerated: 1,
      precision: 1,
      recall: 1,
    });
  });

  it('scores an empty kind as perfect rather than dividing by zero', () => {
    expect(scoreDetections(labels, [], ['overload']).overload).toMatchObject({ precision: 1, recall: 1 });
  });
});
