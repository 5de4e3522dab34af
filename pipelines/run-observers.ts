/** Combining several run observers into one, so metrics, alerts and logs each watch the same run. */
import type { Alert } from '../schemas/reading.js';
import type { RunObserver } from './runner.js';

/** One observer calling several in order; `alertsFor` concatenates what each returns. */
export function combineObservers(...observers: readonly (RunObserver | undefined)[]): RunObserver {
  const all = observers.filter((o): o is RunObserver => o !== undefined);
  return {
    opened: () => {
      for (const o of all) o.opened?.();
    },
    pulled: (batch) => {
      for (const o of all) o.pulled?.(batch);
    },
    consumerLag: (pending) => {
      for (const o of all) o.consumerLag?.(pending);
    },
    alertsFor: (batch, pending) => {
      const alerts: Alert[] = [];
      for (const o of all) alerts.push(...(o.alertsFor?.(batch, pending) ?? []));
      return alerts;
    },
    sinkWrite: (seconds, ok) => {
      for (const o of all) o.sinkWrite?.(seconds, ok);
    },
    sinkFailed: async (error, batch) => {
      for (const o of all) await o.sinkFailed?.(error, batch);
    },
    graphFailed: async (error, checkpoint) => {
      for (const o of all) await o.graphFailed?.(error, checkpoint);
    },
    flushed: (batch) => {
      for (const o of all) o.flushed?.(batch);
    },
    writeWaited: (seconds) => {
      for (const o of all) o.writeWaited?.(seconds);
    },
    snapshotted: (seconds, length) => {
      for (const o of all) o.snapshotted?.(seconds, length);
    },
    checkpointed: (checkpoint) => {
      for (const o of all) o.checkpointed?.(checkpoint);
    },
    stopped: () => {
      for (const o of all) o.stopped?.();
    },
  };
}
