import { demoCommand } from './demo.js';
import { graphCommand } from './graph.js';
import { registerCommand } from './main.js';
import { publishCommand } from './publish.js';
import { replayCommand } from './replay.js';
import { runCommand } from './run.js';
import { simulateCommand } from './simulate.js';
import { sqlCommand } from './sql.js';

for (const command of [
  runCommand,
  replayCommand,
  simulateCommand,
  publishCommand,
  sqlCommand,
  graphCommand,
  demoCommand,
]) {
  registerCommand(command);
}
