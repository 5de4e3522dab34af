import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  connectNats,
  describeNatsConfig,
  NatsConnectError,
  natsConnectionOptions,
  redactUrl,
} from '../../connectors/jetstream.js';
import { findFreePort, resolveServerBinary } from '../harness/servers.js';

const PASSWORD = 'pa55-w0rd-XYZ';
const TOKEN = 't0ken-ABC-123';

/** A plain nats-server (no JetStream) with the given auth flags, owned by this file. */
async function authServer(args: string[]): Promise<{ url: string; process: ChildProcess }> {
  const port = await findFreePort();
  const child = spawn(resolveServerBinary('nats-server'), ['-a', '127.0.0.1', '-p', String(port), ...args], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error('nats-server with auth did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `nats://127.0.0.1:${port}`, process: child };
}

let userServer: { url: string; process: ChildProcess };
let tokenServer: { url: string; process: ChildProcess };
let scratch: string;

beforeAll(async () => {
  [userServer, tokenServer] = await Promise.all([
    authServer(['--user', 'alice', '--pass', PASSWORD]),
    authServer(['--auth', TOKEN]),
  ]);
  scratch = await mkdtemp(join(tmpdir(), 'gs-nats-conn-'));
});

afterAll(async () => {
  for (const server of [userServer, tokenServer]) {
    if (server?.process.pid !== undefined) process.kill(server.process.pid, 'SIGTERM');
  }
  await rm(scratch, { recursive: true, force: true });
});

describe('connectNats', () => {
  it('connects with user/password and with a token', async () => {
    const byUser = await connectNats({ servers: userServer.url, user: 'alice', password: PASSWORD });
    expect(byUser.info?.server_id).toBeTruthy();
    await byUser.close();
    const byToken = await connectNats({ servers: [tokenServer.url], token: TOKEN });
    expect(byToken.info?.server_id).toBeTruthy();
    await byToken.close();
  });

  it('fails with a typed error that names the server but never the secret', async () => {
    const error = await connectNats({
      servers: userServer.url,
      user: 'alice',
      password: `${PASSWORD}-wrong`,
      maxReconnectAttempts: 0,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NatsConnectError);
    const connectError = error as NatsConnectError;
    expect(connectError.message).toContain(userServer.url);
    expect(connectError.message).toMatch(/authorization/i);
    expect(JSON.stringify({ message: connectError.message, context: connectError.context })).not.toContain(
      PASSWORD,
    );

    const refused = await connectNats({
      servers: 'nats://127.0.0.1:1',
      token: TOKEN,
      maxReconnectAttempts: 0,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NatsConnectError);
    expect((refused as Error).message).not.toContain(TOKEN);
  });

  it('connects to the shared test server without auth', async () => {
    const nc = await connectNats({ servers: inject('natsUrl'), name: 'gs-test' });
    expect(nc.info?.jetstream).toBe(true);
    await nc.close();
  });
});

describe('connection options', () => {
  it('reads a credentials file into an authenticator, and reports a missing one by path', async () => {
    const creds = join(scratch, 'user.creds');
    await writeFile(
      creds,
      '-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n',
    );
    const options = await natsConnectionOptions({ servers: 'nats://127.0.0.1:4222', credentialsFile: creds });
    expect(typeof options.authenticator).toBe('function');
    const missing = join(scratch, 'missing.creds');
    await expect(natsConnectionOptions({ servers: 'x', credentialsFile: missing })).rejects.toMatchObject({
      name: 'NatsConnectError',
      context: { credentialsFile: missing },
    });
  });

  it('maps TLS options, reconnects forever by default, and refuses two auth methods at once', async () => {
    const options = await natsConnectionOptions({
      servers: ['a:4222', 'b:4222'],
      tls: {
        caFile: '/etc/ca.pem',
        certFile: '/etc/c.pem',
        keyFile: '/etc/k.pem',
        rejectUnauthorized: false,
      },
    });
    expect(options).toMatchObject({
      servers: ['a:4222', 'b:4222'],
      maxReconnectAttempts: -1,
      tls: {
        caFile: '/etc/ca.pem',
        certFile: '/etc/c.pem',
        keyFile: '/etc/k.pem',
        rejectUnauthorized: false,
      },
    });
    expect((await natsConnectionOptions({ servers: 'a', tls: true })).tls).toEqual({});
    await expect(
      natsConnectionOptions({ servers: 'a', token: 't', user: 'u', password: 'p' }),
    ).rejects.toThrow(/one NATS authentication method/);
  });

  it('describes a configuration for logs without secrets', () => {
    const text = describeNatsConfig({
      servers: ['nats://alice:hunter2@host-a:4222', 'host-b:4222'],
      user: 'alice',
      password: 'hunter2',
      tls: true,
    });
    expect(text).toBe('nats://***@host-a:4222,host-b:4222, user alice, TLS');
    expect(describeNatsConfig({ servers: 'h:1', token: 'secret-token' })).not.toContain('secret-token');
    expect(redactUrl('tls://u:p@h:4443')).toBe('tls://***@h:4443');
    expect(redactUrl('h:4222')).toBe('h:4222');
  });
});
