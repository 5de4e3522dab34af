import { describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_GROWING_PERCENT, tuneHeapForStreaming } from '../../cli/heap.js';
import { UsageError } from '../../cli/main.js';

describe('tuneHeapForStreaming', () => {
  it('applies the default, an override, or leaves V8 alone at 0', () => {
    expect(tuneHeapForStreaming({})).toBe(DEFAULT_HEAP_GROWING_PERCENT);
    expect(tuneHeapForStreaming({ GS_HEAP_GROWING_PERCENT: '80' })).toBe(80);
    expect(tuneHeapForStreaming({ GS_HEAP_GROWING_PERCENT: '0' })).toBe(0);
    expect(tuneHeapForStreaming({ GS_HEAP_GROWING_PERCENT: ' ' })).toBe(DEFAULT_HEAP_GROWING_PERCENT);
  });

  it('refuses a value V8 would misread, naming the variable', () => {
    for (const bad of ['-5', '1.5', 'fast', '5000']) {
      expect(() => tuneHeapForStreaming({ GS_HEAP_GROWING_PERCENT: bad })).toThrow(UsageError);
    }
    expect(() => tuneHeapForStreaming({ GS_HEAP_GROWING_PERCENT: 'fast' })).toThrow(
      /GS_HEAP_GROWING_PERCENT must be an integer from 0 to 1000, got "fast"/,
    );
  });
});
