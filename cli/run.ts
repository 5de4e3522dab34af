import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { publishAlert } from '../connectors/jetstream.js';
import { type MetricsServer, startMetricsServer } from '../connectors/metrics-server.js';
import { type JobConfig, runMeterQualityJob, type SourceConfig } from '../pipelines/job.js';
import { JobMetrics } from '../pipelines/job-metrics.js';
import { logger } from './log.js';
import { type Command, UsageError } from './main.js';
import { openNatsSource } from './nats-source.js';
import { loadProfile, parseHotTarget } from './options.js';
import { startProgress } from './progress.js';

export const runUsage = [
  'Usage: greenstream run [options]',
  '  --source <spec>      files:<landing dir> (default files:./data/landing) or nats://host:port ($NATS_URL)',
  '  --registry <file>    meter registry CSV (default ./data/landing/registry.csv)',
  '  --hot <spec>         chdb:<dir> (default chdb:./data/chdb) or http(s)://host:8123 ($CLICKHOUSE_URL;',
  '                       $CLICKHOUSE_USER / $CLICKHOUSE_PASSWORD)',
  '  --database <name>    ClickHouse database (default greenstream; $CLICKHOUSE_DATABASE)',
  '  --cold <dir>         Parquet lake root (default ./data/lake); --no-cold to skip the lake',
  '  --checkpoint <file>  checkpoint file for the files source (default ./data/checkpoint.json); the NATS',
  '                       source keeps its checkpoints in the KV bucket greenstream_checkpoints',
  '  --profile <json>     rule profile overrides (see README, "Rule profile")',
  '  --worker <id>        worker id (default w0): names its checkpoint, consumer and lake files',
  '  --partition <p>      own one partition subject readings.<p> ($GS_PARTITION); default all',
  '  --until-idle         stop once the source is drained and the final watermark fired its windows',
  '  --checkpoint-rows <n> checkpoint once this many output rows are buffered (default 200000; and at',
  '                       least every 5 s)',
  '  --metrics-port <n>   serve /metrics, /healthz, /readyz on this port ($GS_METRICS_PORT)',
].join('\n');

export const runCommand: Command = {
  name: 'run',
  summary: 'run the meter-quality pipeline (embedded by default, or on NATS + ClickHouse)',
  usage: runUsage,
  run: (argv) => runJobCommand(argv, undefined),
};

/** `run` and `replay` share everything but the source's start and the replay flag. */
export async function runJobCommand(
  argv: string[],
  replay: { readonly from: Date; readonly to?: Date } | undefined,
): Promise<number> {
  {
    const { values } = parseArgs({
      args: argv,
      options: {
        source: { type: 'string' },
        registry: { type: 'string', default: './data/landing/registry.csv' },
        hot: { type: 'string' },
        database: { type: 'string' },
        cold: { type: 'string', default: './data/lake' },
        'no-cold': { type: 'boolean', default: false },
        checkpoint: { type: 'string', default: './data/checkpoint.json' },
        profile: { type: 'string' },
        worker: { type: 'string', default: 'w0' },
        'until-idle': { type: 'boolean', default: false },
        'checkpoint-rows': { type: 'string' },
        'metrics-port': { type: 'string' },
        partition: { type: 'string', default: process.env.GS_PARTITION },
      },
    });
    const replayRange = replay;
    const spec = values.source ?? process.env.NATS_URL ?? 'files:./data/landing';
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (!/^[A-Za-z0-9_]+$/.test(values.worker!))
      throw new UsageError('--worker may hold letters, digits and _ only');
    const checkpointRows =
      values['checkpoint-rows'] === undefined ? undefined : Number(values['checkpoint-rows']);
    if (checkpointRows !== undefined && !(Number.isInteger(checkpointRows) && checkpointRows > 0)) {
      throw new UsageError(
        `--checkpoint-rows must be a positive integer, got "${values['checkpoint-rows']}"`,
      );
    }
    const metricsPortText = values['metrics-port'] ?? process.env.GS_METRICS_PORT;
    const metricsPort = metricsPortText === undefined ? undefined : Number(metricsPortText);
    if (
      metricsPort !== undefined &&
      !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort < 65536)
    )
      throw new UsageError(`--metrics-port must be a port number, got "${metricsPortText}"`);
    const metrics = metricsPort === undefined ? undefined : new JobMetrics();
    let source: SourceConfig;
    let nc: NatsConnection | undefined;
    let stopProgress: (() => Promise<void>) | undefined;
    if (spec.startsWith('files:')) {
      if (replay !== undefined)
        throw new UsageError(
          'replay reads the JetStream stream: give --source nats://host:port or $NATS_URL',
        );
      source = { kind: 'files', root: resolve(spec.slice('files:'.length)) };
    } else if (spec.startsWith('nats://') || spec.startsWith('tls://')) {
      const partition = values.partition === undefined ? undefined : Number(values.partition);
      if (partition !== undefined && !(Number.isInteger(partition) && partition >= 0)) {
        throw new UsageError(`--partition must be a partition number, got "${values.partition}"`);
      }
      const opened = await openNatsSource({
        url: spec,
        workerId: values.worker!,
        env: process.env,
        ...(partition === undefined ? {} : { partition }),
        ...(replayRange === undefined ? {} : { replay: replayRange }),
      });
      source = opened.config;
      if (replay !== undefined && opened.config.kind === 'custom') {
        stopProgress = startProgress(opened.config.source, {
          label: 'replay',
          tty: process.stderr.isTTY === true,
          write: (text) => process.stderr.write(text),
        });
      }
      nc = opened.nc;
    } else {
      throw new UsageError(`--source must be files:<dir> or nats://host:port, got "${spec}"`);
    }
    const config: JobConfig = {
      source,
      registryPath: resolve(values.registry!),
      hot: parseHotTarget(values.hot, process.env, values.database ?? process.env.CLICKHOUSE_DATABASE),
      ...(values['no-cold'] ? {} : { coldDir: resolve(values.cold!) }),
      checkpointPath: resolve(values.checkpoint!),
      // A replay ends where the stream ended when it started.
      untilIdle: values['until-idle']! || replay !== undefined,
      replay: replay !== undefined,
      profile: loadProfile(values.profile),
      // Replays write their own lake files, so they never overwrite the live worker's.
      workerId: replay === undefined ? values.worker! : `${values.worker!}_replay${replay.from.getTime()}`,
      signal: abort.signal,
      ...(checkpointRows === undefined ? {} : { checkpointRows }),
      ...(metrics === undefined ? {} : { observer: metrics.observer }),
      ...(nc === undefined
        ? {}
        : {
            publishAlerts: async (alerts) => {
              for (const alert of alerts) await publishAlert(nc, alert);
            },
          }),
      onCheckpoint: (cp, batch) =>
        logger.info('checkpoint', {
          seq: cp.seq,
          readings: batch.readings.length,
          quarantined: batch.quarantine.length,
          faults: batch.faults.length,
          alerts: batch.alerts.length,
        }),
    };
    let metricsServer: MetricsServer | undefined;
    try {
      if (metrics !== undefined && metricsPort !== undefined) {
        metricsServer = await startMetricsServer({
          port: metricsPort,
          render: () => metrics.render(),
          ready: () => metrics.isReady(),
        });
        logger.info('serving metrics', { url: `${metricsServer.url}/metrics` });
      }
      const { totals, hot, lake } = await runMeterQualityJob(config);
      await lake?.close();
      await hot.close();
      logger.info('stopped', { ...totals });
      process.stdout.write(`${JSON.stringify(totals)}\n`);
    } finally {
      await stopProgress?.();
      await metricsServer?.close();
      await nc?.drain();
    }
    return 0;
  }
}
