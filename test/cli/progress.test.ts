import { describe, expect, it } from 'vitest';
import { formatProgress, startProgress } from '../../cli/progress.js';
import type { ReadingSource } from '../../pipelines/runner.js';

describe('replay progress', () => {
  it('formats share, counts, rate and ETA', () => {
    const { bar, line } = formatProgress('replay', 250, 1000, 10_000, 10);
    expect(bar).toBe('replay [###.......] 25.0% 250/1,000 messages 25/s ETA 0:30');
    expect(line).toBe('replay progress 25.0% (250/1,000 messages, 25 messages/s, ETA 0:30)');
    expect(formatProgress('replay', 0, 1000, 0).line).toContain('ETA ?');
    expect(formatProgress('replay', 1000, 1000, 5000).line).toContain('100.0%');
  });

  it('draws a bar on a terminal and plain lines otherwise, ending at 100 %', async () => {
    let pending = 100;
    let clock = 0;
    const source = { pending: async () => pending } as unknown as ReadingSource;
    const tty: string[] = [];
    const stopTty = startProgress(source, {
      label: 'replay',
      tty: true,
      write: (t) => tty.push(t),
      now: () => clock,
      intervalMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 5));
    pending = 0;
    clock = 4_000;
    await stopTty();
    expect(tty[0]).toMatch(/^\rreplay \[\.+\] 0\.0% 0\/100 messages/);
    expect(tty.at(-1)).toMatch(/^\rreplay \[#+\] 100\.0% 100\/100 messages 25\/s ETA 0:00\n$/);

    pending = 10;
    clock = 0;
    const plain: string[] = [];
    const stopPlain = startProgress(source, {
      label: 'replay',
      tty: false,
      write: (t) => plain.push(t),
      now: () => clock,
      intervalMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 5));
    pending = 0;
    clock = 1_000;
    await stopPlain();
    expect(plain.every((l) => !l.includes('\r') && l.endsWith('\n'))).toBe(true);
    expect(plain.at(-1)).toBe('replay progress 100.0% (10/10 messages, 10 messages/s, ETA 0:00)\n');
  });
});
