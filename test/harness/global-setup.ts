/**
 * Starts the servers every test file shares: one nats-server with JetStream and one clickhouse-server,
 * on free loopback ports in temp folders. Tests read where they are with `inject()`:
 *
 *   import { inject } from 'vitest';
 *   const natsUrl = inject('natsUrl');
 *
 * A missing binary or a server that does not come up fails the whole run; nothing is skipped.
 */
import type { TestProject } from 'vitest/node';
import { type ClickHouseServer, type NatsServer, startClickHouseServer, startNatsServer } from './servers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `nats://127.0.0.1:PORT`, JetStream enabled, no auth. */
    natsUrl: string;
    /** The shared nats-server's HTTP monitoring endpoint (`/varz`, `/jsz`, `/healthz`). */
    natsMonitorUrl: string;
    /** The shared nats-server's JetStream store directory. */
    natsStoreDir: string;
    natsVersion: string;
    /** `http://127.0.0.1:PORT`, user `default`, empty password. */
    clickhouseUrl: string;
    /** What the shared clickhouse-server answers to `SELECT version()`. */
    clickhouseServerVersion: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const startedAt = performance.now();
  const [nats, clickhouse] = await Promise.allSettled([startNatsServer(), startClickHouseServer()]);
  if (nats.status === 'rejected' || clickhouse.status === 'rejected') {
    await Promise.allSettled(
      [nats, clickhouse].map((started) =>
        started.status === 'fulfilled' ? started.value.dispose() : undefined,
      ),
    );
    const failures = [nats, clickhouse].flatMap((started) =>
      started.status === 'rejected' ? [started.reason] : [],
    );
    throw new AggregateError(failures, `test servers did not start:\n${failures.map(String).join('\n\n')}`);
  }
  const natsServer: NatsServer = nats.value;
  const clickhouseServer: ClickHouseServer = clickhouse.value;

  project.provide('natsUrl', natsServer.url);
  project.provide('natsMonitorUrl', natsServer.monitorUrl);
  project.provide('natsStoreDir', natsServer.storeDir);
  project.provide('natsVersion', natsServer.version);
  project.provide('clickhouseUrl', clickhouseServer.url);
  project.provide('clickhouseServerVersion', clickhouseServer.version);

  console.log(
    `[harness] nats-server ${natsServer.version} at ${natsServer.url}, ` +
      `clickhouse-server ${clickhouseServer.version} at ${clickhouseServer.url} ` +
      `(up in ${Math.round(performance.now() - startedAt)} ms)`,
  );

  return async function teardown(): Promise<void> {
    await Promise.allSettled([natsServer.dispose(), clickhouseServer.dispose()]);
  };
}
