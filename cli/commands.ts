import { checkCommand } from './check.js';
import { demoCommand } from './demo.js';
import { graphCommand } from './graph.js';
import { importCommand } from './import.js';
import { registerCommand } from './main.js';
import { publishCommand } from './publish.js';
import { replayCommand } from './replay.js';
import { reportCommand } from './report.js';
import { retentionCommand } from './retention.js';
import { runCommand } from './run.js';
import { simulateCommand } from './simulate.js';
import { sqlCommand } from './sql.js';

for (const command of [
  runCommand,
  checkCommand,
  reportCommand,
  retentionCommand,
  replayCommand,
  importCommand,
  simulateCommand,
  publishCommand,
  sqlCommand,
  graphCommand,
  demoCommand,
]) {
  registerCommand(command);
}
