/**
 * `greenstream simulate --meters N --days D --start DATE --seed S --out DIR`: writes a simulated
 * landing folder and prints a JSON summary. Exit codes: 0 done, 1 failed while writing, 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { SimulationOptionsError } from './options.js';
import { simulate } from './simulation.js';

export interface CommandOutput {
  write(chunk: string): unknown;
}

export interface CommandIo {
  stdout: CommandOutput;
  stderr: CommandOutput;
}

export const simulateUsage = `Usage: greenstream simulate --out DIR [options]

Writes DIR/registry.csv, DIR/labels.json and DIR/raw/YYYY/MM/DD/HH/gw-XXXX.csv
(15-minute readings, one file per gateway and hour) and prints a JSON summary.

Options:
  --out DIR              output folder (required)
  --meters N             registered meters (default 1000)
  --days D               whole days to simulate (default 7)
  --start DATE           first day, UTC midnight, e.g. 2024-03-11 (default 2024-03-11)
  --seed S               non-negative integer; same seed, same bytes (default 1)
  --gateway-size N       meters per gateway file (default 100)
  --fault-rate F         meters per fault kind as a fraction of all meters (default 0.015)
  --anomaly-rate F       meters per anomaly kind as a fraction of all meters (default 0.01)
  --overwrite            replace the output of an earlier run in DIR
  -h, --help             show this help
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function integerFlag(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--${name} must be a non-negative integer, got "${text}"`);
  }
  return Number(text);
}

function fractionFlag(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text))
    throw new UsageError(`--${name} must be a number such as 0.015, got "${text}"`);
  return Number(text);
}

export async function runSimulateCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`greenstream simulate: ${message}\n\n${simulateUsage}`);
    return 2;
  }
  if (parsed === 'help') {
    io.stdout.write(simulateUsage);
    return 0;
  }
  const started = performance.now();
  try {
    const summary = await simulate(parsed);
    const elapsedMs = Math.round(performance.now() - started);
    io.stdout.write(`${JSON.stringify({ ...summary, elapsedMs }, null, 2)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof SimulationOptionsError) {
      io.stderr.write(`greenstream simulate: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`greenstream simulate: failed: ${message}\n`);
    return 1;
  }
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      meters: { type: 'string' },
      days: { type: 'string' },
      start: { type: 'string' },
      seed: { type: 'string' },
      'gateway-size': { type: 'string' },
      'fault-rate': { type: 'string' },
      'anomaly-rate': { type: 'string' },
      overwrite: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help' as const;
  if (values.out === undefined || values.out === '') throw new UsageError('--out DIR is required');
  return {
    out: values.out,
    meters: integerFlag('meters', values.meters, 1000),
    days: integerFlag('days', values.days, 7),
    start: values.start ?? '2024-03-11',
    seed: integerFlag('seed', values.seed, 1),
    gatewaySize: integerFlag('gateway-size', values['gateway-size'], 100),
    faultRate: fractionFlag('fault-rate', values['fault-rate']),
    anomalyRate: fractionFlag('anomaly-rate', values['anomaly-rate']),
    overwrite: values.overwrite ?? false,
  };
}
