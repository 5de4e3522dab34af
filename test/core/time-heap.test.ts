/** The min-heap of times shared by the timer queue and the hourly stage's due meters. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { popTime, pushTime } from '../../core/time-heap.js';

describe('time heap', () => {
  it('pops what was pushed, earliest first, with pushes and pops interleaved', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: -1e6, max: 1e6 }), fc.constant(null)), { maxLength: 300 }),
        (steps) => {
          const heap: number[] = [];
          const model: number[] = [];
          for (const step of steps) {
            if (step === null) {
              if (model.length === 0) continue;
              model.sort((a, b) => a - b);
              expect(popTime(heap)).toBe(model.shift());
            } else {
              pushTime(heap, step);
              model.push(step);
            }
            expect(heap.length).toBe(model.length);
          }
          model.sort((a, b) => a - b);
          const rest: number[] = [];
          while (heap.length > 0) rest.push(popTime(heap));
          expect(rest).toEqual(model);
        },
      ),
      { numRuns: 300 },
    );
  });
});
