/**
 * The fault-test helpers themselves: servers a test owns can be stopped, crashed, frozen and restarted
 * on the same ports without losing data, and a server that cannot start says why.
 */
import { existsSync } from 'node:fs';
import { createClient } from '@clickhouse/client';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClickHouseServer,
  findFreePort,
  type NatsServer,
  ServerBinaryMissingError,
  ServerStartError,
  startClickHouseServer,
  startNatsServer,
} from '../harness/servers.js';

async function pingClickHouse(url: string): Promise<string> {
  const response = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(500) });
  return (await response.text()).trim();
}

describe('a clickhouse-server owned by the test', () => {
  let server: ClickHouseServer;

  beforeAll(async () => {
    server = await startClickHouseServer();
  });

  afterAll(async () => {
    await server?.dispose();
    expect(existsSync(server.workDir)).toBe(false);
  });

  it('keeps its data and its URL across a graceful stop, a crash and a restart', async () => {
    const client = createClient({ url: server.url });
    await client.command({
      query: 'CREATE TABLE meters (meter_id String) ENGINE = MergeTree ORDER BY meter_id',
    });
    await client.insert({ table: 'meters', values: [{ meter_id: 'm-1' }], format: 'JSONEachRow' });
    await client.close();
    const urlBefore = server.url;

    await server.stop();
    expect(server.running).toBe(false);
    await expect(pingClickHouse(server.url)).rejects.toThrow();

    await server.restart();
    await server.kill();
    expect(server.running).toBe(false);
    await server.restart();
    expect(server.url).toBe(urlBefore);

    const after = createClient({ url: server.url });
    const result = await after.query({ query: 'SELECT meter_id FROM meters', format: 'JSONEachRow' });
    expect(await result.json()).toEqual([{ meter_id: 'm-1' }]);
    await after.close();
  });

  it('stops answering while paused and answers again once resumed', async () => {
    await server.pause();
    await expect(pingClickHouse(server.url)).rejects.toThrow(/timeout|aborted/i);
    server.resume();
    expect(await pingClickHouse(server.url)).toBe('Ok.');
  });

  it('fails to start with the reason from its log when its port is taken', async () => {
    const error = await startClickHouseServer({ httpPort: server.httpPort, startTimeoutMs: 10_000 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ServerStartError);
    expect((error as ServerStartError).exitedEarly).toBe(true);
    expect((error as ServerStartError).message).toMatch(/address already in use/i);
  });
});

describe('a nats-server owned by the test', () => {
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('keeps JetStream messages across a crash and a restart on the same port', async () => {
    const before = await connect({ servers: server.url });
    const jsm = await jetstreamManager(before);
    await jsm.streams.add({ name: 'CRASH', subjects: ['crash.>'] });
    const js = jsm.jetstream();
    await Promise.all(['a', 'b'].map((body) => js.publish('crash.readings', body)));
    await before.close();

    await server.kill();
    expect(server.running).toBe(false);
    await server.restart();

    const after = await connect({ servers: server.url });
    const stream = await (await jetstreamManager(after)).streams.info('CRASH');
    expect(stream.state.messages).toBe(2);
    await after.close();
  });
});

describe('server binaries', () => {
  it('fails loudly, naming the package, when a binary is missing', async () => {
    await expect(startNatsServer({ binary: '/nonexistent/nats-server' })).rejects.toThrow(
      ServerBinaryMissingError,
    );
  });

  it('never hands out the same free port twice in one process', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => findFreePort()));
    expect(new Set(ports).size).toBe(ports.length);
  });
});
