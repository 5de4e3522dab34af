import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { sql } from '../../codecs/sql.js';
import { type HotStore, openHotStore } from '../../connectors/clickhouse.js';
import type { QuarantineRecord } from '../../schemas/reading.js';

/**
 * Quarantine keeps clock-reset and far-future readings. Their times must store on both engines: ClickHouse
 * 26 reads a DateTime field of fewer than ten digits as a pattern, and DateTime ends in 2106.
 */
describe('quarantine times at the edges of DateTime', () => {
  const dirs: string[] = [];
  const stores: HotStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const rows: QuarantineRecord[] = [
    {
      meterId: 'm',
      ts: 0,
      raw: 'a',
      reasons: ['clock_reset'],
      source: 's#1',
      quarantinedAt: Date.UTC(2024, 2, 11),
    },
    {
      meterId: 'm',
      ts: Date.UTC(2000, 0, 1),
      raw: 'b',
      reasons: ['clock_reset'],
      source: 's#2',
      quarantinedAt: Date.UTC(2024, 2, 11),
    },
    {
      meterId: 'm',
      ts: Date.UTC(1969, 11, 31),
      raw: 'c',
      reasons: ['clock_reset'],
      source: 's#3',
      quarantinedAt: Date.UTC(2024, 2, 11),
    },
    {
      meterId: 'm',
      ts: Date.UTC(3000, 0, 1),
      raw: 'd',
      reasons: ['future_timestamp'],
      source: 's#4',
      quarantinedAt: Date.UTC(2024, 2, 11),
    },
  ];

  it.each(['server', 'chdb'] as const)(
    'stores them on the %s engine, NULL outside 1970–2106',
    async (engine) => {
      let store: HotStore;
      if (engine === 'server')
        store = openHotStore({ kind: 'server', url: inject('clickhouseUrl'), database: 'gs_dt_edges' });
      else {
        const dir = await mkdtemp(join(tmpdir(), 'gs-dt-'));
        dirs.push(dir);
        store = openHotStore({ kind: 'chdb', path: dir });
      }
      stores.push(store);
      await store.migrate();
      await store.insert('quarantine', rows);
      const back = await store.query<{ raw: string; t: string | number | null }>(
        sql`SELECT raw, toUnixTimestamp(ts) AS t FROM ${store.relation('quarantine')} FINAL ORDER BY raw`,
      );
      expect(back.map((r) => [r.raw, r.t === null ? null : Number(r.t)])).toEqual([
        ['a', 0],
        ['b', Date.UTC(2000, 0, 1) / 1000],
        ['c', null],
        ['d', null],
      ]);
    },
  );
});
