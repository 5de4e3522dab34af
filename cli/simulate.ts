/**
 * `greenstream simulate`: the option table of the simulator's command. Flags, environment variables and
 * the config file are resolved here; the simulator's own parser (`simulator/cli.ts`) then validates the
 * values as it always has, so the simulator stays usable without the CLI.
 */
import { runSimulateCommand } from '../simulator/index.js';
import type { Command } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';

export const simulateTable = optionTable({
  command: 'simulate',
  synopsis: [
    'Usage: greenstream simulate --out DIR [options]',
    '  Writes DIR/registry.csv, DIR/labels.json and DIR/raw/YYYY/MM/DD/HH/gw-XXXX.csv (15-minute readings,',
    '  one file per gateway and hour) and prints a JSON summary.',
  ],
  options: [
    { name: 'out', type: 'string', arg: 'dir', env: 'GS_SIMULATE_OUT', help: 'output folder (required)' },
    {
      name: 'meters',
      type: 'integer',
      min: 0,
      env: 'GS_SIMULATE_METERS',
      default: 1000,
      help: 'registered meters',
    },
    {
      name: 'days',
      type: 'integer',
      min: 0,
      env: 'GS_SIMULATE_DAYS',
      default: 7,
      help: 'whole days to simulate',
    },
    {
      name: 'start',
      type: 'string',
      arg: 'date',
      env: 'GS_SIMULATE_START',
      default: '2024-03-11',
      help: 'first day, UTC midnight',
    },
    {
      name: 'seed',
      type: 'integer',
      min: 0,
      env: 'GS_SIMULATE_SEED',
      default: 1,
      help: 'same seed, same bytes',
    },
    { name: 'gateway-size', type: 'integer', min: 0, default: 100, help: 'meters per gateway file' },
    {
      name: 'fault-rate',
      type: 'string',
      arg: 'F',
      default: '0.015',
      help: 'meters per fault kind as a fraction of all meters',
    },
    {
      name: 'anomaly-rate',
      type: 'string',
      arg: 'F',
      default: '0.01',
      help: 'meters per anomaly kind as a fraction of all meters',
    },
    { name: 'overwrite', type: 'boolean', help: 'replace the output of an earlier run in DIR' },
  ],
});

export const simulateCommand: Command = {
  name: 'simulate',
  summary: 'write simulated meter readings with labeled faults into a landing folder',
  usage: optionsHelp(simulateTable),
  run: (argv) => {
    const { values } = parseOptions(simulateTable, argv);
    const args: string[] = [];
    for (const spec of simulateTable.options) {
      const value = values[spec.name];
      if (spec.name === 'config' || value === undefined || value === false) continue;
      args.push(value === true ? `--${spec.name}` : `--${spec.name}=${value}`);
    }
    return runSimulateCommand(args);
  },
};
