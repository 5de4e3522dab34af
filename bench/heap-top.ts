/**
 * `node dist/bench/heap-top.js <file.heapprofile> [n] [--per <count>]`: the allocation sites with the most
 * bytes in a V8 sampling heap profile (as `--heap-profile` of `per-meter-chain.js` or `in-memory.js` writes
 * it, collected objects included), each as the function that allocated and its caller, with its share and,
 * given `--per` (the readings the profile covers), bytes per reading. Built-ins (`slice`, `push`, …) have
 * no frame of their own in such a profile: their bytes are the calling function's.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface HeapNode {
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly selfSize: number;
  readonly children: HeapNode[];
}

export interface HeapProfile {
  readonly head: HeapNode;
}

const frameName = (f: HeapNode['callFrame']): string => {
  const file = f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
  return `${f.functionName || '(anonymous)'}${f.url === '' ? '' : ` ${file}:${f.lineNumber + 1}`}`;
};

/** Bytes by allocating function and its caller, largest first. */
export function topSites(
  profile: HeapProfile,
  n: number,
): { sites: { site: string; bytes: number; share: number }[]; total: number } {
  const bytes = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, caller: string): void => {
    const name = frameName(node.callFrame);
    if (node.selfSize > 0) {
      const key = `${name}  ← ${caller}`;
      bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    for (const c of node.children) walk(c, name);
  };
  walk(profile.head, '');
  const sites = [...bytes]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([site, b]) => ({ site, bytes: b, share: Math.round((b / total) * 1000) / 10 }));
  return { sites, total };
}

if (process.argv[1]?.endsWith('heap-top.js')) {
  const { values, positionals } = parseArgs({
    options: { per: { type: 'string' } },
    allowPositionals: true,
  });
  const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as HeapProfile;
  const per = values.per === undefined ? undefined : Number(values.per);
  const { sites, total } = topSites(profile, Number(positionals[1] ?? 30));
  const all = per === undefined ? '' : ` (${(total / per).toFixed(1)} B/reading)`;
  console.log(`${(total / 1e6).toFixed(1)} MB allocated in all${all}`);
  for (const r of sites) {
    const mb = (r.bytes / 1e6).toFixed(1).padStart(8);
    const each = per === undefined ? '' : `${(r.bytes / per).toFixed(1).padStart(7)} B/reading`;
    console.log(`${mb} MB ${String(r.share).padStart(5)} % ${each}  ${r.site}`);
  }
}
