/**
 * `node dist/bench/profile-top.js <file.cpuprofile> [n]`: the functions with the most self time in a V8
 * CPU profile (as written by `node --cpu-prof`), with their share of the samples.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly hitCount?: number;
}

interface Profile {
  readonly nodes: ProfileNode[];
  readonly samples: number[];
  readonly timeDeltas: number[];
  readonly startTime: number;
  readonly endTime: number;
}

export function topFunctions(profile: Profile, n: number): { name: string; selfMs: number; share: number }[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${file}${url === '' ? '' : `:${lineNumber + 1}`}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({
      name,
      selfMs: Math.round(us / 1000),
      share: Math.round((us / total) * 1000) / 10,
    }));
}

if (process.argv[1]?.endsWith('profile-top.js')) {
  const profile = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Profile;
  const rows = topFunctions(profile, Number(process.argv[3] ?? 25));
  for (const r of rows)
    console.log(`${String(r.selfMs).padStart(7)} ms ${String(r.share).padStart(5)} %  ${r.name}`);
}
