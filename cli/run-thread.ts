/**
 * A graph thread of `run --threads N` (the module a `worker_threads` Worker runs): pulls and decodes its
 * own partitions from JetStream, runs the per-meter graph on them, and hands every write, seal and
 * checkpoint to the main thread (`pipelines/threaded-job.ts`), which owns the stores and the stages across
 * meters. It must not load chDB or DuckDB (one instance per process, on the main thread): nothing it
 * imports opens a store. It ends when drained (`--until-idle`) or asked to stop, and reports a failure with its class.
 */

import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import type { NatsConnection } from '@nats-io/transport-node';
import { BehaviorSubject } from 'rxjs';
import { publishAlert } from '../connectors/jetstream.js';
import { ConfigurationError, SideInput, StateStore } from '../core/index.js';
import type { Lineage, MeterRegistry } from '../operators/outputs.js';
import { parseRegistryCsv } from '../operators/registry.js';
import type { RuleProfile } from '../operators/rule-profile.js';
import {
  METER_QUALITY_RESTORES_STATE_FORMATS,
  METER_QUALITY_STATE_FORMAT,
  meterQualityGraph,
} from '../pipelines/meter-quality.js';
import { opsAlertsObserver } from '../pipelines/ops-alerts.js';
import { type ReadingSource, runPipeline } from '../pipelines/runner.js';
import { stageFaultFromEnv } from '../pipelines/stage-fault.js';
import {
  checkpointProxy,
  type MainMessage,
  serializeError,
  sinkProxy,
  type ThreadMessage,
  ThreadRequester,
} from '../pipelines/thread-protocol.js';
import type { ThreadPlan } from '../pipelines/threaded-job.js';
import type { Alert } from '../schemas/reading.js';
import { bindLogger, logger } from './log.js';
import { openNatsSource } from './nats-source.js';

/** What the main thread gives a graph thread (`workerData`): structured-clonable settings. */
export interface ThreadSettings {
  readonly plan: ThreadPlan;
  readonly url: string;
  readonly registryPath: string;
  readonly profile: RuleProfile;
  readonly untilIdle: boolean;
  /** The job's `PIPELINE_VERSION` (lineage of every row). */
  readonly pipelineVersion: string;
  readonly pullMessages?: number;
  readonly sourceOutageMs?: number;
  readonly maxMemoryBytes?: number;
  readonly flushRows: number;
  readonly flushIntervalMs: number;
  readonly checkpointIntervalMs: number;
  readonly checkpointEveryFlushes?: number;
}

/**
 * The meter registry, parsed here: the main thread read and checked the same file before starting the
 * threads. (`loadRegistry` lives beside the stores, whose native modules must stay off this thread.)
 */
async function registryOf(path: string): Promise<MeterRegistry> {
  const { registry, errors } = parseRegistryCsv(await readFile(path, 'utf8'));
  if (errors.length > 0)
    throw new ConfigurationError(`meter registry ${path} has ${errors.length} bad line(s)`, {
      context: { path },
    });
  return registry;
}

async function runThread(settings: ThreadSettings): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('run-thread.js runs in a worker thread of greenstream run --threads');
  const { plan } = settings;
  bindLogger({ worker: plan.id, partitions: plan.partitions.join(',') });
  const requester = new ThreadRequester(port);
  const stop = new AbortController();
  port.on('message', (message: MainMessage) => {
    if (message.type === 'reply') requester.answer(message);
    else if (message.type === 'stop') stop.abort();
  });
  let nc: NatsConnection | undefined;
  let ended: ThreadMessage;
  try {
    const opened = await openNatsSource({
      url: settings.url,
      workerId: plan.id,
      partitions: plan.partitions,
      ...(settings.pullMessages === undefined ? {} : { pullMessages: settings.pullMessages }),
      ...(settings.sourceOutageMs === undefined ? {} : { sourceOutageMs: settings.sourceOutageMs }),
      ...(settings.maxMemoryBytes === undefined ? {} : { maxMemoryBytes: settings.maxMemoryBytes }),
      env: process.env,
      // The main thread created (or checked) the streams before starting the threads.
      manageStreams: false,
    });
    nc = opened.nc;
    const connection = nc;
    if (opened.config.kind !== 'custom') throw new Error('the NATS source is a custom source');
    const source = reportingEmpty(opened.config.source, settings.untilIdle, () =>
      port.postMessage({ type: 'empty' }),
    );
    const registrySubject = new BehaviorSubject<MeterRegistry>(await registryOf(settings.registryPath));
    const store = new StateStore();
    let batchTime = Date.now();
    const lineage: Lineage = { pipelineVersion: settings.pipelineVersion, processedAt: () => batchTime };
    const fault = stageFaultFromEnv(process.env);
    const { connect } = meterQualityGraph({
      profile: settings.profile,
      registry: new SideInput<MeterRegistry>('registry', registrySubject),
      store,
      lineage,
      replay: false,
      finalWatermark: (max) => max + settings.profile.gaps.defaultIntervalMs,
      finalStepMs: settings.profile.gaps.defaultIntervalMs,
      ...(settings.untilIdle ? {} : { idleTimeoutMs: 30_000 }),
      ...(fault === undefined ? {} : { fault }),
      crossMeter: false,
    });
    const publishAlerts = async (alerts: readonly Alert[]) => {
      for (const alert of alerts) await publishAlert(connection, alert);
    };
    const totals = await runPipeline({
      source,
      beforePull: () => {
        batchTime = Date.now();
      },
      sinks: sinkProxy(requester),
      checkpoints: checkpointProxy(requester, source.name),
      store,
      connect,
      stateFormat: METER_QUALITY_STATE_FORMAT,
      restoresStateFormats: METER_QUALITY_RESTORES_STATE_FORMATS,
      untilIdle: settings.untilIdle,
      flushRows: settings.flushRows,
      flushIntervalMs: settings.flushIntervalMs,
      checkpointIntervalMs: settings.checkpointIntervalMs,
      ...(settings.checkpointEveryFlushes === undefined
        ? {}
        : { checkpointEveryFlushes: settings.checkpointEveryFlushes }),
      idlePollMs: 500,
      // The hourly watermark alone is worth a write: the stage across meters waits for it.
      writesWatermark: true,
      now: Date.now,
      signal: stop.signal,
      observer: opsAlertsObserver({
        now: Date.now,
        publish: publishAlerts,
        raisedOutsideBatch: (alert, publishError) =>
          logger.error('alert', { ...alert, published: publishError === undefined }),
      }),
    });
    ended = { type: 'done', totals, drained: !stop.signal.aborted };
  } catch (error) {
    ended = { type: 'failed', error: serializeError(error) };
  } finally {
    await nc?.drain().catch(() => undefined);
  }
  // The last message: the main thread ends the thread once it has it.
  port.postMessage(ended);
}

/** The source, telling once when a live run caught up before reading any record. */
function reportingEmpty(source: ReadingSource, untilIdle: boolean, report: () => void): ReadingSource {
  if (untilIdle) return source;
  let records = 0;
  let reported = false;
  return {
    ...source,
    name: source.name,
    open: (position) => source.open(position),
    position: () => source.position(),
    commit: () => source.commit(),
    close: () => source.close(),
    ...(source.pending === undefined ? {} : { pending: () => source.pending!() }),
    async next() {
      const next = await source.next();
      if (typeof next === 'object') records += next.records.length + next.deadLettered;
      else if (next === 'idle' && records === 0 && !reported) {
        reported = true;
        report();
      }
      return next;
    },
  };
}

await runThread(workerData as ThreadSettings);
