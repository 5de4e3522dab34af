/** Side inputs (a slowly changing lookup beside the main input) and the stage that waits for them. */
import { Observable, type Subscription } from 'rxjs';
import type { FlowEvent, Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';

/**
 * A slowly changing lookup (the meter registry) read by stages beside the main input. Its latest value is
 * not checkpointed: a restarted worker reads it again from its source.
 */
export class SideInput<S> {
  private current: { value: S } | undefined;
  private subscription: Subscription | undefined;
  private readonly waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly source: Observable<S>,
  ) {}

  get ready(): boolean {
    return this.current !== undefined;
  }

  /** The latest value. Throws when read before the first value arrived: stages run behind `awaitSideInputs`. */
  get value(): S {
    if (this.current === undefined) throw new Error(`side input "${this.name}" read before it was ready`);
    return this.current.value;
  }

  /** Starts following the source; idempotent. Errors of the source surface through `awaitSideInputs`. */
  connect(onError: (err: unknown) => void): void {
    if (this.subscription !== undefined) return;
    this.subscription = this.source.subscribe({
      next: (v) => {
        this.current = { value: v };
        for (const w of this.waiters.splice(0)) w();
      },
      error: onError,
    });
  }

  onReady(callback: () => void): void {
    if (this.ready) callback();
    else this.waiters.push(callback);
  }

  disconnect(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
  }
}

/**
 * Holds the main input back until every side input has its first value, so no element is processed
 * against an empty registry; afterwards events pass straight through.
 */
export function awaitSideInputs<T>(...sides: SideInput<unknown>[]): Transform<T, T> {
  return (source) =>
    new Observable<FlowEvent<T>>((subscriber) => {
      const pending: FlowEvent<T>[] = [];
      let open = false;
      let completed = false;
      const fail = (err: unknown) => subscriber.error(err);
      for (const side of sides) side.connect(fail);
      // Runs inside the side input's emission when it becomes ready later: a throw downstream must still
      // end this stage rather than surface on RxJS's timer.
      const check = (): void => {
        if (open || !sides.every((s) => s.ready)) return;
        open = true;
        try {
          for (const e of pending.splice(0)) subscriber.next(e);
          if (completed) subscriber.complete();
        } catch (err) {
          fail(err);
        }
      };
      for (const side of sides) side.onReady(check);
      const sub = subscribeGuarded(source, subscriber, {
        next: (e) => {
          if (open) subscriber.next(e);
          else pending.push(e);
        },
        error: fail,
        complete: () => {
          completed = true;
          if (open) subscriber.complete();
        },
      });
      check();
      return () => sub.unsubscribe();
    });
}
