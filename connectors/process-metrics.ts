/**
 * Process and Node.js metrics for `/metrics`, from prom-client's default collectors (resident memory,
 * heap spaces, GC pause histogram by kind, event-loop lag, handles, CPU), plus `greenstream_build_info`.
 * Kept in prom-client's own registry and rendered after the job's series: the names do not overlap
 * (`process_*`, `nodejs_*` against `greenstream_*`), so the exposition stays one valid document.
 */
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

export interface ProcessMetrics {
  render(): Promise<string>;
}

/** The package version, read once from package.json beside `dist/`. */
export function packageVersion(): string {
  for (const up of ['../../package.json', '../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // Not at this depth: source (tsx/vitest) and dist/ differ by one folder.
    }
  }
  return 'unknown';
}

export function processMetrics(labels: { readonly worker?: string } = {}): ProcessMetrics {
  const registry = new Registry();
  // GC pauses in seconds, from sub-millisecond scavenges to multi-second full collections.
  collectDefaultMetrics({
    register: registry,
    gcDurationBuckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  });
  const build = new Gauge({
    name: 'greenstream_build_info',
    help: 'Always 1; the labels say which build runs: version, Node.js version, worker id.',
    labelNames: ['version', 'node_version', 'worker'],
    registers: [registry],
  });
  build.set({ version: packageVersion(), node_version: process.version, worker: labels.worker ?? '' }, 1);
  return { render: () => registry.metrics() };
}
