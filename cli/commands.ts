import { checkCommand } from './check.js';
import { consoleCommand } from './console.js';
import { demoCommand } from './demo.js';
import { dlqCommand } from './dlq.js';
import { expectCommand } from './expect.js';
import { graphCommand } from './graph.js';
import { importCommand } from './import.js';
import { registerCommand } from './main.js';
import { pollCommand } from './poll.js';
import { publishCommand } from './publish.js';
import { replayCommand } from './replay.js';
import { reportCommand } from './report.js';
import { retentionCommand } from './retention.js';
import { reviewCommand } from './review.js';
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
  consoleCommand,
  reviewCommand,
  dlqCommand,
  expectCommand,
  pollCommand,
]) {
  registerCommand(command);
}
