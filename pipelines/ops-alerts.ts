/**
 * Operational alerts of the first seed's monitoring table: the ones about the worker rather than about a
 * meter, so they are raised in processing time by the runner's observer, not by an operator.
 *
 * | kind                   | condition                                   | severity |
 * |------------------------|---------------------------------------------|----------|
 * | quality_degradation    | average quality score of a checkpoint < 80  | warning  |
 * | backlog                | consumer lag > 1000 pending messages        | high     |
 * | transformation_failure | a sink still failing after its retries, or  | critical |
 * |                        | a stage of the graph throwing               |          |
 *
 * Quality and backlog alerts are raised when the condition starts and re-armed once it clears, so a
 * degraded hour gives one alert instead of one per checkpoint. They travel with the checkpoint's batch,
 * so they are stored in the `alerts` table and published like every other alert. A transformation failure
 * cannot count on the failing sink: it is published directly, before the worker stops without acking.
 */
import { StageError } from '../core/index.js';
import type { Alert } from '../schemas/reading.js';
import type { OutputBatch, RunObserver } from './runner.js';

export interface OpsAlertThresholds {
  /** A checkpoint batch whose readings average below this score raises `quality_degradation`. */
  readonly minAverageQuality: number;
  /** More pending messages than this raises `backlog`. */
  readonly maxPending: number;
}

/** The first seed's monitoring table. */
export const DEFAULT_OPS_ALERT_THRESHOLDS: OpsAlertThresholds = { minAverageQuality: 80, maxPending: 1000 };

/** Average quality score of a batch's readings, as the quality log computes it; undefined when empty. */
export function averageQuality(readings: OutputBatch['readings']): number | undefined {
  if (readings.length === 0) return undefined;
  let sum = 0;
  for (const r of readings) sum += r.qualityScore;
  return sum / readings.length;
}

export function qualityDegradationAlert(
  average: number | undefined,
  readings: number,
  checkpoint: number,
  thresholds: OpsAlertThresholds,
  now: number,
): Alert | undefined {
  if (average === undefined || !(average < thresholds.minAverageQuality)) return undefined;
  return {
    severity: 'warning',
    kind: 'quality_degradation',
    meterId: '',
    ts: now,
    message: `average quality score ${average.toFixed(1)} < ${thresholds.minAverageQuality} over ${readings} readings of checkpoint ${checkpoint}`,
  };
}

export function backlogAlert(
  pending: number | undefined,
  thresholds: OpsAlertThresholds,
  now: number,
): Alert | undefined {
  if (pending === undefined || !(pending > thresholds.maxPending)) return undefined;
  return {
    severity: 'high',
    kind: 'backlog',
    meterId: '',
    ts: now,
    message: `consumer lag ${pending} pending messages > ${thresholds.maxPending}`,
  };
}

export function transformationFailureAlert(error: unknown, checkpoint: number, now: number): Alert {
  const alert = { severity: 'critical', kind: 'transformation_failure', meterId: '', ts: now } as const;
  if (error instanceof StageError) {
    return {
      ...alert,
      message: `${error.message} in checkpoint ${checkpoint}; the worker stops without checkpointing past it`,
    };
  }
  const name = error instanceof Error ? error.name : 'Error';
  const reason = error instanceof Error ? error.message : String(error);
  return {
    ...alert,
    message: `checkpoint ${checkpoint} could not be written after retries (${name}: ${reason}); the worker stops without acknowledging it`,
  };
}

/** Edge-triggered state of the quality and backlog alerts of one worker. */
export class OpsAlertMonitor {
  private qualityDegraded = false;
  private backlogged = false;
  readonly thresholds: OpsAlertThresholds;

  constructor(thresholds: Partial<OpsAlertThresholds> = {}) {
    this.thresholds = { ...DEFAULT_OPS_ALERT_THRESHOLDS, ...thresholds };
  }

  /** Alerts for a checkpoint about to be written; an empty batch or an unknown lag leaves the state as is. */
  check(
    batch: Pick<OutputBatch, 'readings' | 'checkpoint'>,
    pending: number | undefined,
    now: number,
  ): Alert[] {
    const alerts: Alert[] = [];
    const average = averageQuality(batch.readings);
    if (average !== undefined) {
      const quality = qualityDegradationAlert(
        average,
        batch.readings.length,
        batch.checkpoint,
        this.thresholds,
        now,
      );
      if (quality !== undefined && !this.qualityDegraded) alerts.push(quality);
      this.qualityDegraded = quality !== undefined;
    }
    if (pending !== undefined) {
      const backlog = backlogAlert(pending, this.thresholds, now);
      if (backlog !== undefined && !this.backlogged) alerts.push(backlog);
      this.backlogged = backlog !== undefined;
    }
    return alerts;
  }
}

export interface OpsAlertsObserverOptions {
  readonly thresholds?: Partial<OpsAlertThresholds>;
  readonly now: () => number;
  /** Where a transformation failure is published (NATS alerts); without it the alert is only reported. */
  readonly publish?: (alerts: readonly Alert[]) => Promise<void>;
  /** Every alert raised outside a stored batch (a transformation failure), after publishing was tried. */
  readonly raisedOutsideBatch?: (alert: Alert, publishError: unknown) => void;
}

/** The runner observer raising the operational alerts. */
export function opsAlertsObserver(options: OpsAlertsObserverOptions): RunObserver {
  const monitor = new OpsAlertMonitor(options.thresholds);
  const raise = async (error: unknown, checkpoint: number): Promise<void> => {
    const alert = transformationFailureAlert(error, checkpoint, options.now());
    let publishError: unknown;
    try {
      await options.publish?.([alert]);
    } catch (err) {
      // The failure itself is what the worker stops with; a failed publish must not hide it.
      publishError = err;
    }
    options.raisedOutsideBatch?.(alert, publishError);
  };
  return {
    alertsFor: (batch, pending) => monitor.check(batch, pending, options.now()),
    sinkFailed: (error, batch) => raise(error, batch.checkpoint),
    // The stores still work, but the epoch's outputs are incomplete: the alert is published, not stored.
    graphFailed: (error, checkpoint) => raise(error, checkpoint),
  };
}
