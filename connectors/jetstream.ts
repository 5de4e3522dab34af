/**
 * The JetStream connector: connection, streams, publisher, sources (live and replay), dead
 * letters, checkpoints and alerts. Split by role into `jetstream-*.ts`; import from here.
 */
export * from './jetstream-alerts.js';
export * from './jetstream-connection.js';
export * from './jetstream-errors.js';
export * from './jetstream-kv.js';
export * from './jetstream-publisher.js';
export * from './jetstream-source.js';
export * from './jetstream-streams.js';
