import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { parseTime } from './options.js';
import { runJobCommand, runOptionSpecs } from './run.js';

export const replayTable = optionTable({
  command: 'replay',
  synopsis: [
    'Usage: greenstream replay --from TIME [--to TIME] [run options]',
    '  Reads the readings stream from TIME (ISO-8601) to TIME (default: its end when the replay starts)',
    '  through the same graph into the same sinks; rows already stored are replaced, not doubled.',
    '  Backdated readings are expected in a backfill and not flagged.',
  ],
  options: [
    {
      name: 'from',
      type: 'string',
      arg: 'time',
      env: 'GS_REPLAY_FROM',
      help: 'first event time (ISO-8601), required',
    },
    {
      name: 'to',
      type: 'string',
      arg: 'time',
      env: 'GS_REPLAY_TO',
      defaultText: 'the end of the stream when the replay starts',
      help: 'last event time (ISO-8601)',
    },
    ...runOptionSpecs,
  ],
});

export const replayCommand: Command = {
  name: 'replay',
  summary: 're-read the JetStream stream for a time range through the same graph (backfill)',
  usage: optionsHelp(replayTable),
  run: async (argv) => {
    const { values } = parseOptions(replayTable, argv);
    const fromText = values.from as string | undefined;
    if (fromText === undefined) throw new UsageError('--from is required');
    const from = parseTime(fromText, '--from');
    const to = values.to === undefined ? undefined : parseTime(values.to as string, '--to');
    if (to !== undefined && to < from) throw new UsageError('--to is before --from');
    return runJobCommand(values, to === undefined ? { from } : { from, to });
  },
};
