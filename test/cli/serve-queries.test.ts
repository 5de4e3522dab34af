import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../cli/main.js';
import { embeddedQueries } from '../../cli/serve-queries.js';
import { readOwnerLock } from '../../connectors/chdb-lock.js';
import { MetricsRegistry } from '../../pipelines/metrics.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('the worker side of the query endpoint', () => {
  it('serves an embedded store only, with limits from the flags', () => {
    const server = { kind: 'server', url: 'http://127.0.0.1:8123' } as const;
    expect(embeddedQueries(server, {}, {}, new MetricsRegistry())).toBeUndefined();
    const chdb = { kind: 'chdb', path: '/nonexistent/chdb' } as const;
    expect(() => embeddedQueries(chdb, { 'query-max-rows': '0' }, {}, new MetricsRegistry())).toThrow(
      UsageError,
    );
    expect(() => embeddedQueries(chdb, { 'query-timeout': 'soon' }, {}, new MetricsRegistry())).toThrow(
      UsageError,
    );
    expect(
      embeddedQueries(chdb, { 'query-max-rows': '10', 'query-timeout': '5' }, {}, new MetricsRegistry()),
    ).toBeDefined();
  });

  it('names the endpoint in the owner file once open, and removes it at close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gs-serve-queries-'));
    dirs.push(dir);
    const queries = embeddedQueries({ kind: 'chdb', path: dir }, {}, {}, new MetricsRegistry())!;
    queries.start('http://127.0.0.1:1');
    const deadline = Date.now() + 10_000;
    while (readOwnerLock(dir) === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(readOwnerLock(dir)).toMatchObject({ endpoint: 'http://127.0.0.1:1', pid: process.pid });
    await queries.close();
    expect(readOwnerLock(dir)).toBeUndefined();
  });
});
