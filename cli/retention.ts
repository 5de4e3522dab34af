/**
 * `greenstream retention`: applies the retention policy to the hot store (TTL, or partition drops on
 * engines without TTL), the JetStream readings stream (`max_age`) and the Parquet lake, and prints what
 * it did, one JSON object per action. Run it daily (cron, a Kubernetes CronJob); it is idempotent.
 */
import { resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { openHotStore } from '../connectors/clickhouse.js';
import { connectNats } from '../connectors/jetstream.js';
import {
  applyHotRetention,
  applyLakeRetention,
  applyStreamRetention,
  DEFAULT_RETENTION,
  parseRetention,
  type RetentionAction,
  type RetentionPolicy,
} from '../connectors/retention.js';
import { type Command, UsageError } from './main.js';
import { natsConfigFrom } from './nats-source.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget } from './options.js';

const defaultPolicy = `validated=${DEFAULT_RETENTION.validated},errors=${DEFAULT_RETENTION.errors},raw=${DEFAULT_RETENTION.raw},cold=${DEFAULT_RETENTION.cold}`;

export const retentionTable = optionTable({
  command: 'retention',
  synopsis: [
    'Usage: greenstream retention [options]',
    '  Applies the retention policy: TTL on the hot tables where the engine has it, else drops of whole',
    '  monthly partitions past the policy (and a DELETE of old error-log rows); max_age of the READINGS',
    '  stream (with --nats); removal of lake month folders past the cold policy (with --cold).',
  ],
  options: [
    {
      name: 'retention-days',
      type: 'string',
      arg: 'class=days,…',
      default: defaultPolicy,
      help: 'days kept per table class: validated (readings, hourly_consumption, daily_peaks, faults, alerts; by event time), errors (quarantine, quality_log; by write time), raw (the JetStream stream), cold (the lake, by event month)',
    },
    ...hotStoreOptions(),
    { name: 'no-hot', type: 'boolean', env: 'GS_RETENTION_NO_HOT', help: 'leave the hot store alone' },
    {
      name: 'cold',
      type: 'string',
      arg: 'dir',
      env: 'GS_RETENTION_COLD',
      defaultText: 'none',
      help: 'the Parquet lake root to prune',
    },
    {
      name: 'nats',
      type: 'string',
      arg: 'url',
      env: 'NATS_URL',
      defaultText: 'none',
      help: 'set the READINGS stream max_age here',
    },
  ],
});

export const retentionCommand: Command = {
  name: 'retention',
  summary: 'apply the retention policy to the hot store, the JetStream stream and the lake',
  usage: optionsHelp(retentionTable),
  run: async (argv) => {
    const { values } = parseOptions(retentionTable, argv);
    let policy: RetentionPolicy;
    try {
      policy = parseRetention(values['retention-days'] as string);
    } catch (error) {
      throw new UsageError(`--retention-days ${(error as Error).message}`);
    }
    const actions: RetentionAction[] = [];
    if (values['no-hot'] !== true) {
      const store = openHotStore(
        parseHotTarget(values.hot as string, process.env, values.database as string | undefined),
      );
      try {
        actions.push(...(await applyHotRetention(store, policy)));
      } finally {
        await store.close();
      }
    }
    if (values.nats !== undefined) {
      const nc = await connectNats(natsConfigFrom(values.nats as string, process.env));
      try {
        actions.push(...(await applyStreamRetention(jetstream(nc), policy)));
      } finally {
        await nc.drain();
      }
    }
    if (values.cold !== undefined)
      actions.push(...(await applyLakeRetention(resolve(values.cold as string), policy)));
    for (const action of actions) process.stdout.write(`${JSON.stringify(action)}\n`);
    return 0;
  },
};
