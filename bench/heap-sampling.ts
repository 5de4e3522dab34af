/**
 * A V8 sampling heap profile of a stretch of a bench, collected objects counted too (so short-lived
 * garbage shows at its allocation site), written where `heap-top.js` reads it. The inspector session
 * answers synchronously on the main thread, so the profile covers exactly what runs between start and stop.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

/** Starts sampling every `intervalBytes` allocated; the returned function stops and writes `file`. */
export function startHeapSampling(file: string, intervalBytes: number): () => void {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.enable');
  session.post('HeapProfiler.startSampling', {
    samplingInterval: intervalBytes,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return () => {
    session.post('HeapProfiler.stopSampling', (err, result) => {
      if (err !== null) throw err;
      writeFileSync(file, JSON.stringify(result.profile));
    });
    session.disconnect();
  };
}
