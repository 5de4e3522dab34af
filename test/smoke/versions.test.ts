/**
 * Records which versions of every component the suite ran against in `.tmp/versions.json`, so a result
 * can always be traced to its engines.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { createChdbConnection } from 'chdb/connection';
import { describe, expect, inject, it } from 'vitest';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function packageVersion(name: string): Promise<string> {
  const manifestPath = join(repoRoot, 'node_modules', name, 'package.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { version: string };
  return manifest.version;
}

async function chdbEngineVersion(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'greenstream-chdb-version-'));
  const connection = createChdbConnection({ path: dataDir });
  try {
    const result = await connection.chdb.queryAsync('SELECT version()', { format: 'TabSeparated' });
    return result.text().trim();
  } finally {
    await connection.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function duckdbEngineVersion(): Promise<string> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    const [{ version }] = (await connection.runAndReadAll('SELECT version() AS version')).getRowObjectsJS();
    return String(version);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

describe('component versions', () => {
  it('reports every engine version and writes them to .tmp/versions.json', async () => {
    const versions = {
      recordedAt: new Date().toISOString(),
      node: process.versions.node,
      natsServer: inject('natsVersion'),
      clickhouseServer: inject('clickhouseServerVersion'),
      chdbEngine: await chdbEngineVersion(),
      duckdbEngine: await duckdbEngineVersion(),
      packages: Object.fromEntries(
        await Promise.all(
          [
            '@nats-io/transport-node',
            '@nats-io/jetstream',
            '@clickhouse/client',
            'chdb',
            '@duckdb/node-api',
            'apache-arrow',
            'rxjs',
            'vitest',
            'typescript',
          ].map(async (name) => [name, await packageVersion(name)] as const),
        ),
      ),
    };
    console.log(JSON.stringify(versions, null, 2));

    for (const engine of [versions.natsServer, versions.clickhouseServer, versions.chdbEngine]) {
      expect(engine).toMatch(/^\d+\.\d+\.\d+/);
    }
    expect(versions.duckdbEngine).toMatch(/^v\d+\.\d+\.\d+/);

    await mkdir(join(repoRoot, '.tmp'), { recursive: true });
    await writeFile(join(repoRoot, '.tmp', 'versions.json'), `${JSON.stringify(versions, null, 2)}\n`);
  });
});
