import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runSimulateCommand } from '../../simulator/index.js';

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  };
}

describe('greenstream simulate', () => {
  const roots: string[] = [];
  const tempOut = () => {
    const root = mkdtempSync(join(tmpdir(), 'gs-sim-cli-'));
    roots.push(root);
    return join(root, 'landing');
  };
  afterAll(() => {
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  });

  it('writes the landing folder and prints a JSON summary', async () => {
    const out = tempOut();
    const cap = captureIo();
    const code = await runSimulateCommand(
      ['--meters', '60', '--days', '1', '--start', '2024-03-11', '--seed', '9', '--out', out],
      cap.io,
    );
    expect(code).toBe(0);
    const summary = JSON.parse(cap.stdout());
    expect(summary).toMatchObject({
      out,
      meters: 60,
      days: 1,
      seed: 9,
      files: 24,
      expectedReadings: 60 * 96,
    });
    expect(summary.lines).toBeGreaterThan(60 * 96 * 0.75); // a third of the meters read every 30 minutes
    expect(summary.elapsedMs).toBeGreaterThanOrEqual(0);
    expect(readFileSync(join(out, 'registry.csv'), 'utf8').split('\n')).toHaveLength(62);
    expect(JSON.parse(readFileSync(join(out, 'labels.json'), 'utf8')).format).toBe(
      'greenstream-simulator-labels/1',
    );
    expect(existsSync(join(out, 'raw/2024/03/11/23/gw-0001.csv'))).toBe(true);
  });

  it('refuses to mix runs in one folder unless told to overwrite', async () => {
    const out = tempOut();
    const args = ['--meters', '30', '--days', '1', '--out', out];
    expect(await runSimulateCommand(args, captureIo().io)).toBe(0);
    const again = captureIo();
    expect(await runSimulateCommand(args, again.io)).toBe(2);
    expect(again.stderr()).toMatch(/already holds .*registry\.csv/);
    expect(await runSimulateCommand([...args, '--overwrite', '--seed', '2'], captureIo().io)).toBe(0);
  });

  it.each([
    [['--meters', '10'], /--out DIR is required/],
    [['--out', 'x', '--meters', 'ten'], /--meters must be a non-negative integer, got "ten"/],
    [['--out', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['--out', 'x', '--start', '2024-03-11T06:00:00Z'], /start: must fall on a UTC midnight/],
    [['--out', 'x', '--start', '2024-02-30'], /start: is not a calendar date/],
    [['--out', 'x', '--meters', '0'], /meters: must be an integer from 1/],
    [['--out', 'x', '--fault-rate=-1'], /--fault-rate must be a number such as 0.015, got "-1"/],
    [['--out', 'x', '--fault-rate', '0.5'], /faultRate: must be a number from 0 to 0.1/],
    [['--out', 'x', 'extra'], /Unexpected argument 'extra'/],
  ])('rejects %j with a clear message and exit code 2', async (args, message) => {
    const cap = captureIo();
    expect(await runSimulateCommand(args, cap.io)).toBe(2);
    expect(cap.stderr()).toMatch(message);
    expect(cap.stdout()).toBe('');
  });

  it('prints usage for --help', async () => {
    const cap = captureIo();
    expect(await runSimulateCommand(['--help'], cap.io)).toBe(0);
    expect(cap.stdout()).toMatch(/^Usage: greenstream simulate --out DIR/);
  });
});
