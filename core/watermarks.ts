/** Event-time watermarks from bounded out-of-orderness, per source partition, with idle partitions. */
import { asyncScheduler, Observable, type SchedulerLike } from 'rxjs';
import type { DrainStep, FlowEvent, TickEvent, Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';
import type { StateStore } from './state-store.js';

export interface WatermarkOptions<T> {
  /** Event time of an element, epoch ms. */
  readonly eventTime: (item: T) => number;
  /** Elements may arrive up to this much behind the newest one seen on their partition. */
  readonly maxOutOfOrdernessMs: number;
  /**
   * Source partition of an element (a JetStream subject, a landing folder). The watermark is the minimum
   * over active partitions, so one fast partition cannot make another's data late.
   */
  readonly partition?: (item: T) => string;
  /**
   * A partition with no data for this long (processing time) stops holding the watermark back. When every
   * partition is idle the watermark moves just past the newest event time seen: the source has gone quiet,
   * so windows and silence timers must not wait for data that is not coming. Off when undefined. Idleness is
   * checked at each data batch and at each tick the driver injects (`TickEvent`): this stage keeps no
   * timer, so nothing changes state between the driver's steps.
   */
  readonly idleTimeoutMs?: number;
  /**
   * Watermark emitted when the input completes. Beam's `+Infinity` fires every window and every timer;
   * a bounded run of a live feed may prefer `maxEventTime + interval`, so a meter's "silent for 24 h" timer
   * does not fire merely because the file ended.
   */
  readonly finalWatermark?: (maxEventTime: number) => number;
  /**
   * At the end of input (a draining tick, see `TickEvent.drain`) the watermark moves toward the final one
   * by at most this much event time per tick, to the next multiple of it, so each step fires only the
   * timers of one such span. Undefined: one jump. A final watermark of +Infinity is always one jump.
   */
  readonly finalStepMs?: number;
  /** Where the partition positions live, so a checkpoint restores the watermark too. */
  readonly store: StateStore;
  readonly name: string;
  /** The processing-time clock a data batch is stamped with (only `now()` is read); ticks carry their own. */
  readonly scheduler?: SchedulerLike;
}

interface PartitionClock {
  maxEventTime: number;
  lastActivity: number;
}

interface WatermarkState {
  partitions: Record<string, PartitionClock>;
  emitted: number;
}

/**
 * Assigns watermarks from bounded out-of-orderness. Emits a watermark after each data batch and each tick
 * when it advanced, and never lets the watermark go backwards. Ticks are consumed here.
 */
export function assignWatermarks<T>(options: WatermarkOptions<T>): Transform<T, T> {
  const scheduler = options.scheduler ?? asyncScheduler;
  const partitionOf = options.partition ?? (() => '');
  const bound = options.maxOutOfOrdernessMs;
  const state = options.store.value<WatermarkState>(`${options.name}/watermark`, {
    partitions: {},
    emitted: Number.NEGATIVE_INFINITY,
  });
  // The initial value is shared until first set; give this operator its own object to mutate.
  state.set({ partitions: { ...state.get().partitions }, emitted: state.get().emitted });

  const current = (now: number, final: boolean): number => {
    const s = state.get();
    let min = Number.POSITIVE_INFINITY;
    let maxSeen = Number.NEGATIVE_INFINITY;
    for (const p of Object.values(s.partitions)) {
      maxSeen = Math.max(maxSeen, p.maxEventTime);
      const idle = options.idleTimeoutMs !== undefined && now - p.lastActivity >= options.idleTimeoutMs;
      if (!idle) min = Math.min(min, p.maxEventTime - bound);
    }
    if (maxSeen === Number.NEGATIVE_INFINITY) return s.emitted;
    if (final) return (options.finalWatermark ?? (() => Number.POSITIVE_INFINITY))(maxSeen);
    // All partitions idle: nothing is in flight, so nothing at or before the newest element can still come.
    // One past it, not at it: readings stamped on an interval boundary (every meter's 12:15:00) all share
    // the newest time, and a watermark at it would hold them until the next interval's readings arrive.
    return min === Number.POSITIVE_INFINITY ? maxSeen + 1 : min;
  };

  return (source: Observable<FlowEvent<T>>) =>
    new Observable<FlowEvent<T>>((subscriber) => {
      const advance = (now: number, final: boolean): void => {
        const s = state.get();
        const wm = current(now, final);
        if (wm > s.emitted) {
          state.set({ ...s, emitted: wm });
          subscriber.next({ kind: 'watermark', time: wm });
        }
      };
      const drainStep = (event: TickEvent, reply: DrainStep): void => {
        const s = state.get();
        const target = current(event.now, true);
        if (target > s.emitted) {
          const step = options.finalStepMs;
          const next =
            step === undefined || !Number.isFinite(target) || !Number.isFinite(s.emitted)
              ? target
              : Math.min(target, (Math.floor(s.emitted / step) + 1) * step);
          state.set({ ...s, emitted: next });
          subscriber.next({ kind: 'watermark', time: next });
          reply.more = true;
          return;
        }
        // At the final watermark: a later stage holding outputs beyond it steps on (see `TickEvent`).
        if (Number.isFinite(s.emitted)) subscriber.next({ ...event, finalWatermark: s.emitted });
      };
      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            const now = scheduler.now();
            // Mutated in place: the store owns this object and snapshots copy it.
            const partitions = state.get().partitions;
            for (const item of event.items) {
              const p = partitionOf(item);
              const t = options.eventTime(item);
              const clock = partitions[p];
              if (clock === undefined) partitions[p] = { maxEventTime: t, lastActivity: now };
              else {
                if (t > clock.maxEventTime) clock.maxEventTime = t;
                clock.lastActivity = now;
              }
            }
            subscriber.next(event);
            advance(now, false);
          } else if (event.kind === 'tick') {
            if (event.drain !== undefined) drainStep(event, event.drain);
            else if (options.idleTimeoutMs !== undefined) advance(event.now, false);
          } else if (event.kind === 'watermark') {
            // An upstream watermark (e.g. from a replayed checkpoint) is ignored: this stage is the source of truth.
          } else {
            subscriber.next(event);
          }
        },
        complete: () => {
          advance(scheduler.now(), true);
          subscriber.complete();
        },
      });
    });
}
