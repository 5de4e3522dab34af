import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSimulation,
  generateRegistry,
  type SimulationOptions,
  simulate,
} from '../../simulator/index.js';

function hashSimulation(options: SimulationOptions): string {
  const simulation = createSimulation(options);
  const hash = createHash('sha256');
  hash.update(simulation.registryCsv());
  hash.update(JSON.stringify(simulation.labels));
  for (const file of simulation.hours()) {
    hash.update(file.path);
    hash.update(file.csv);
  }
  return hash.digest('hex');
}

/** Hash of every file under `root`: relative path and bytes, in sorted order. */
function hashTree(root: string): string {
  const hash = createHash('sha256');
  const walk = (folder: string) => {
    for (const name of readdirSync(folder).sort()) {
      const path = join(folder, name);
      if (statSync(path).isDirectory()) walk(path);
      else {
        hash.update(path.slice(root.length));
        hash.update(readFileSync(path));
      }
    }
  };
  walk(root);
  return hash.digest('hex');
}

const base: SimulationOptions = { meters: 250, days: 3, start: '2024-03-11', seed: 7 };

describe('determinism', () => {
  it('gives the same bytes for the same seed, in memory', () => {
    expect(hashSimulation(base)).toBe(hashSimulation(base));
  });

  it('gives different data for another seed', () => {
    expect(hashSimulation({ ...base, seed: 8 })).not.toBe(hashSimulation(base));
  });

  it('builds the same registry alone as within a whole simulation', () => {
    expect(generateRegistry(base)).toEqual(createSimulation(base).registry);
  });

  describe('on disk', () => {
    const roots: string[] = [];
    afterAll(() => {
      for (const root of roots) rmSync(root, { recursive: true, force: true });
    });

    it('writes identical trees for the same seed and different ones for another seed', async () => {
      const run = async (seed: number) => {
        const out = mkdtempSync(join(tmpdir(), 'gs-sim-'));
        roots.push(out);
        const summary = await simulate({ meters: 120, days: 2, start: '2024-03-11', seed, out });
        return { out, summary, hash: hashTree(out) };
      };
      const first = await run(11);
      const second = await run(11);
      const other = await run(12);
      expect(second.hash).toBe(first.hash);
      expect(other.hash).not.toBe(first.hash);
      expect(first.summary).toEqual({ ...second.summary, out: first.out });
      expect(first.summary.files).toBe(2 * 24 * 2);
    });
  });
});
