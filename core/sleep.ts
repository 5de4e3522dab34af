/**
 * A pause that an abort signal ends early (resolving, not rejecting): idle polls and lease waits stop
 * waiting the moment the job is asked to stop, and leave no listener behind when the timer wins.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
