import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FileMeter } from '../../codecs/types.js';
import type { Json } from '../../core/index.js';
import { type ImportFileReport, importSource, listImportFiles } from '../../pipelines/import-source.js';
import type { SourceBatch } from '../../pipelines/runner.js';

const values = Array(48).fill('0.5').join(',');
const NEM12 = `100,NEM12,1,a,b\n200,N1,E1,E1,E1,N1,M,KWH,30,\n300,20240301,${values},A,,,,\n300,20240302,${values},Q,,,,\n900\n`;

describe('the import source', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gs-import-source-'));
    await mkdir(join(dir, 'in', 'deep', 'er'), { recursive: true });
    await mkdir(join(dir, 'in', 'dead-letter'), { recursive: true });
    await writeFile(
      join(dir, 'in', 'a.csv'),
      'meter_id,timestamp,value,unit\nM1,2024-03-01T00:00:00Z,1,kW\n',
    );
    await writeFile(join(dir, 'in', 'deep', 'er', 'nem.CSV'), NEM12);
    await writeFile(
      join(dir, 'in', 'deep', 'broken.xml'),
      '<feed xmlns:espi="http://naesb.org/espi"><entry>',
    );
    await writeFile(join(dir, 'in', 'deep', '.hidden.csv'), 'x');
    await writeFile(join(dir, 'in', 'LICENSE.txt'), 'x');
    await writeFile(join(dir, 'in', 'dead-letter', 'old.csv'), 'x');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the files of the four formats under folders, sorted, without hidden ones or the dead letters', async () => {
    const files = await listImportFiles([join(dir, 'in'), join(dir, 'in', 'a.csv')], {
      exclude: join(dir, 'in', 'dead-letter'),
    });
    expect(files.map((f) => f.deadLetterPath)).toEqual([
      join('in', 'a.csv'),
      join('in', 'deep', 'broken.xml'),
      join('in', 'deep', 'er', 'nem.CSV'),
    ]);
    await expect(listImportFiles([join(dir, 'missing')])).rejects.toThrow(/cannot read/);
  });

  it('hands out one file a batch, dead-letters the undecodable, reports meters first, and resumes after its position', async () => {
    const files = await listImportFiles([join(dir, 'in')], { exclude: join(dir, 'in', 'dead-letter') });
    const meters: FileMeter[] = [];
    const reports: ImportFileReport[] = [];
    const options = {
      files,
      deadLetterDir: join(dir, 'dl'),
      receivedAt: 0,
      now: () => 7,
      onMeters: (m: readonly FileMeter[]) => meters.push(...m),
      onFile: (r: ImportFileReport) => reports.push(r),
    };
    const source = importSource(options);
    await source.open(undefined);
    expect(await source.pending?.()).toBe(3);
    const first = (await source.next()) as SourceBatch;
    expect(first.records).toHaveLength(1);
    const position = source.position();
    const broken = (await source.next()) as SourceBatch;
    expect(broken).toMatchObject({ records: [], deadLettered: 1 });
    const reason = JSON.parse(
      await readFile(join(dir, 'dl', 'in', 'deep', 'broken.xml.reason.json'), 'utf8'),
    );
    expect(reason.reason).toContain('not well-formed XML');
    const nem = (await source.next()) as SourceBatch;
    expect(nem.records).toHaveLength(48);
    expect(nem.quarantined).toEqual([
      expect.objectContaining({ source: `${files[2]!.path}#4`, quarantinedAt: 7, ts: null }),
    ]);
    expect(meters.map((m) => m.meterId)).toEqual(['N1-E1']);
    expect(reports.map((r) => [r.readings, r.quarantined, r.deadLetter !== undefined])).toEqual([
      [1, 0, false],
      [0, 0, true],
      [48, 1, false],
    ]);
    expect(await source.next()).toBe('end');
    // A restart from the position taken after the first file reads the other two again, not the first.
    const again = importSource(options);
    await again.open(JSON.parse(JSON.stringify(position)) as Json);
    expect(await again.pending?.()).toBe(2);
    expect(((await again.next()) as SourceBatch).deadLettered).toBe(1);
  });
});
