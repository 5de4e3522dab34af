/**
 * The deployment manifests against the CLI (no container engine runs here): every flag and environment
 * variable they give a GreenStream process exists, the metrics port is the one probes, health checks and
 * Services use, and the per-meter workers' partition sets cover every partition exactly once and match the
 * cross-meter stage's upstream partitions.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { envNames } from '../../cli/option-table.js';
import { runOptionSpecs } from '../../cli/run.js';
import { parsePartitionSet } from '../../pipelines/partition-set.js';
import { repoRoot } from '../pipelines/helpers.js';

const ALL_PARTITIONS = parsePartitionSet('0-15');
const METRICS_PORT = 9464;

/** Flags `run` has: its option table is what parsing, help and the README come from. */
const runFlags = new Set(runOptionSpecs.map((o) => o.name));

/** Environment variables the code reads: `env.NAME` / `process.env.NAME` anywhere under these folders. */
function envRead(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts'))
        for (const m of readFileSync(path, 'utf8').matchAll(/env\.([A-Z][A-Z0-9_]*)/g)) out.add(m[1]!);
    }
  };
  for (const dir of ['cli', 'pipelines', 'connectors']) walk(join(repoRoot, dir));
  // Every flag of `run` also reads its environment variable(s), named in the option table.
  for (const spec of runOptionSpecs) for (const name of envNames(spec)) out.add(name);
  return out;
}
const knownEnv = envRead();

/** The `greenstream` arguments of a command line (`node bin/greenstream.js run …` inside a shell script too). */
function greenstreamArgs(command: readonly string[]): string[] {
  const script = command.join(' ');
  const m = /(?:greenstream\.js\s+)?(run\b.*)$/s.exec(script);
  expect(m, `no greenstream run in ${script}`).not.toBeNull();
  return m![1]!.split(/\s+/).filter((a) => a !== '');
}

function expectKnownFlags(args: readonly string[], where: string) {
  expect(args[0], where).toBe('run');
  for (const arg of args.filter((a) => a.startsWith('--'))) {
    expect(
      runFlags.has(arg.slice(2).split('=')[0]!),
      `${where}: ${arg} is not a flag of greenstream run`,
    ).toBe(true);
  }
}

/** Every variable is read by the CLI, or consumed by the container's own script (`${NAME}`). */
function expectKnownEnv(names: readonly string[], script: string, where: string) {
  for (const name of names) {
    const used = knownEnv.has(name) || script.includes(`$\{${name}}`) || name === 'MALLOC_ARENA_MAX';
    expect(used, `${where}: $${name} is read by nothing`).toBe(true);
  }
}

function expectExactCover(sets: readonly string[], where: string) {
  const all = sets.flatMap((s) => parsePartitionSet(s));
  expect(
    [...all].sort((a, b) => a - b),
    `${where}: partitions covered`,
  ).toEqual(ALL_PARTITIONS);
  expect(new Set(all).size, `${where}: a partition owned twice`).toBe(all.length);
}

describe('deploy/compose.yaml', () => {
  const compose = parseYaml(readFileSync(join(repoRoot, 'deploy/compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, ComposeService>;
    volumes: Record<string, unknown>;
  };
  interface ComposeService {
    image?: string;
    build?: unknown;
    command?: string[];
    environment?: Record<string, string>;
    volumes?: string[];
    restart?: string;
    healthcheck?: { test: string[] };
    depends_on?: Record<string, { condition: string }>;
  }
  const workers = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

  it('runs GreenStream with flags and variables the CLI has, the NATS URL list as written, the registry and lake mounted', () => {
    expect(workers.length).toBe(4);
    for (const [name, s] of workers) {
      const args = greenstreamArgs(s.command ?? []);
      expectKnownFlags(args, name);
      expectKnownEnv(Object.keys(s.environment ?? {}), '', name);
      expect(args, `${name}: --source would override $NATS_URL`).not.toContain('--source');
      expect(s.environment?.NATS_URL?.split(','), name).toEqual(
        [1, 2, 3].map((n) => `nats://nats-${n}:4222`),
      );
      const registry = args[args.indexOf('--registry') + 1]!;
      const mounts = (s.volumes ?? []).map((v) => v.split(':'));
      expect(
        mounts.some(([, at]) => at !== undefined && registry.startsWith(`${at}/`)),
        `${name}: registry mounted`,
      ).toBe(true);
      const lake = args[args.indexOf('--cold') + 1]!;
      const lakeMount = mounts.find(([, at]) => at === lake);
      expect(lakeMount, `${name}: lake on a volume`).toBeDefined();
      expect(compose.volumes).toHaveProperty(lakeMount![0]!);
      expect(s.restart, name).toBe('unless-stopped');
      expect(s.environment?.GS_METRICS_PORT, name).toBe(String(METRICS_PORT));
      expect(s.healthcheck?.test.join(' '), name).toContain(`127.0.0.1:${METRICS_PORT}/readyz`);
    }
    for (const [name, s] of Object.entries(compose.services)) {
      expect(s.restart, name).toBe('unless-stopped');
      expect(s.healthcheck, `${name}: health check`).toBeDefined();
    }
  });

  it("gives the workers' partition sets every partition once, the cross-meter stage all of them", () => {
    const perMeter = workers.filter(([, s]) => s.environment?.GS_STAGE === undefined);
    expectExactCover(
      perMeter.map(([, s]) => s.environment!.GS_PARTITIONS!),
      'compose',
    );
    const ids = workers.map(([, s]) => s.environment?.GS_WORKER);
    expect(new Set(ids).size, 'worker ids are distinct').toBe(ids.length);
    const cross = workers.filter(([, s]) => s.environment?.GS_STAGE === 'cross-meter');
    expect(cross.length).toBe(1);
    expect(parsePartitionSet(cross[0]![1].environment!.GS_UPSTREAM_PARTITIONS!)).toEqual(ALL_PARTITIONS);
  });
});

describe('deploy/k8s', () => {
  const dir = join(repoRoot, 'deploy/k8s');
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
  const docs: any[] = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJSON()));
  const byKind = (kind: string) => docs.filter((d) => d.kind === kind);
  const workloads = [...byKind('StatefulSet'), ...byKind('Deployment')];

  it('parses, and every workload runs the CLI with its flags and variables, probes on /healthz and /readyz at the metrics port', () => {
    expect(byKind('StatefulSet').length).toBe(1);
    expect(byKind('Deployment').length).toBe(1);
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      for (const c of pod.containers) {
        const where = `${w.metadata.name}/${c.name}`;
        const commandLine = [...(c.command ?? []), ...(c.args ?? [])];
        expectKnownFlags(greenstreamArgs(commandLine), where);
        const env = (c.env ?? []) as { name: string; value?: string }[];
        expectKnownEnv(
          env.map((e) => e.name),
          commandLine.join(' '),
          where,
        );
        const port = c.ports.find((p: { name: string }) => p.name === 'metrics');
        expect(port.containerPort, where).toBe(METRICS_PORT);
        expect(env.find((e) => e.name === 'GS_METRICS_PORT')?.value, where).toBe(String(port.containerPort));
        expect(
          env.find((e) => e.name === 'GS_METRICS_HOST')?.value,
          `${where}: reachable by the kubelet`,
        ).toBe('0.0.0.0');
        expect(c.livenessProbe.httpGet, where).toEqual({ path: '/healthz', port: 'metrics' });
        expect(c.readinessProbe.httpGet, where).toEqual({ path: '/readyz', port: 'metrics' });
        expect(c.resources.requests.memory, where).toBeDefined();
        expect(c.resources.limits.memory, where).toBeDefined();
        expect(env.find((e) => e.name === 'NATS_URL')?.value?.split(',').length, where).toBe(3);
        // Every mount names a volume of the pod.
        for (const m of c.volumeMounts ?? [])
          expect(
            pod.volumes.map((v: { name: string }) => v.name),
            where,
          ).toContain(m.name);
      }
      expect(w.spec.selector.matchLabels).toEqual(
        expect.objectContaining(
          Object.fromEntries(
            Object.entries(w.spec.template.metadata.labels).filter(([k]) => k in w.spec.selector.matchLabels),
          ),
        ),
      );
    }
  });

  it("picks each StatefulSet pod's worker id and partition set by its ordinal: every partition once", () => {
    const sts = byKind('StatefulSet')[0];
    const c = sts.spec.template.spec.containers[0];
    const script = [...c.command, ...c.args].join(' ');
    const ordinalRef = '$' + '{GS_ORDINAL}';
    expect(script).toContain(`GS_WORKER="w${ordinalRef}"`);
    expect(script).toContain(`/etc/greenstream/partitions/${ordinalRef}`);
    const ordinal = c.env.find((e: { name: string }) => e.name === 'GS_ORDINAL');
    expect(ordinal.valueFrom.fieldRef.fieldPath).toBe("metadata.labels['apps.kubernetes.io/pod-index']");
    const mount = c.volumeMounts.find(
      (m: { mountPath: string }) => m.mountPath === '/etc/greenstream/partitions',
    );
    const volume = sts.spec.template.spec.volumes.find((v: { name: string }) => v.name === mount.name);
    const config = byKind('ConfigMap').find((m) => m.metadata.name === volume.configMap.name);
    const ordinals = Array.from({ length: sts.spec.replicas }, (_, i) => String(i));
    expect(Object.keys(config.data).sort()).toEqual(ordinals);
    expectExactCover(
      ordinals.map((o) => config.data[o]),
      'StatefulSet ordinals',
    );
    const cross = byKind('Deployment')[0].spec.template.spec.containers[0];
    expect(cross.args).toEqual(expect.arrayContaining(['--stage', 'cross-meter']));
    const upstream = cross.env.find((e: { name: string }) => e.name === 'GS_UPSTREAM_PARTITIONS').value;
    expect(parsePartitionSet(upstream)).toEqual(ALL_PARTITIONS);
  });

  it('has a PodDisruptionBudget for the workers and Services whose selectors and ports reach the pods', () => {
    const podLabels = workloads.map((w) => w.spec.template.metadata.labels as Record<string, string>);
    const matches = (selector: Record<string, string>) =>
      podLabels.filter((labels) => Object.entries(selector).every(([k, v]) => labels[k] === v)).length;
    const [pdb] = byKind('PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(byKind('StatefulSet')[0].spec.selector.matchLabels);
    const services = byKind('Service');
    const metrics = services.find((s) => s.metadata.name === 'greenstream-metrics');
    expect(matches(metrics.spec.selector), 'the metrics Service reaches every workload').toBe(
      workloads.length,
    );
    for (const s of services) {
      expect(matches(s.spec.selector), s.metadata.name).toBeGreaterThan(0);
      for (const p of s.spec.ports) {
        expect(p.targetPort === 'metrics' || p.targetPort === METRICS_PORT, s.metadata.name).toBe(true);
        expect(p.port).toBe(METRICS_PORT);
      }
    }
    const sts = byKind('StatefulSet')[0];
    expect(services.map((s) => s.metadata.name)).toContain(sts.spec.serviceName);
    // The shared lake claim both workloads mount exists.
    const claims = byKind('PersistentVolumeClaim').map((p) => p.metadata.name);
    for (const w of workloads)
      for (const v of w.spec.template.spec.volumes)
        if (v.persistentVolumeClaim !== undefined)
          expect(claims).toContain(v.persistentVolumeClaim.claimName);
  });
});
