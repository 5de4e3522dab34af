import { readFileSync } from 'node:fs';
import { exitCodeFor } from './exit-codes.js';

/** A CLI command: parses its own flags and returns an exit code; errors it cannot handle are thrown. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly run: (argv: string[]) => Promise<number>;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const commands: Command[] = [];

export function registerCommand(command: Command): void {
  commands.push(command);
}

/** Every registered command (the option-table test checks each has a table behind its help). */
export function registeredCommands(): readonly Command[] {
  return commands;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `greenstream ${version()} — streaming dataflow for smart-meter readings`,
    '',
    'Usage: greenstream <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `greenstream <command> --help` for the options of a command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  await import('./commands.js');
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`greenstream: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(
        `greenstream ${name}: ${redactUserInfo((err as Error).message)}\n\n${command.usage}\n`,
      );
      return 2;
    }
    process.stderr.write(
      `greenstream ${name}: ${redactUserInfo(err instanceof Error ? err.message : String(err))}\n`,
    );
    return exitCodeFor(err);
  }
}

/** Any `scheme://user:password@` in free text, whatever the scheme, with the user info replaced by `***`. */
export function redactUserInfo(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s/?#@"']*@/g, '$1***@');
}
