/**
 * A full garbage collection from a test (vitest runs without `--expose-gc`), for tests that check what a
 * component keeps alive through `WeakRef`s.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Collects everything unreachable, `WeakRef` targets included: a `WeakRef` keeps its target alive until the
 * end of the job that created or read it, so the collection runs on a later turn of the event loop.
 */
export async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}

/** How many of `refs` still reach their targets. */
export function alive(refs: readonly WeakRef<object>[]): number {
  return refs.filter((r) => r.deref() !== undefined).length;
}
