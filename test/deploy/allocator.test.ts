/**
 * The worker's glibc allocator settings: the image (`deploy/container/Dockerfile`) and the bench's measured
 * processes (`bench/protocol.ts`) set the same ones, and under them array buffers freed by the JS side go
 * back to the kernel instead of staying in glibc's main arena.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocatorEnv } from '../../bench/protocol.js';
import { repoRoot } from '../pipelines/helpers.js';

/** `ENV MALLOC_*=…` lines of the worker image. */
function imageMallocEnv(): Record<string, string> {
  const dockerfile = readFileSync(join(repoRoot, 'deploy/container/Dockerfile'), 'utf8');
  const out: Record<string, string> = {};
  for (const m of dockerfile.matchAll(/^ENV\s+(MALLOC_[A-Z_]+)=(\S+)\s*$/gm)) out[m[1]!] = m[2]!;
  return out;
}

/**
 * Allocates 1 MiB array buffers with a small one kept alive after each (so freed space is never at the
 * arena's top, where glibc would trim it), drops the large ones, and prints the resident MiB of `[heap]`.
 */
const FRAGMENT = `
const keep = [];
for (let round = 0; round < 4; round++) {
  let big = [];
  for (let i = 0; i < 64; i++) {
    big.push(new Uint8Array((1 << 20) + i * 4096).fill(1));
    keep.push(new Uint8Array(2048).fill(1));
  }
  big = [];
  globalThis.gc();
}
const smaps = require('node:fs').readFileSync('/proc/self/smaps', 'utf8');
const at = smaps.indexOf('[heap]');
console.log(at < 0 ? 0 : Number(/Rss:\\s+(\\d+) kB/.exec(smaps.slice(at))[1]) / 1024);
`;

function heapMibAfterFragmenting(env: NodeJS.ProcessEnv): number {
  const out = execFileSync(process.execPath, ['--expose-gc', '-e', FRAGMENT], { env, encoding: 'utf8' });
  return Number(out.trim());
}

describe('glibc allocator settings', () => {
  it('the worker image sets what the bench gives the processes it measures', () => {
    expect(imageMallocEnv()).toEqual(allocatorEnv({}));
  });

  it('a setting in the environment wins over the image default', () => {
    expect(allocatorEnv({ MALLOC_MMAP_THRESHOLD_: '65536' }).MALLOC_MMAP_THRESHOLD_).toBe('65536');
  });

  it.runIf(process.platform === 'linux')(
    'freed array buffers leave glibc’s main arena under them (~64 MiB stays without)',
    () => {
      const { MALLOC_ARENA_MAX: _a, MALLOC_MMAP_THRESHOLD_: _t, ...rest } = process.env;
      expect(heapMibAfterFragmenting({ ...rest, ...allocatorEnv({}) })).toBeLessThan(16);
    },
  );
});
