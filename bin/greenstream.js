#!/usr/bin/env node
// The CLI is written in TypeScript and compiled to dist/ by `npm install` (the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error(
    'greenstream: dist/ is missing; run `npm install` (or `npm run build`) in the project folder first.',
  );
  process.exit(2);
}
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2));
// After a failure, exit now: an embedded chDB (or a NATS connection) left open by the failed command
// would otherwise keep the process, and the chDB folder's lock, alive. stderr is written synchronously.
if (code !== 0) process.exit(code);
process.exitCode = code;
