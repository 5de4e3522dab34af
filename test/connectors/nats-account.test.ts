/**
 * The least-privilege NATS account of deploy/nats/worker-account.conf on a real nats-server: the owner
 * creates the streams, the publisher, a partitioned worker (--no-manage-streams) and the cross-meter stage
 * each run through the CLI as their own user without one permission violation, and what a role does not
 * need (creating a stream, publishing readings as a worker) is refused.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CheckpointKv, ensureDeadLetterStream, ensureReadingsStream } from '../../connectors/jetstream.js';
import { ensureRepartitionStream } from '../../connectors/jetstream-repartition.js';
import { simulate } from '../../simulator/index.js';
import { type NatsServer, startNatsServer, uniqueName } from '../harness/servers.js';
import { ensureBuilt, expectSuccess, repoRoot, runCli } from '../pipelines/helpers.js';

const passwords = {
  GS_NATS_ADMIN_PASSWORD: 'admin-secret',
  GS_NATS_PUBLISHER_PASSWORD: 'publisher-secret',
  GS_NATS_WORKER_PASSWORD: 'worker-secret',
  GS_NATS_CROSS_METER_PASSWORD: 'cross-secret',
};

let server: NatsServer;
let workDir: string;

beforeAll(async () => {
  Object.assign(process.env, passwords);
  const config = await readFile(join(repoRoot, 'deploy/nats/worker-account.conf'), 'utf8');
  [server] = await Promise.all([startNatsServer({ config }), ensureBuilt()]);
  workDir = await mkdtemp(join(tmpdir(), 'greenstream-account-'));
}, 240_000);

afterAll(async () => {
  await server?.dispose();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe('deploy/nats/worker-account.conf', () => {
  it('lets each role do its work and nothing it does not need', async () => {
    const admin = await connect({
      servers: server.url,
      user: 'greenstream_admin',
      pass: passwords.GS_NATS_ADMIN_PASSWORD,
    });
    try {
      const js = jetstream(admin);
      await ensureReadingsStream(js);
      await ensureDeadLetterStream(js);
      await ensureRepartitionStream(js);
      await CheckpointKv.open(js);
    } finally {
      await admin.close();
    }
    const simDir = join(workDir, 'sim');
    await simulate({ out: simDir, meters: 12, days: 2, start: '2024-03-11', seed: 3, gatewaySize: 3 });
    const as = (user: string, password: string) => ({
      cwd: workDir,
      env: { NATS_USER: user, NATS_PASSWORD: password },
    });
    expectSuccess(
      await runCli(
        ['publish', join(simDir, 'raw'), '--nats', server.url],
        as('greenstream_publisher', passwords.GS_NATS_PUBLISHER_PASSWORD),
      ),
      'publisher',
    );
    const database = uniqueName('gs_account');
    const common = [
      'run',
      '--source',
      server.url,
      '--registry',
      join(simDir, 'registry.csv'),
      '--hot',
      inject('clickhouseUrl'),
      '--database',
      database,
      '--no-cold',
      '--no-manage-streams',
      '--until-idle',
    ];
    const [worker, crossMeter] = await Promise.all([
      runCli(
        [...common, '--worker', 'acct', '--partitions', '0-15'],
        as('greenstream_worker', passwords.GS_NATS_WORKER_PASSWORD),
      ),
      runCli(
        [...common, '--stage', 'cross-meter'],
        as('greenstream_cross_meter', passwords.GS_NATS_CROSS_METER_PASSWORD),
      ),
    ]);
    expectSuccess(worker, 'worker');
    expectSuccess(crossMeter, 'cross-meter stage');
    const log = await readFile(join(server.storeDir, '..', 'nats-server.log'), 'utf8');
    expect(log.split('\n').filter((l) => l.includes('Permissions Violation'))).toEqual([]);

    // What the worker does not need is refused.
    const nc = await connect({
      servers: server.url,
      user: 'greenstream_worker',
      pass: passwords.GS_NATS_WORKER_PASSWORD,
    });
    try {
      const jsm = await jetstreamManager(nc);
      await expect(jsm.streams.add({ name: 'ROGUE', subjects: ['rogue.>'] })).rejects.toThrow(
        /permission|timeout/i,
      );
      await expect(jetstream(nc).publish('readings.3', 'x', { timeout: 1000 })).rejects.toThrow(
        /permission|timeout/i,
      );
    } finally {
      await nc.close();
    }
  }, 180_000);
});
