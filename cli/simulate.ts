import { runSimulateCommand, simulateUsage } from '../simulator/index.js';
import type { Command } from './main.js';

export const simulateCommand: Command = {
  name: 'simulate',
  summary: 'write simulated meter readings with labeled faults into a landing folder',
  usage: simulateUsage.trimEnd(),
  run: (argv) => runSimulateCommand(argv),
};
