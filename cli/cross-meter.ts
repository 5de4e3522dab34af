/** `greenstream run --stage cross-meter`: the cross-meter stage over the repartition stream, as a process. */
import { resolve } from 'node:path';
import type { HotStoreTarget } from '../connectors/clickhouse.js';
import { publishAlert } from '../connectors/jetstream.js';
import { acquireKvLease, leaseKey } from '../connectors/jetstream-lease.js';
import { describeHolder, FencedError, type Lease } from '../connectors/lease.js';
import { type MetricsServer, startMetricsServer } from '../connectors/metrics-server.js';
import { runCrossMeterJob } from '../pipelines/cross-meter-job.js';
import { JobMetrics } from '../pipelines/job-metrics.js';
import { CheckpointStoreMismatchError } from '../pipelines/store-identity.js';
import { exitCodeFor } from './exit-codes.js';
import { logger } from './log.js';
import { UsageError } from './main.js';
import { openRepartitionSource } from './nats-source.js';
import { loadProfile } from './options.js';
import { allPartitions } from './run.js';

export interface CrossMeterSettings {
  readonly spec: string;
  readonly values: {
    readonly registry?: string | undefined;
    readonly cold?: string | undefined;
    readonly 'no-cold'?: boolean | undefined;
    readonly profile?: string | undefined;
    readonly worker?: string | undefined;
    readonly 'until-idle'?: boolean | undefined;
    readonly takeover?: boolean | undefined;
    readonly 'reset-checkpoint'?: boolean | undefined;
    readonly 'no-manage-streams'?: boolean | undefined;
    readonly 'upstream-partitions'?: string | undefined;
    readonly partitions?: string | undefined;
    readonly partition?: string | undefined;
  };
  readonly hot: HotStoreTarget;
  readonly leaseMs: number;
  readonly cadence: {
    readonly flushIntervalMs: number | undefined;
    readonly checkpointIntervalMs: number | undefined;
    readonly checkpointEveryFlushes: number | undefined;
  };
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  readonly signal: AbortSignal;
  readonly replicas: number;
  /** `--source-outage`, ms (see `NatsSourceSettings.sourceOutageMs`). */
  readonly sourceOutageMs?: number | undefined;
}

/** Runs the stage until the signal aborts (or, with `--until-idle`, every upstream's bounded run ended). */
export async function runCrossMeterStage(settings: CrossMeterSettings): Promise<number> {
  const { values, spec } = settings;
  if (!(spec.startsWith('nats://') || spec.startsWith('tls://')))
    throw new UsageError('--stage cross-meter reads the repartition stream: give --source nats://host:port');
  if (values.partitions !== undefined || values.partition !== undefined)
    throw new UsageError('--stage cross-meter takes --upstream-partitions, not --partitions');
  const partitions = allPartitions(process.env, values['upstream-partitions']);
  const workerId = values.worker!;
  const untilIdle = values['until-idle'] === true;
  const opened = await openRepartitionSource({
    url: spec,
    workerId,
    env: process.env,
    replicas: settings.replicas,
    manageStreams: values['no-manage-streams'] !== true,
    partitions,
    untilIdle,
    ...(settings.sourceOutageMs === undefined ? {} : { sourceOutageMs: settings.sourceOutageMs }),
  });
  const nc = opened.nc;
  let lease: Lease | undefined;
  let metricsServer: MetricsServer | undefined;
  const metrics = new JobMetrics();
  try {
    lease = await acquireKvLease(opened.kv, leaseKey(opened.checkpointKey), {
      ttlMs: settings.leaseMs,
      takeover: values.takeover === true,
      signal: settings.signal,
      onWait: (holder, epoch, ttlMs) =>
        logger.warn('waiting for worker lease', {
          lease: leaseKey(opened.checkpointKey),
          holder: describeHolder(holder),
          epoch,
          leaseMs: ttlMs,
        }),
    });
    logger.info('worker lease acquired', { lease: lease.name, epoch: lease.epoch, stage: 'cross-meter' });
    if (settings.metricsPort !== undefined) {
      metricsServer = await startMetricsServer({
        port: settings.metricsPort,
        host: settings.metricsHost,
        render: () => metrics.render(),
        ready: () => metrics.isReady(),
      });
      logger.info('serving metrics', { url: `${metricsServer.url}/metrics` });
    }
    const { pulled: _perMeterOnly, alertsFor: _alerts, ...observer } = metrics.observer;
    const result = await runCrossMeterJob({
      source: opened.source,
      checkpoints: opened.checkpoints,
      checkpointName: opened.checkpointName,
      registryPath: resolve(values.registry ?? './data/landing/registry.csv'),
      hot: settings.hot,
      ...(values['no-cold'] === true ? {} : { coldDir: resolve(values.cold ?? './data/lake') }),
      lease,
      profile: loadProfile(values.profile),
      partitions,
      workerId,
      untilIdle,
      resetCheckpoint: values['reset-checkpoint'] === true,
      ...(settings.cadence.flushIntervalMs === undefined
        ? {}
        : { flushIntervalMs: settings.cadence.flushIntervalMs }),
      ...(settings.cadence.checkpointIntervalMs === undefined
        ? {}
        : { checkpointIntervalMs: settings.cadence.checkpointIntervalMs }),
      ...(settings.cadence.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: settings.cadence.checkpointEveryFlushes }),
      signal: settings.signal,
      observer,
      publishAlerts: async (alerts) => {
        for (const alert of alerts) await publishAlert(nc, alert);
      },
      onExclusionInputError: (table, error) =>
        logger.warn('peak exclusions: read failed, keeping the last lookup', {
          table,
          error: error instanceof Error ? error.message : String(error),
        }),
      onCheckpoint: (cp) =>
        logger.info('checkpoint', { seq: cp.seq, faults: cp.totals.faults, alerts: cp.totals.alerts }),
    });
    await result.lake?.close();
    await result.hot.close();
    logger.info('stopped', { ...result.totals });
    process.stdout.write(`${JSON.stringify(result.totals)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof FencedError || err instanceof CheckpointStoreMismatchError) {
      logger.error(err.name, err.context);
      process.stderr.write(`greenstream run: ${err.message}\n`);
      return exitCodeFor(err);
    }
    throw err;
  } finally {
    await lease?.release();
    await metricsServer?.close();
    await nc.drain();
  }
}
