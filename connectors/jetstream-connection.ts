/**
 * Connecting to NATS with the options a deployment needs: servers, user/password, token,
 * a credentials file (JWT + nkey seed), TLS. Secrets stay in the options object: nothing here logs,
 * and `describeNatsConfig` gives a redacted one-line summary for whoever does.
 */
import { readFile } from 'node:fs/promises';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { messageOf, NatsConnectError } from './jetstream-errors.js';

export interface NatsTlsConfig {
  /** PEM files (paths) or PEM text. */
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Default true; false only for test servers with self-signed certificates. */
  readonly rejectUnauthorized?: boolean;
  /** TLS before the NATS INFO exchange; the server must be configured for it. */
  readonly handshakeFirst?: boolean;
}

export interface NatsConnectionConfig {
  /** `nats://host:port` or `host:port`, one or several (a cluster). */
  readonly servers: string | readonly string[];
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  /** A `.creds` file (JWT and nkey seed), as issued by `nsc`. */
  readonly credentialsFile?: string;
  /** `true` requires TLS with the system's CAs; an object configures it. */
  readonly tls?: NatsTlsConfig | boolean;
  /** Shown in the server's monitoring pages. */
  readonly name?: string;
  /**
   * Reconnect attempts per server before giving up; default -1 (forever), so a streaming worker
   * rides out a server restart instead of dying.
   */
  readonly maxReconnectAttempts?: number;
  readonly reconnectTimeWaitMs?: number;
  /** Handshake timeout, default 20 s. */
  readonly connectTimeoutMs?: number;
  /** Keep retrying the first connection too (default false: fail fast on a wrong URL). */
  readonly waitOnFirstConnect?: boolean;
  /**
   * Record where each request started, for error stack traces. Default false: the client builds an
   * Error per publish for it, which cost over a quarter of the publisher's CPU when measured.
   */
  readonly asyncTraces?: boolean;
}

/** Builds the client options; reads the credentials file. */
export async function natsConnectionOptions(config: NatsConnectionConfig): Promise<NodeConnectionOptions> {
  const servers = typeof config.servers === 'string' ? [config.servers] : [...config.servers];
  if (servers.length === 0) throw new NatsConnectError('no NATS server given');
  const methods = [
    config.user !== undefined || config.password !== undefined ? 'user/password' : null,
    config.token !== undefined ? 'token' : null,
    config.credentialsFile !== undefined ? 'credentials file' : null,
  ].filter((m) => m !== null);
  if (methods.length > 1) {
    throw new NatsConnectError(`choose one NATS authentication method, got ${methods.join(' and ')}`);
  }
  const options: NodeConnectionOptions = {
    servers,
    maxReconnectAttempts: config.maxReconnectAttempts ?? -1,
    noAsyncTraces: !(config.asyncTraces ?? false),
  };
  if (config.name !== undefined) options.name = config.name;
  if (config.reconnectTimeWaitMs !== undefined) options.reconnectTimeWait = config.reconnectTimeWaitMs;
  if (config.connectTimeoutMs !== undefined) options.timeout = config.connectTimeoutMs;
  if (config.waitOnFirstConnect !== undefined) options.waitOnFirstConnect = config.waitOnFirstConnect;
  if (config.user !== undefined) options.user = config.user;
  if (config.password !== undefined) options.pass = config.password;
  if (config.token !== undefined) options.token = config.token;
  if (config.credentialsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = await readFile(config.credentialsFile);
    } catch (error) {
      throw new NatsConnectError(
        'cannot read the NATS credentials file',
        { credentialsFile: config.credentialsFile },
        { cause: error },
      );
    }
    options.authenticator = credsAuthenticator(creds);
  }
  if (config.tls === true) options.tls = {};
  else if (typeof config.tls === 'object') options.tls = tlsOptions(config.tls);
  return options;
}

type NodeTlsOptions = NonNullable<NodeConnectionOptions['tls']>;

function tlsOptions(tls: NatsTlsConfig): NodeTlsOptions {
  const out: NodeTlsOptions = {};
  if (tls.caFile !== undefined) out.caFile = tls.caFile;
  if (tls.certFile !== undefined) out.certFile = tls.certFile;
  if (tls.keyFile !== undefined) out.keyFile = tls.keyFile;
  if (tls.ca !== undefined) out.ca = tls.ca;
  if (tls.cert !== undefined) out.cert = tls.cert;
  if (tls.key !== undefined) out.key = tls.key;
  if (tls.rejectUnauthorized !== undefined) out.rejectUnauthorized = tls.rejectUnauthorized;
  if (tls.handshakeFirst !== undefined) out.handshakeFirst = tls.handshakeFirst;
  return out;
}

/** Connects; the error names the servers (redacted) and the cause, never a secret. */
export async function connectNats(config: NatsConnectionConfig): Promise<NatsConnection> {
  const options = await natsConnectionOptions(config);
  try {
    return await connect(options);
  } catch (error) {
    throw new NatsConnectError(
      `cannot connect to NATS (${describeNatsConfig(config)}): ${redactSecrets(messageOf(error), config)}`,
      { servers: serverList(config).map(redactUrl).join(',') },
      { cause: error },
    );
  }
}

/** A one-line summary safe for logs: servers without user info, the auth method, TLS or not. */
export function describeNatsConfig(config: NatsConnectionConfig): string {
  const auth =
    config.credentialsFile !== undefined
      ? `credentials file ${config.credentialsFile}`
      : config.token !== undefined
        ? 'token'
        : config.user !== undefined
          ? `user ${config.user}`
          : 'no auth';
  const tls = config.tls === undefined || config.tls === false ? 'no TLS' : 'TLS';
  return `${serverList(config).map(redactUrl).join(',')}, ${auth}, ${tls}`;
}

/** Drops the password (or whole user info) from a server URL. */
export function redactUrl(url: string): string {
  return url.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i,
    (_m, scheme: string | undefined) => `${scheme ?? ''}***@`,
  );
}

function serverList(config: NatsConnectionConfig): string[] {
  return typeof config.servers === 'string' ? [config.servers] : [...config.servers];
}

function redactSecrets(text: string, config: NatsConnectionConfig): string {
  let out = text;
  for (const secret of [config.password, config.token]) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
}
