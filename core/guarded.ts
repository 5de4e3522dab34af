/**
 * The subscription every hand-written operator uses: a throw in its `next`, `error` or `complete` handler
 * goes to the operator's subscriber as an error, synchronously. A partial observer handed to
 * `source.subscribe` directly would have RxJS catch the throw and rethrow it later on a timer, where the
 * runner never sees it and goes on with a half-processed batch.
 */
import type { Observable, Subscriber, Subscription } from 'rxjs';

export interface GuardedHandlers<T> {
  next(value: T): void;
  /** Default: forward the error downstream. */
  error?(err: unknown): void;
  /** Default: complete downstream. */
  complete?(): void;
}

/** Subscribes `handlers` to `source`; whatever they throw ends `subscriber` with that error. */
export function subscribeGuarded<T>(
  source: Observable<T>,
  subscriber: Subscriber<unknown>,
  handlers: GuardedHandlers<T>,
): Subscription {
  const fail = (err: unknown): void => subscriber.error(err);
  const onError = handlers.error;
  const onComplete = handlers.complete;
  return source.subscribe({
    next: (value) => {
      try {
        handlers.next(value);
      } catch (err) {
        fail(err);
      }
    },
    error: (err: unknown) => {
      if (onError === undefined) {
        fail(err);
        return;
      }
      try {
        onError(err);
      } catch (thrown) {
        fail(thrown);
      }
    },
    complete: () => {
      if (onComplete === undefined) {
        subscriber.complete();
        return;
      }
      try {
        onComplete();
      } catch (err) {
        fail(err);
      }
    },
  });
}
