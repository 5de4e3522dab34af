/** NATS clients for one test file: connected to the harness's server before its tests, drained after. */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, inject } from 'vitest';

export interface NatsClients {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/** Call at a test file's top level; the fields are set once its `beforeAll` ran. */
export function natsClients(): NatsClients {
  const clients = {} as NatsClients;
  beforeAll(async () => {
    clients.nc = await connect({ servers: inject('natsUrl') });
    clients.js = jetstream(clients.nc);
    clients.jsm = await jetstreamManager(clients.nc);
  });
  afterAll(async () => {
    await clients.nc?.drain();
  });
  return clients;
}
