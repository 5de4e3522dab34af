import { describe, expect, it } from 'vitest';
import { type FlowEvent, OutputBuffer, outputTag } from '../../core/index.js';

const SIDE = outputTag<string>('side');

/** Runs `body` over one input batch and returns what the buffer hands downstream. */
function drain(input: readonly string[], body: (out: OutputBuffer<string>) => void): FlowEvent<string>[] {
  const out = new OutputBuffer<string>();
  const events: FlowEvent<string>[] = [];
  out.startBatch(input);
  body(out);
  out.drainTo((e) => events.push(e));
  return events;
}

describe('OutputBuffer', () => {
  it('hands on the input batch itself when a stage emits every item in order', () => {
    const input = ['a', 'b', 'c'];
    const events = drain(input, (out) => {
      for (const x of input) out.emit(x);
    });
    expect(events).toEqual([{ kind: 'data', items: ['a', 'b', 'c'] }]);
    expect((events[0] as { items: readonly string[] }).items).toBe(input);
  });

  it('builds a new batch as soon as the output departs from the input', () => {
    const input = ['a', 'b', 'c', 'd'];
    const dropped = drain(input, (out) => {
      out.emit('a');
      out.emit('c');
      out.emit('d');
    });
    expect(dropped).toEqual([{ kind: 'data', items: ['a', 'c', 'd'] }]);
    expect((dropped[0] as { items: readonly string[] }).items).not.toBe(input);
    const extra = drain(input, (out) => {
      for (const x of input) out.emit(x);
      out.emit('e');
    });
    expect(extra).toEqual([{ kind: 'data', items: ['a', 'b', 'c', 'd', 'e'] }]);
    const twice = drain(input, (out) => {
      out.emit('a');
      out.emit('a');
    });
    expect(twice).toEqual([{ kind: 'data', items: ['a', 'a'] }]);
    const prefix = drain(input, (out) => {
      out.emit('a');
      out.emit('b');
    });
    expect(prefix).toEqual([{ kind: 'data', items: ['a', 'b'] }]);
    expect(input).toEqual(['a', 'b', 'c', 'd']);
  });

  it('emits nothing for an empty output, and tagged records before the main batch', () => {
    expect(drain(['a'], () => {})).toEqual([]);
    expect(drain([], () => {})).toEqual([]);
    const events = drain(['a', 'b'], (out) => {
      out.emit('a');
      out.tag(SIDE, 'x');
      out.emit('b');
    });
    expect(events).toEqual([
      { kind: 'tagged', tag: 'side', items: ['x'] },
      { kind: 'data', items: ['a', 'b'] },
    ]);
  });

  it('collects as usual outside a batch (timers, watermarks) and after a drained batch', () => {
    const out = new OutputBuffer<string>();
    const events: FlowEvent<string>[] = [];
    out.startBatch(['a']);
    out.emit('a');
    out.drainTo((e) => events.push(e));
    out.emit('t');
    out.drainTo((e) => events.push(e));
    expect(events).toEqual([
      { kind: 'data', items: ['a'] },
      { kind: 'data', items: ['t'] },
    ]);
  });
});
