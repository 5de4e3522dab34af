/**
 * Real servers for tests: a JetStream-enabled nats-server and a clickhouse-server 18.16, each on free
 * loopback ports in its own temp folder.
 *
 * Global setup starts one of each for the whole run. A test that needs to take a server down (stop it
 * mid-stream, crash it, freeze it) starts its own with `startNatsServer()` / `startClickHouseServer()`,
 * because the shared ones live in the vitest main process and are out of reach of the test workers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const LOOPBACK = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_GRACE_MS = 10_000;
const PROBE_INTERVAL_MS = 100;
const PROBE_TIMEOUT_MS = 1_000;
const START_ATTEMPTS_WITH_FRESH_PORTS = 3;
const PAUSE_SETTLE_MS = 50;

/** A server process owned by the test that started it. */
export interface ManagedServer {
  /** Where clients connect: `nats://127.0.0.1:PORT` or `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The version the server reports about itself. */
  readonly version: string;
  /** The OS process id while running, `undefined` while stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Graceful stop: SIGTERM, then SIGKILL after the grace period. Data and ports are kept for `restart()`. */
  stop(options?: { graceMs?: number }): Promise<void>;
  /** Abrupt stop (SIGKILL), as in a crash. Data and ports are kept for `restart()`. */
  kill(): Promise<void>;
  /** Starts again on the same ports over the same data; stops first if still running. */
  restart(): Promise<void>;
  /**
   * Freezes the process (SIGSTOP): connections stay open but nothing answers, as in a hung server.
   * Resolves once every thread has stopped (a loaded machine lets some run on for a moment).
   */
  pause(): Promise<void>;
  /** Undoes `pause()` (SIGCONT). */
  resume(): void;
  /** Stops the server and removes the temp folder the harness created for it. */
  dispose(): Promise<void>;
  /** The last lines the server logged, for failure messages. */
  logTail(lines?: number): string;
}

export interface NatsServer extends ManagedServer {
  readonly port: number;
  /** The HTTP monitoring endpoint (`/varz`, `/jsz`, `/healthz`). */
  readonly monitorUrl: string;
  /** The JetStream store directory (`-sd`); the server keeps its files under `<storeDir>/jetstream`. */
  readonly storeDir: string;
}

export interface ClickHouseServer extends ManagedServer {
  readonly httpPort: number;
  readonly tcpPort: number;
  /** Holds config.xml, users.xml, the data path and the logs. */
  readonly workDir: string;
}

export interface NatsServerOptions {
  /** Client port; a free one when omitted. */
  port?: number;
  /** Monitoring port; a free one when omitted. */
  monitorPort?: number;
  /** Folder for the store and the log; a new temp folder (removed by `dispose()`) when omitted. */
  workDir?: string;
  /** Path to the nats-server binary; looked up on PATH and in the sbin folders when omitted. */
  binary?: string;
  startTimeoutMs?: number;
  /** A member of a cluster: its route port and the other members' route URLs. */
  cluster?: { readonly name: string; readonly port: number; readonly routes: readonly string[] };
  /** Configuration file text (accounts, permissions), passed with `-c`; flags still win over it. */
  config?: string;
}

export interface ClickHouseServerOptions {
  httpPort?: number;
  tcpPort?: number;
  interserverHttpPort?: number;
  /** Folder for config, data and logs; a new temp folder (removed by `dispose()`) when omitted. */
  workDir?: string;
  /** Path to the clickhouse-server binary; looked up on PATH and in the sbin folders when omitted. */
  binary?: string;
  startTimeoutMs?: number;
}

/** A server did not become reachable; the message carries the tail of its log. */
export class ServerStartError extends Error {
  override readonly name = 'ServerStartError';
  constructor(
    message: string,
    readonly server: string,
    readonly logTail: string,
    readonly exitedEarly: boolean,
    options?: { cause?: unknown },
  ) {
    super(`${message}\n--- last lines of the ${server} log ---\n${logTail || '(empty)'}`, options);
  }
}

/** A server binary is not installed: the run must fail, never skip. */
export class ServerBinaryMissingError extends Error {
  override readonly name = 'ServerBinaryMissingError';
}

// ---------------------------------------------------------------------------------------------------------
// Ports

const portsHandedOut = new Set<number>();

/**
 * A loopback TCP port nobody listens on right now. The kernel picks it; ports already handed out by this
 * process are never handed out twice, so servers started together do not collide with each other.
 */
export async function findFreePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const probe = createServer();
      probe.unref();
      probe.once('error', reject);
      probe.listen(0, LOOPBACK, () => {
        const address = probe.address();
        const chosen = typeof address === 'object' && address !== null ? address.port : 0;
        probe.close(() => resolve(chosen));
      });
    });
    if (port > 0 && !portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Binaries

const SERVER_BINARY_FOLDERS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Debian puts both servers in /usr/sbin, which is not on a normal user's PATH. */
export function resolveServerBinary(name: string, explicit?: string): string {
  if (explicit !== undefined) {
    if (!isExecutable(explicit)) throw new ServerBinaryMissingError(`${name} not found at ${explicit}`);
    return explicit;
  }
  const folders = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SERVER_BINARY_FOLDERS];
  for (const folder of folders) {
    const candidate = join(folder, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new ServerBinaryMissingError(
    `${name} is not installed (looked in ${[...new Set(folders)].join(', ')}). ` +
      `Install it with \`sh deploy/local/install-servers.sh\` as root, or \`apt-get install -y ${name}\`.`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Processes

const liveChildren = new Set<ChildProcess>();
const ownedWorkDirs = new Set<string>();
let exitHookInstalled = false;

/** Last resort when the test process exits without disposing its servers (an error, a forgotten dispose). */
function cleanUpOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    for (const workDir of ownedWorkDirs) rmSync(workDir, { recursive: true, force: true });
  });
}

/**
 * `setpriv --pdeathsig` makes the kernel SIGKILL the server when the process that spawned it dies, even by
 * SIGKILL, where no 'exit' handler runs. util-linux (which ships setpriv) is essential on Debian.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));

function spawnServer(binary: string, args: readonly string[], logPath: string, cwd: string): ChildProcess {
  const logFd = openSync(logPath, 'a');
  try {
    const [command, commandArgs] =
      SETPRIV === undefined ? [binary, [...args]] : [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args]];
    // A session of its own. When the test process's group is orphaned (as under some CI shells), the
    // kernel wakes its stopped members (SIGHUP + SIGCONT) whenever another member exits, which would end
    // a pause() early. Ctrl-C then reaches vitest only; its teardown, the exit hook and pdeathsig stop us.
    const child = spawn(command, commandArgs, { cwd, stdio: ['ignore', logFd, logFd], detached: true });
    // The server must never keep a test worker alive; the exit hook and pdeathsig clean it up.
    child.unref();
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    cleanUpOnExit();
    return child;
  } finally {
    closeSync(logFd);
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (hasExited(child)) return;
  // A frozen process cannot act on SIGTERM.
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  if (await waitForExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitForExit(child, 5_000);
}

/** The last `lines` lines of the given files, each under a header naming it. */
export function tailFiles(paths: readonly string[], lines = 40): string {
  const sections: string[] = [];
  for (const path of paths) {
    if (!existsSync(path)) continue;
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const length = Math.min(size, 64 * 1024);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      const text = buffer.toString('utf8').trimEnd();
      if (text === '') continue;
      sections.push(`[${path}]\n${text.split('\n').slice(-lines).join('\n')}`);
    } finally {
      closeSync(fd);
    }
  }
  return sections.join('\n');
}

interface ServerProcessSpec {
  /** Names the server in messages. */
  readonly name: string;
  readonly binary: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** Where stdout and stderr go. */
  readonly consoleLogPath: string;
  /** Files worth showing when the server fails (its own logs, the console capture). */
  readonly logPaths: readonly string[];
  /** True once the server answers like a ready server. */
  readonly isReady: () => Promise<boolean>;
  readonly startTimeoutMs: number;
}

/** One server process across stops and restarts. */
class ServerProcess {
  #child: ChildProcess | undefined;

  constructor(private readonly spec: ServerProcessSpec) {}

  get pid(): number | undefined {
    return this.#child !== undefined && !hasExited(this.#child) ? this.#child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const { name, startTimeoutMs } = this.spec;
    const child = spawnServer(this.spec.binary, this.spec.args, this.spec.consoleLogPath, this.spec.cwd);
    this.#child = child;
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
    });
    const deadline = Date.now() + startTimeoutMs;
    let lastProbeError: unknown;
    while (Date.now() < deadline) {
      if (spawnError !== undefined || hasExited(child)) {
        throw new ServerStartError(
          `${name} exited during startup (${describeExit(child, spawnError)})`,
          name,
          this.logTail(),
          true,
          { cause: spawnError },
        );
      }
      try {
        if (await this.spec.isReady()) return;
      } catch (error) {
        lastProbeError = error;
      }
      await sleep(PROBE_INTERVAL_MS);
    }
    await terminate(child, 2_000);
    throw new ServerStartError(
      `${name} did not become ready within ${startTimeoutMs} ms`,
      name,
      this.logTail(),
      false,
      { cause: lastProbeError },
    );
  }

  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    if (this.#child !== undefined) await terminate(this.#child, graceMs);
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || hasExited(child)) return;
    child.kill('SIGKILL');
    await waitForExit(child, 5_000);
  }

  async pause(): Promise<void> {
    this.signal('SIGSTOP');
    const pid = this.pid;
    if (pid === undefined) return;
    // Threads stop one by one, some ms after the signal under load, and one was seen running again for a
    // moment after all had stopped: only a stop that holds for a while counts.
    const deadline = Date.now() + 5_000;
    let stoppedSince: number | undefined;
    while (stoppedSince === undefined || Date.now() - stoppedSince < PAUSE_SETTLE_MS) {
      if (Date.now() > deadline)
        throw new Error(`${this.spec.name} (pid ${pid}) did not stay stopped on SIGSTOP`);
      stoppedSince = allThreadsStopped(pid) ? (stoppedSince ?? Date.now()) : undefined;
      await sleep(2);
    }
  }

  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    const child = this.#child;
    if (child === undefined || hasExited(child)) throw new Error(`${this.spec.name} is not running`);
    child.kill(signal);
  }

  logTail(lines = 40): string {
    return tailFiles(this.spec.logPaths, lines);
  }
}

/** True when every thread of the process is stopped; true as well where /proc cannot tell (not Linux). */
function allThreadsStopped(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/task`)) return true;
  return readdirSync(`/proc/${pid}/task`).every((thread) => {
    const statPath = `/proc/${pid}/task/${thread}/stat`;
    // A thread may end between listing and reading: it is not running then either.
    if (!existsSync(statPath)) return true;
    const stat = readFileSync(statPath, 'utf8');
    // The state follows the command name, which is in parentheses and may itself contain spaces.
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'T' || state === 't';
  });
}

function describeExit(child: ChildProcess, spawnError: Error | undefined): string {
  if (spawnError !== undefined) return spawnError.message;
  return child.signalCode !== null ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`;
}

async function httpText(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  return { status: response.status, body: await response.text() };
}

/** The first line a server sends on a new TCP connection, or `undefined` if it sends nothing in time. */
function tcpGreeting(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    const finish = (greeting: string | undefined) => {
      socket.destroy();
      resolve(greeting);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => finish(undefined));
    socket.once('error', () => finish(undefined));
    socket.once('data', (chunk) => finish(chunk.toString('utf8').split('\r\n', 1)[0]));
  });
}

/**
 * Starts a server, retrying with fresh ports when it dies at startup: another process may have taken a
 * port between `findFreePort()` and the bind.
 */
async function startWithPortRetry<T extends ManagedServer>(
  portsChosenByCaller: boolean,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const retriable =
        !portsChosenByCaller &&
        tries < START_ATTEMPTS_WITH_FRESH_PORTS &&
        error instanceof ServerStartError &&
        error.exitedEarly;
      if (!retriable) throw error;
    }
  }
}

async function ownedWorkDir(workDir: string | undefined, prefix: string): Promise<[string, boolean]> {
  if (workDir !== undefined) {
    mkdirSync(workDir, { recursive: true });
    return [workDir, false];
  }
  const created = await mkdtemp(join(tmpdir(), prefix));
  ownedWorkDirs.add(created);
  return [created, true];
}

async function removeOwnedWorkDir(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
  ownedWorkDirs.delete(workDir);
}

function managedServer(
  server: ServerProcess,
  url: string,
  version: string,
  workDir: string,
  ownsWorkDir: boolean,
): ManagedServer {
  return {
    url,
    version,
    get pid() {
      return server.pid;
    },
    get running() {
      return server.running;
    },
    stop: (options) => server.stop(options?.graceMs),
    kill: () => server.kill(),
    restart: async () => {
      await server.stop();
      await server.start();
    },
    pause: () => server.pause(),
    resume: () => server.signal('SIGCONT'),
    dispose: async () => {
      await server.stop();
      if (ownsWorkDir) await removeOwnedWorkDir(workDir);
    },
    logTail: (lines) => server.logTail(lines),
  };
}

// ---------------------------------------------------------------------------------------------------------
// NATS

/** Starts nats-server with JetStream on loopback; resolves once clients and JetStream are served. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = resolveServerBinary('nats-server', options.binary);
  const [workDir, ownsWorkDir] = await ownedWorkDir(options.workDir, 'greenstream-nats-');
  try {
    return await startWithPortRetry(options.port !== undefined || options.monitorPort !== undefined, () =>
      startNatsOnce(binary, workDir, ownsWorkDir, options),
    );
  } catch (error) {
    if (ownsWorkDir) await removeOwnedWorkDir(workDir);
    throw error;
  }
}

async function startNatsOnce(
  binary: string,
  workDir: string,
  ownsWorkDir: boolean,
  options: NatsServerOptions,
): Promise<NatsServer> {
  const port = options.port ?? (await findFreePort());
  const monitorPort = options.monitorPort ?? (await findFreePort());
  const storeDir = join(workDir, 'store');
  const logPath = join(workDir, 'nats-server.log');
  mkdirSync(storeDir, { recursive: true });
  const monitorUrl = `http://${LOOPBACK}:${monitorPort}`;
  // A unique server name tells our server apart from whatever else may answer on these ports.
  const serverName = uniqueName('greenstream_test_nats');
  const server = new ServerProcess({
    name: 'nats-server',
    binary,
    args: [
      '-js',
      '-n',
      serverName,
      '-a',
      LOOPBACK,
      '-p',
      String(port),
      '-m',
      String(monitorPort),
      '-sd',
      storeDir,
      ...(options.cluster === undefined
        ? []
        : [
            '--cluster_name',
            options.cluster.name,
            '--cluster',
            `nats://${LOOPBACK}:${options.cluster.port}`,
            '--routes',
            options.cluster.routes.join(','),
          ]),
      ...(options.config === undefined ? [] : ['-c', configFile(workDir, options.config)]),
    ],
    cwd: workDir,
    consoleLogPath: logPath,
    logPaths: [logPath],
    startTimeoutMs: options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    isReady: async () => {
      const health = await httpText(`${monitorUrl}/healthz?js-enabled-only=true`);
      if (health.status !== 200) return false;
      const greeting = await tcpGreeting(port);
      if (greeting === undefined || !greeting.startsWith('INFO ')) return false;
      const info = JSON.parse(greeting.slice('INFO '.length)) as {
        server_name?: unknown;
        jetstream?: unknown;
      };
      return info.server_name === serverName && info.jetstream === true;
    },
  });
  await server.start();
  let version = '';
  try {
    const varz = JSON.parse((await httpText(`${monitorUrl}/varz`)).body) as { version?: unknown };
    version = typeof varz.version === 'string' ? varz.version : '';
  } catch (error) {
    await server.stop();
    throw new ServerStartError(
      'nats-server did not report its version',
      'nats-server',
      server.logTail(),
      false,
      {
        cause: error,
      },
    );
  }
  const base = managedServer(server, `nats://${LOOPBACK}:${port}`, version, workDir, ownsWorkDir);
  return Object.defineProperties(base, {
    port: { value: port, enumerable: true },
    monitorUrl: { value: monitorUrl, enumerable: true },
    storeDir: { value: storeDir, enumerable: true },
  }) as NatsServer;
}

function configFile(workDir: string, text: string): string {
  const path = join(workDir, 'nats-server.conf');
  writeFileSync(path, text);
  return path;
}

/** Three (or `size`) nats-servers routed to each other on loopback, JetStream clustered. */
export interface NatsCluster {
  readonly servers: readonly NatsServer[];
  /** Every member's client URL, comma-separated: what `--source` takes. */
  readonly url: string;
  /** Resolves once the cluster has a JetStream meta leader (streams can be created). */
  waitForMetaLeader(timeoutMs?: number): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * Starts a JetStream cluster on loopback: each member with its own store folder, client, monitor and
 * route ports, routes to every other member. Members can be stopped and restarted one by one.
 */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const name = uniqueName('gs_cluster');
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) routePorts.push(await findFreePort());
  const started = await Promise.allSettled(
    routePorts.map((port, i) =>
      startNatsServer({
        cluster: {
          name,
          port,
          routes: routePorts.filter((_, j) => j !== i).map((p) => `nats://${LOOPBACK}:${p}`),
        },
      }),
    ),
  );
  const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (servers.length !== size) {
    await Promise.allSettled(servers.map((s) => s.dispose()));
    const failures = started.flatMap((s) => (s.status === 'rejected' ? [s.reason] : []));
    throw new AggregateError(failures, 'nats cluster did not start');
  }
  const waitForMetaLeader = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const server of servers) {
        if (!server.running) continue;
        try {
          const jsz = JSON.parse((await httpText(`${server.monitorUrl}/jsz`)).body) as {
            meta_cluster?: { leader?: string; cluster_size?: number };
          };
          if (jsz.meta_cluster?.leader) return;
        } catch {
          // not answering yet
        }
      }
      if (Date.now() > deadline)
        throw new Error(`nats cluster ${name}: no JetStream meta leader after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await waitForMetaLeader();
  return {
    servers,
    url: servers.map((s) => s.url).join(','),
    waitForMetaLeader,
    dispose: async () => {
      await Promise.allSettled(servers.map((s) => s.dispose()));
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// ClickHouse

/** Starts clickhouse-server (18.16 here) on loopback; resolves once `/ping` answers `Ok.`. */
export async function startClickHouseServer(
  options: ClickHouseServerOptions = {},
): Promise<ClickHouseServer> {
  const binary = resolveServerBinary('clickhouse-server', options.binary);
  const [workDir, ownsWorkDir] = await ownedWorkDir(options.workDir, 'greenstream-clickhouse-');
  const portsChosenByCaller =
    options.httpPort !== undefined ||
    options.tcpPort !== undefined ||
    options.interserverHttpPort !== undefined;
  try {
    return await startWithPortRetry(portsChosenByCaller, () =>
      startClickHouseOnce(binary, workDir, ownsWorkDir, options),
    );
  } catch (error) {
    if (ownsWorkDir) await removeOwnedWorkDir(workDir);
    throw error;
  }
}

async function startClickHouseOnce(
  binary: string,
  workDir: string,
  ownsWorkDir: boolean,
  options: ClickHouseServerOptions,
): Promise<ClickHouseServer> {
  const httpPort = options.httpPort ?? (await findFreePort());
  const tcpPort = options.tcpPort ?? (await findFreePort());
  const interserverHttpPort = options.interserverHttpPort ?? (await findFreePort());
  const configPath = join(workDir, 'config.xml');
  const usersPath = join(workDir, 'users.xml');
  const logPath = join(workDir, 'log', 'clickhouse-server.log');
  const errorLogPath = join(workDir, 'log', 'clickhouse-server.err.log');
  const consoleLogPath = join(workDir, 'log', 'console.log');
  mkdirSync(join(workDir, 'log'), { recursive: true });
  await writeFile(
    configPath,
    clickHouseConfigXml({
      workDir,
      usersPath,
      logPath,
      errorLogPath,
      httpPort,
      tcpPort,
      interserverHttpPort,
    }),
  );
  await writeFile(usersPath, CLICKHOUSE_USERS_XML);
  const url = `http://${LOOPBACK}:${httpPort}`;
  const server = new ServerProcess({
    name: 'clickhouse-server',
    binary,
    args: [`--config-file=${configPath}`],
    cwd: workDir,
    consoleLogPath,
    logPaths: [errorLogPath, consoleLogPath],
    startTimeoutMs: options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    isReady: async () => {
      const ping = await httpText(`${url}/ping`);
      if (ping.status !== 200 || ping.body.trim() !== 'Ok.') return false;
      // Another server may answer on this port; ours is the one whose data lives in our folder.
      const dataPath = await httpText(`${url}/?query=${encodeURIComponent(DEFAULT_DATABASE_PATH_QUERY)}`);
      return dataPath.status === 200 && dataPath.body.trim().startsWith(folderIn(workDir, 'data'));
    },
  });
  await server.start();
  let version = '';
  try {
    const answer = await httpText(`${url}/?query=${encodeURIComponent('SELECT version()')}`);
    if (answer.status !== 200) throw new Error(`HTTP ${answer.status}: ${answer.body.trim()}`);
    version = answer.body.trim();
  } catch (error) {
    await server.stop();
    throw new ServerStartError(
      'clickhouse-server did not answer SELECT version()',
      'clickhouse-server',
      server.logTail(),
      false,
      { cause: error },
    );
  }
  const base = managedServer(server, url, version, workDir, ownsWorkDir);
  return Object.defineProperties(base, {
    httpPort: { value: httpPort, enumerable: true },
    tcpPort: { value: tcpPort, enumerable: true },
    workDir: { value: workDir, enumerable: true },
  }) as ClickHouseServer;
}

const DEFAULT_DATABASE_PATH_QUERY = "SELECT data_path FROM system.databases WHERE name = 'default'";

/** ClickHouse wants folder paths with a trailing slash. */
function folderIn(workDir: string, name: string): string {
  return `${join(workDir, name)}/`;
}

interface ClickHouseConfigPlaces {
  workDir: string;
  usersPath: string;
  logPath: string;
  errorLogPath: string;
  httpPort: number;
  tcpPort: number;
  interserverHttpPort: number;
}

/**
 * The smallest config 18.16 runs with. No `query_log`/`part_log` sections, so no system log tables.
 * `keep_alive_timeout` stays at Debian's default (3 s) so tests meet the same keep-alive race as a stock
 * server (the client's idle socket TTL must stay below it).
 */
function clickHouseConfigXml(places: ClickHouseConfigPlaces): string {
  const folder = (name: string) => folderIn(places.workDir, name);
  return `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>${places.logPath}</log>
    <errorlog>${places.errorLogPath}</errorlog>
    <size>50M</size>
    <count>1</count>
  </logger>
  <listen_host>${LOOPBACK}</listen_host>
  <http_port>${places.httpPort}</http_port>
  <tcp_port>${places.tcpPort}</tcp_port>
  <interserver_http_port>${places.interserverHttpPort}</interserver_http_port>
  <interserver_http_host>${LOOPBACK}</interserver_http_host>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mark_cache_size>67108864</mark_cache_size>
  <path>${folder('data')}</path>
  <tmp_path>${folder('tmp')}</tmp_path>
  <user_files_path>${folder('user_files')}</user_files_path>
  <format_schema_path>${folder('format_schemas')}</format_schema_path>
  <users_config>${places.usersPath}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
`;
}

/** `greenstream_reader` (readonly=2: reads and session settings only) mirrors deploy/grafana's dashboard user. */
const CLICKHOUSE_USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
      <log_queries>0</log_queries>
    </default>
    <readonly>
      <readonly>2</readonly>
    </readonly>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <greenstream_reader>
      <password>reader-secret</password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>readonly</profile>
      <quota>default</quota>
    </greenstream_reader>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`;

// ---------------------------------------------------------------------------------------------------------
// Names

let nameCounter = 0;

/**
 * A name no other test file uses, valid as a JetStream stream/consumer name, a subject token and a
 * ClickHouse identifier. The shared servers serve every test file at once, and JetStream refuses two
 * streams whose subjects overlap, so each test names its streams, subjects and databases with this.
 */
export function uniqueName(prefix: string): string {
  nameCounter += 1;
  const random = Math.floor(Math.random() * 36 ** 4)
    .toString(36)
    .padStart(4, '0');
  return `${prefix}_${process.pid}_${nameCounter}_${random}`;
}
