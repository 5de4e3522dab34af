/**
 * `greenstream poll`: runs the polling sources (Open-Meteo weather, ENTSO-E grid load) on the epoch
 * runner into the hot store, resuming each feed after the last period in its checkpoint; optionally loads
 * a grid maintenance file into `maintenance_windows` first.
 */
import { readFile } from 'node:fs/promises';
import type { GridArea } from '../codecs/entsoe-load.js';
import { parseMaintenanceCsv } from '../codecs/maintenance-windows.js';
import type { OpenMeteoPlace } from '../codecs/open-meteo.js';
import { openHotStore } from '../connectors/clickhouse.js';
import { insertModelRows } from '../connectors/model-tables.js';
import { fileCheckpointStore } from '../pipelines/checkpoints.js';
import type { CheckpointStore } from '../pipelines/contracts.js';
import {
  ENTSOE_API_URL,
  gridFeed,
  OPEN_METEO_ARCHIVE_URL,
  weatherFeed,
} from '../pipelines/external-feeds.js';
import { type PollTotals, runPollingJob } from '../pipelines/polling-job.js';
import { type PolledFeed, pollingSource } from '../pipelines/polling-source.js';
import { type Command, UsageError } from './main.js';
import { optionsHelp, optionTable, parseOptions } from './option-table.js';
import { hotStoreOptions, parseHotTarget } from './options.js';

interface PollConfig {
  readonly start: string;
  readonly weather?: { readonly url?: string; readonly places: readonly OpenMeteoPlace[] };
  readonly grid?: { readonly url?: string; readonly areas: readonly GridArea[] };
}

export const pollTable = optionTable({
  command: 'poll',
  synopsis: [
    'Usage: greenstream poll --feeds feeds.json [options]',
    '  feeds.json: {"start":"2024-07-01","weather":{"places":[{"city","region","latitude","longitude"}]},',
    '               "grid":{"areas":[{"eic","operator","region","capacityMw"}]}}; ENTSO-E token from $ENTSOE_TOKEN.',
  ],
  options: [
    {
      name: 'feeds',
      type: 'string',
      arg: 'feeds.json',
      env: 'GS_POLL_FEEDS',
      help: 'the feeds to poll and the first day (required)',
    },
    ...hotStoreOptions(),
    {
      name: 'checkpoint',
      type: 'string',
      arg: 'file',
      env: 'GS_POLL_CHECKPOINT',
      default: './data/poll-checkpoint.json',
      help: 'where each feed’s last polled period is kept',
    },
    {
      name: 'maintenance',
      type: 'string',
      arg: 'windows.csv',
      env: 'GS_POLL_MAINTENANCE',
      help: 'load these grid maintenance windows into maintenance_windows first',
    },
    {
      name: 'until-idle',
      type: 'boolean',
      env: 'GS_POLL_UNTIL_IDLE',
      help: 'stop once every feed has caught up, instead of polling on',
    },
  ],
});

export const pollCommand: Command = {
  name: 'poll',
  summary: 'poll the weather and grid-status sources into the hot store (resumes from its checkpoint)',
  usage: optionsHelp(pollTable),
  run: async (argv) => {
    const { values: v } = parseOptions(pollTable, argv);
    const values = {
      feeds: v.feeds as string | undefined,
      hot: v.hot as string,
      database: v.database as string | undefined,
      checkpoint: v.checkpoint as string,
      maintenance: v.maintenance as string | undefined,
      'until-idle': v['until-idle'] === true,
    };
    if (values.feeds === undefined) throw new UsageError('--feeds <feeds.json> is required');
    let config: PollConfig;
    try {
      config = JSON.parse(await readFile(values.feeds, 'utf8')) as PollConfig;
    } catch (err) {
      throw new UsageError(`cannot read --feeds ${values.feeds}: ${(err as Error).message}`);
    }
    const start = Date.parse(config.start);
    if (Number.isNaN(start))
      throw new UsageError(`the feeds file's "start" is not a date: ${JSON.stringify(config.start)}`);
    const feeds: PolledFeed[] = [
      ...(config.weather?.places ?? []).map((p) =>
        weatherFeed(p, start, config.weather?.url ?? OPEN_METEO_ARCHIVE_URL),
      ),
      ...(config.grid?.areas ?? []).map((a) =>
        gridFeed(a, start, process.env.ENTSOE_TOKEN ?? '', config.grid?.url ?? ENTSOE_API_URL),
      ),
    ];
    if (feeds.length === 0) throw new UsageError('the feeds file names no weather place and no grid area');
    const store = openHotStore(parseHotTarget(values.hot, process.env, values.database));
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await store.migrate();
      if (values.maintenance !== undefined) {
        const { windows, errors } = parseMaintenanceCsv(await readFile(values.maintenance, 'utf8'));
        for (const e of errors) process.stderr.write(`${values.maintenance}:${e.line}: ${e.reason}\n`);
        await insertModelRows(store, 'maintenance_windows', windows);
        process.stdout.write(`maintenance windows loaded: ${windows.length}\n`);
      }
      const totals = await runPollingJob({
        source: pollingSource({ feeds, http: { signal: abort.signal } }),
        store,
        // The file store writes whatever totals it is given; these are the polling job's.
        checkpoints: fileCheckpointStore(values.checkpoint) as unknown as CheckpointStore<PollTotals>,
        untilIdle: values['until-idle'],
        signal: abort.signal,
      });
      process.stdout.write(
        `weather rows: ${totals.weather}, grid rows: ${totals.grid}, dead-lettered pages: ${totals.deadLettered}\n`,
      );
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await store.close();
    }
    return 0;
  },
};
