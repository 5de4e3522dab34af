/** The job's Prometheus metrics, fed by the runner's observer hooks. */
import type { HotStoreEvent } from '../connectors/clickhouse.js';
import type { GraphTopology, PipelineGraph, StageCounters } from '../core/index.js';
import type { JobObserver } from './job.js';
import { MetricsRegistry } from './metrics.js';

/** The stage whose output watermark is the graph's event-time progress. */
export const WATERMARK_STAGE = 'assignWatermarks';

/** Sink latency buckets, in seconds: from a small embedded insert to a store at the edge of its timeouts. */
export const SINK_WRITE_BUCKETS: readonly number[] = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** What `pipelineStatus` returns, served as `/pipeline.json`. */
export interface PipelineStatus {
  /** Processing time of the figures, epoch ms. */
  readonly at: number;
  readonly ready: boolean;
  readonly topology: GraphTopology | null;
  readonly stages: Readonly<Record<string, Omit<StageCounters, 'watermark'> & { watermark: number | null }>>;
  readonly recordsIn: number;
  readonly quarantined: number;
  readonly deadLettered: number;
  readonly consumerLag: number | null;
  readonly watermarkDelaySeconds: number | null;
  readonly checkpoints: number;
  readonly checkpointAgeSeconds: number | null;
  readonly sinkWrites: number;
  readonly sinkWriteMeanSeconds: number | null;
}

/**
 * The meter-quality job's Prometheus metrics and readiness, fed through its observer hooks. Stage counts
 * and the watermark are read from the graph at scrape time; everything else is counted as it happens
 * (outputs once written, so a batch that failed to write is never counted as stored).
 */
export class JobMetrics {
  readonly registry = new MetricsRegistry();
  readonly observer: JobObserver;
  private ready = false;
  private graph: PipelineGraph | undefined;

  private readonly stageElements = this.registry.counter<'stage' | 'output'>({
    name: 'greenstream_stage_elements_total',
    help: 'Elements per graph stage: output="in" received on the main input, "out" emitted on the main output, any other value routed to that tagged output.',
    labelNames: ['stage', 'output'],
  });
  private readonly recordsIn = this.registry.counter({
    name: 'greenstream_records_in_total',
    help: 'Records pulled from the source (decoded, or quarantined by the decoder).',
  });
  private readonly readingsStored = this.registry.counter<'status'>({
    name: 'greenstream_readings_stored_total',
    help: 'Reading rows written to the stores, by status (measured, interpolated, missing); a crash replays the epoch after the last checkpoint, whose rows the stores absorb but this counter counts again.',
    labelNames: ['status'],
  });
  private readonly quarantined = this.registry.counter({
    name: 'greenstream_quarantined_total',
    help: 'Records written to quarantine.',
  });
  private readonly deadLettered = this.registry.counter({
    name: 'greenstream_dead_lettered_total',
    help: 'Records in whole messages or files the source dead-lettered.',
  });
  private readonly consumerLag = this.registry.gauge({
    name: 'greenstream_consumer_lag',
    help: 'Messages waiting upstream for this worker, read at the last write of outputs (absent when the source cannot tell).',
  });
  private readonly watermarkDelay = this.registry.gauge({
    name: 'greenstream_watermark_delay_seconds',
    help: 'Processing time minus the event-time watermark of the graph (absent before the first watermark).',
  });
  private readonly sinkWrite = this.registry.histogram<'outcome'>({
    name: 'greenstream_sink_write_seconds',
    help: 'Wall time of writing one batch of outputs to all sinks (hot store, lake), by outcome (ok, error).',
    labelNames: ['outcome'],
    buckets: SINK_WRITE_BUCKETS,
  });
  private readonly writeWait = this.registry.counter({
    name: 'greenstream_sink_backpressure_seconds_total',
    help: 'Time the graph waited for the previous write of outputs to land before it could start the next.',
  });
  private readonly snapshotBytes = this.registry.gauge({
    name: 'greenstream_state_snapshot_chars',
    help: "Size of the last checkpoint's serialized state (JSON characters): grows with the meters held.",
  });
  private readonly snapshotSeconds = this.registry.gauge({
    name: 'greenstream_state_snapshot_seconds',
    help: 'Time the last checkpoint took to serialize the state (the graph pauses for it).',
  });
  private readonly checkpoints = this.registry.counter({
    name: 'greenstream_checkpoints_total',
    help: 'Checkpoints committed: outputs written, state saved, source acknowledged.',
  });
  private readonly lastCheckpoint = this.registry.gauge({
    name: 'greenstream_last_checkpoint_timestamp_seconds',
    help: 'Unix time of the last committed checkpoint.',
  });
  private readonly alerts = this.registry.counter<'severity' | 'kind'>({
    name: 'greenstream_alerts_total',
    help: 'Alerts raised: stored with committed checkpoints, or published alone when the sinks failed.',
    labelNames: ['severity', 'kind'],
  });

  private readonly sinkRetries = this.registry.counter<'operation'>({
    name: 'greenstream_sink_retries_total',
    help: 'Hot store requests that failed transiently and were retried, by operation (insert, query, command, migrate, connect).',
    labelNames: ['operation'],
  });
  private readonly sinkUp = this.registry.gauge({
    name: 'greenstream_sink_up',
    help: '1 while the hot store answers, 0 from its first failed attempt until a request succeeds again (the worker then waits, not ready).',
  });
  private sinkDown = false;

  constructor(private readonly now: () => number = Date.now) {
    this.sinkUp.set(undefined, 1);
    this.registry.addCollector(() => this.collectGraph());
    this.observer = {
      graph: (graph) => {
        this.graph = graph;
      },
      opened: () => {
        this.ready = true;
      },
      pulled: (batch) => this.recordsIn.inc(undefined, batch.records.length + batch.quarantined.length),
      consumerLag: (pending) => {
        if (pending === undefined) this.consumerLag.remove();
        else this.consumerLag.set(undefined, pending);
      },
      sinkWrite: (seconds, ok) => this.sinkWrite.observe({ outcome: ok ? 'ok' : 'error' }, seconds),
      sinkFailed: async () => {
        this.ready = false;
      },
      graphFailed: async () => {
        this.ready = false;
      },
      flushed: (batch) => {
        const byStatus = new Map<string, number>();
        for (const r of batch.readings) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
        for (const [status, n] of byStatus) this.readingsStored.inc({ status }, n);
        this.quarantined.inc(undefined, batch.quarantine.length);
        this.deadLettered.inc(undefined, batch.deadLettered);
        for (const a of batch.alerts) this.alerts.inc({ severity: a.severity, kind: a.kind });
      },
      writeWaited: (seconds) => this.writeWait.inc(undefined, seconds),
      snapshotted: (seconds, length) => {
        this.snapshotSeconds.set(undefined, seconds);
        this.snapshotBytes.set(undefined, length);
      },
      checkpointed: () => {
        this.checkpoints.inc();
        this.lastCheckpoint.set(undefined, this.now() / 1000);
      },
      alertRaised: (alert) => this.alerts.inc({ severity: alert.severity, kind: alert.kind }),
      stopped: () => {
        this.ready = false;
      },
    };
  }

  /**
   * Follows the hot store's own events: a retry means the store is down (not ready: the worker waits
   * for it and takes no work), a request that succeeds after retries means it is back.
   */
  hotStoreEvent(event: HotStoreEvent): void {
    if (event.type === 'retry') {
      this.sinkRetries.inc({ operation: event.operation });
      this.sinkDown = true;
      this.sinkUp.set(undefined, 0);
    } else if (event.type === 'recovered') {
      this.sinkDown = false;
      this.sinkUp.set(undefined, 1);
    }
  }

  /**
   * Ready once the stores are migrated and the source is open, while the hot store answers; not after
   * a fatal sink error or the end.
   */
  isReady(): boolean {
    return this.ready && !this.sinkDown;
  }

  /**
   * The running graph as the console draws it: its nodes and edges, each stage's counters, and the job's
   * lag, watermark delay, checkpoint age and write latency at this moment (absent figures are null).
   */
  pipelineStatus(): PipelineStatus {
    const stages = this.graph?.stageCounters() ?? {};
    const watermark = stages[WATERMARK_STAGE]?.watermark;
    const last = this.lastCheckpoint.get();
    const ok = this.sinkWrite.get({ outcome: 'ok' });
    const now = this.now();
    return {
      at: now,
      ready: this.ready,
      topology: this.graph?.topology() ?? null,
      stages: Object.fromEntries(
        Object.entries(stages).map(([name, c]) => [
          name,
          { ...c, watermark: Number.isFinite(c.watermark) ? c.watermark : null },
        ]),
      ),
      recordsIn: this.recordsIn.get(),
      quarantined: this.quarantined.get(),
      deadLettered: this.deadLettered.get(),
      consumerLag: this.consumerLag.get() ?? null,
      watermarkDelaySeconds:
        watermark !== undefined && Number.isFinite(watermark) ? (now - watermark) / 1000 : null,
      checkpoints: this.checkpoints.get(),
      checkpointAgeSeconds: last === undefined ? null : now / 1000 - last,
      sinkWrites: ok.count,
      sinkWriteMeanSeconds: ok.count === 0 ? null : ok.sum / ok.count,
    };
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    return this.registry.render();
  }

  private collectGraph(): void {
    if (this.graph === undefined) return;
    const stages = this.graph.stageCounters();
    for (const [stage, c] of Object.entries(stages)) {
      this.stageElements.set({ stage, output: 'in' }, c.in);
      this.stageElements.set({ stage, output: 'out' }, c.out);
      for (const [tag, n] of Object.entries(c.tagged)) this.stageElements.set({ stage, output: tag }, n);
    }
    const watermark = stages[WATERMARK_STAGE]?.watermark;
    if (watermark !== undefined && Number.isFinite(watermark))
      this.watermarkDelay.set(undefined, (this.now() - watermark) / 1000);
    else this.watermarkDelay.remove();
  }
}
