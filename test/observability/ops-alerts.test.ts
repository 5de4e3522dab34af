import { map, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { StateStore } from '../../core/index.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import {
  backlogAlert,
  DEFAULT_OPS_ALERT_THRESHOLDS,
  OpsAlertMonitor,
  opsAlertsObserver,
  qualityDegradationAlert,
  transformationFailureAlert,
} from '../../pipelines/ops-alerts.js';
import { combineObservers } from '../../pipelines/run-observers.js';
import {
  type Checkpoint,
  type OutputBatch,
  type ReadingSource,
  runPipeline,
  type SourceBatch,
} from '../../pipelines/runner.js';
import type { Alert, RawReading, Reading } from '../../schemas/reading.js';

const NOW = Date.UTC(2024, 2, 12, 8, 0, 0);

/** Readings carrying only what the alert logic reads. */
const readingsScoring = (...scores: number[]): Reading[] =>
  scores.map((qualityScore) => ({ status: 'measured', qualityScore }) as Reading);

describe('operational alert rules (first seed monitoring table)', () => {
  it('uses the seed thresholds by default: average quality < 80, more than 1000 pending', () => {
    expect(DEFAULT_OPS_ALERT_THRESHOLDS).toEqual({ minAverageQuality: 80, maxPending: 1000 });
  });

  it('raises quality degradation as a warning strictly below the threshold', () => {
    const t = DEFAULT_OPS_ALERT_THRESHOLDS;
    expect(qualityDegradationAlert(80, 10, 3, t, NOW)).toBeUndefined();
    expect(qualityDegradationAlert(undefined, 0, 3, t, NOW)).toBeUndefined();
    const alert = qualityDegradationAlert(79.95, 10, 3, t, NOW);
    expect(alert).toMatchObject({ severity: 'warning', kind: 'quality_degradation', meterId: '', ts: NOW });
    expect(alert?.message).toContain('checkpoint 3');
  });

  it('raises backlog as high strictly above the threshold, never on an unknown lag', () => {
    const t = DEFAULT_OPS_ALERT_THRESHOLDS;
    expect(backlogAlert(1000, t, NOW)).toBeUndefined();
    expect(backlogAlert(undefined, t, NOW)).toBeUndefined();
    expect(backlogAlert(1001, t, NOW)).toMatchObject({ severity: 'high', kind: 'backlog', ts: NOW });
  });

  it('makes transformation failures critical and names the error', () => {
    const alert = transformationFailureAlert(new TypeError('insert refused'), 12, NOW);
    expect(alert).toMatchObject({ severity: 'critical', kind: 'transformation_failure', ts: NOW });
    expect(alert.message).toContain('TypeError: insert refused');
    expect(alert.message).toContain('checkpoint 12');
  });

  it('alerts when a condition starts, stays quiet while it lasts, re-arms once it clears', () => {
    const monitor = new OpsAlertMonitor();
    const kinds = (readings: Reading[], pending: number | undefined) =>
      monitor.check({ readings, checkpoint: 1 }, pending, NOW).map((a) => a.kind);
    expect(kinds(readingsScoring(100, 40), 2000)).toEqual(['quality_degradation', 'backlog']); // 70, lag
    expect(kinds(readingsScoring(60), 1500)).toEqual([]); // still degraded, still behind
    expect(kinds([], undefined)).toEqual([]); // nothing known: state kept
    expect(kinds(readingsScoring(50), 3000)).toEqual([]);
    expect(kinds(readingsScoring(90, 80), 10)).toEqual([]); // both cleared
    expect(kinds(readingsScoring(10), 1001)).toEqual(['quality_degradation', 'backlog']);
  });

  it('takes configured thresholds', () => {
    const monitor = new OpsAlertMonitor({ minAverageQuality: 95, maxPending: 10 });
    const alerts = monitor.check({ readings: readingsScoring(90), checkpoint: 1 }, 11, NOW);
    expect(alerts.map((a) => [a.severity, a.kind])).toEqual([
      ['warning', 'quality_degradation'],
      ['high', 'backlog'],
    ]);
  });
});

/** A bounded source over prepared pulls; each record's `value` is the quality score its reading gets. */
function scriptedSource(pulls: SourceBatch[], pending: number | undefined, log: string[]): ReadingSource {
  let i = 0;
  return {
    name: 'scripted',
    open: async () => {},
    next: async () => (i < pulls.length ? pulls[i++]! : 'end'),
    position: () => i,
    commit: async () => {
      log.push('commit');
    },
    ...(pending === undefined ? {} : { pending: async () => pending }),
    close: async () => {
      log.push('close');
    },
  };
}

const pull = (...scores: number[]): SourceBatch => ({
  records: scores.map((s) => ({ value: String(s) }) as RawReading),
  quarantined: [],
  deadLettered: 0,
});

/** Each raw record becomes a reading scored by its value: enough graph for the runner's hooks. */
const scoringGraph =
  () =>
  (
    input: Observable<import('../../core/index.js').FlowEvent<RawReading>>,
    sink: { readings(b: Reading[]): void },
  ) =>
    input.pipe(
      map((e) => {
        if (e.kind === 'data') sink.readings(readingsScoring(...e.items.map((r) => Number(r.value))));
      }),
    );

describe('operational alerts in a run', () => {
  it('stores quality and backlog alerts with the checkpoint batch and counts them in the metrics', async () => {
    const log: string[] = [];
    const written: OutputBatch[] = [];
    const metrics = new JobMetrics(() => NOW);
    await runPipeline({
      source: scriptedSource([pull(50, 60), pull(95, 99)], 4200, log),
      sinks: {
        rollback: async () => {},
        write: async (b) => {
          written.push(b);
        },
      },
      checkpoints: { load: async () => undefined, save: async () => {} },
      store: new StateStore(),
      connect: scoringGraph(),
      untilIdle: true,
      flushRows: 2, // one write and one checkpoint per pull
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 60_000,
      checkpointEveryFlushes: 1,
      idlePollMs: 1,
      now: () => NOW,
      observer: combineObservers(opsAlertsObserver({ now: () => NOW }), metrics.observer),
    });
    const alertsOf = (b: OutputBatch) => b.alerts.map((a: Alert) => `${a.severity}/${a.kind}`);
    expect(alertsOf(written[0]!)).toEqual(['warning/quality_degradation', 'high/backlog']);
    expect(written.slice(1).flatMap(alertsOf)).toEqual([]); // backlog persists: no repeat
    const text = metrics.render();
    expect(text).toContain('greenstream_alerts_total{severity="warning",kind="quality_degradation"} 1\n');
    expect(text).toContain('greenstream_alerts_total{severity="high",kind="backlog"} 1\n');
    expect(text).toContain('greenstream_consumer_lag 4200\n');
    // One checkpoint per write, and the end's (nothing left to write).
    expect(text).toContain(`greenstream_checkpoints_total ${written.length + 1}\n`);
    expect(text).toContain('greenstream_readings_stored_total{status="measured"} 4\n');
    expect(text).toContain('greenstream_records_in_total 4\n');
    expect(text).toContain(`greenstream_sink_write_seconds_count{outcome="ok"} ${written.length}\n`);
  });

  it('publishes a critical transformation failure, then stops without acknowledging or checkpointing', async () => {
    const log: string[] = [];
    const published: Alert[] = [];
    const saved: Checkpoint[] = [];
    const metrics = new JobMetrics(() => NOW);
    const storeDown = new Error('hot store unreachable after 4 attempts');
    const run = runPipeline({
      source: scriptedSource([pull(90)], undefined, log),
      sinks: {
        rollback: async () => {},
        write: async () => {
          log.push('write');
          throw storeDown;
        },
      },
      checkpoints: {
        load: async () => undefined,
        save: async (cp) => {
          saved.push(cp);
        },
      },
      store: new StateStore(),
      connect: scoringGraph(),
      untilIdle: true,
      flushRows: 1,
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 60_000,
      checkpointEveryFlushes: 1,
      idlePollMs: 1,
      now: () => NOW,
      observer: combineObservers(
        opsAlertsObserver({
          now: () => NOW,
          publish: async (alerts) => {
            log.push('publish');
            published.push(...alerts);
          },
          raisedOutsideBatch: (alert, publishError) => metrics.observer.alertRaised?.(alert, publishError),
        }),
        metrics.observer,
      ),
    });
    await expect(run).rejects.toBe(storeDown);
    expect(log).toEqual(['write', 'publish', 'close']);
    expect(saved).toEqual([]);
    expect(published).toHaveLength(1);
    expect(published[0]).toMatchObject({ severity: 'critical', kind: 'transformation_failure' });
    expect(metrics.isReady()).toBe(false);
    const text = metrics.render();
    expect(text).toContain('greenstream_alerts_total{severity="critical",kind="transformation_failure"} 1\n');
    expect(text).toContain('greenstream_sink_write_seconds_count{outcome="error"} 1\n');
    expect(text).not.toMatch(/^greenstream_checkpoints_total [1-9]/m);
  });

  it('keeps the sink error when publishing the failure alert fails too', async () => {
    const raised: unknown[] = [];
    const storeDown = new Error('store down');
    const natsDown = new Error('nats down');
    const run = runPipeline({
      source: scriptedSource([pull(90)], undefined, []),
      sinks: {
        rollback: async () => {},
        write: async () => {
          throw storeDown;
        },
      },
      checkpoints: { load: async () => undefined, save: async () => {} },
      store: new StateStore(),
      connect: scoringGraph(),
      untilIdle: true,
      flushRows: 1,
      flushIntervalMs: 60_000,
      checkpointIntervalMs: 60_000,
      checkpointEveryFlushes: 1,
      idlePollMs: 1,
      now: () => NOW,
      observer: opsAlertsObserver({
        now: () => NOW,
        publish: async () => {
          throw natsDown;
        },
        raisedOutsideBatch: (_alert, publishError) => raised.push(publishError),
      }),
    });
    await expect(run).rejects.toBe(storeDown);
    expect(raised).toEqual([natsDown]);
  });
});
