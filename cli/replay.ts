import { type Command, UsageError } from './main.js';
import { parseTime } from './options.js';
import { runJobCommand, runUsage } from './run.js';

export const replayCommand: Command = {
  name: 'replay',
  summary: 're-read the JetStream stream for a time range through the same graph (backfill)',
  usage: [
    'Usage: greenstream replay --from TIME [--to TIME] [run options]',
    '  Reads the readings stream from TIME (ISO-8601) to TIME (default: its end when the replay starts)',
    '  through the same graph into the same sinks; rows already stored are replaced, not doubled.',
    '  Backdated readings are expected in a backfill and not flagged.',
    '',
    runUsage,
  ].join('\n'),
  run: async (argv) => {
    const rest: string[] = [];
    let from: Date | undefined;
    let to: Date | undefined;
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--from' || arg === '--to') {
        const value = argv[++i];
        if (value === undefined) throw new UsageError(`${arg} needs a time`);
        if (arg === '--from') from = parseTime(value, '--from');
        else to = parseTime(value, '--to');
      } else rest.push(arg);
    }
    if (from === undefined) throw new UsageError('--from is required');
    if (to !== undefined && to < from) throw new UsageError('--to is before --from');
    return runJobCommand(rest, to === undefined ? { from } : { from, to });
  },
};
