import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LandingError,
  LandingSource,
  landingReceivedAt,
  listLandingFiles,
  parseLedgerState,
} from '../../connectors/landing.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'gs-landing-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function land(relative: string, content = 'meter_id,timestamp,value,unit\n'): Promise<void> {
  const path = join(root, relative);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
}

describe('listLandingFiles', () => {
  it('lists raw/YYYY/MM/DD/HH files in event-time order and skips what is not part of the layout', async () => {
    // Written out of order on purpose.
    await land('raw/2024/03/15/14/MTR-2.csv');
    await land('raw/2024/03/15/09/MTR-9.csv');
    await land('raw/2024/03/15/14/MTR-1.json', '[]');
    await land('raw/2023/12/31/23/MTR-5.csv');
    await land('raw/2024/03/15/14/.MTR-3.csv'); // hidden: a writer's temporary
    await land('raw/2024/03/15/14/MTR-4.csv.tmp'); // being written
    await land('raw/2024/03/15/14/notes.txt');
    await land('raw/2024/03/15/misplaced.csv'); // not in an hour folder
    await land('raw/2024/3/15/14/MTR-6.csv'); // month not two digits
    const files = await listLandingFiles(root);
    expect(files.map((f) => f.path)).toEqual([
      'raw/2023/12/31/23/MTR-5.csv',
      'raw/2024/03/15/09/MTR-9.csv',
      'raw/2024/03/15/14/MTR-1.json',
      'raw/2024/03/15/14/MTR-2.csv',
    ]);
    // The raw folder itself may be given as the root; paths stay the same.
    expect((await listLandingFiles(join(root, 'raw'))).map((f) => f.path)).toEqual(files.map((f) => f.path));
  });

  it('returns nothing for a landing folder that does not exist yet', async () => {
    expect(await listLandingFiles(join(root, 'nope'))).toEqual([]);
  });
});

describe('LandingSource', () => {
  it('hands out files in bounded batches, with bytes, content type and the landing hour', async () => {
    for (let i = 0; i < 5; i++)
      await land(`raw/2024/03/15/14/MTR-${i}.csv`, `meter_id,timestamp,value,unit\nMTR-${i},t,1,kW\n`);
    const source = new LandingSource({ root, maxFilesPerBatch: 2 });
    const first = await source.nextBatch();
    expect(first.map((f) => f.path)).toEqual(['raw/2024/03/15/14/MTR-0.csv', 'raw/2024/03/15/14/MTR-1.csv']);
    expect(first[0].bytes.toString()).toBe('meter_id,timestamp,value,unit\nMTR-0,t,1,kW\n');
    expect(first[0].contentType).toBe('text/csv');
    expect(first[0].receivedAt).toBe(Date.UTC(2024, 2, 15, 15));
    expect((await source.nextBatch()).map((f) => f.path)).toEqual([
      'raw/2024/03/15/14/MTR-2.csv',
      'raw/2024/03/15/14/MTR-3.csv',
    ]);
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/MTR-4.csv']);
    expect(await source.nextBatch()).toEqual([]);
  });

  it('stops a batch at the byte budget but always hands out at least one file', async () => {
    await land('raw/2024/03/15/14/a.csv', 'x'.repeat(600));
    await land('raw/2024/03/15/14/b.csv', 'x'.repeat(600));
    await land('raw/2024/03/15/14/c.csv', 'x'.repeat(600));
    const source = new LandingSource({ root, maxBytesPerBatch: 500, readConcurrency: 1 });
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/a.csv']);
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/b.csv']);
  });

  it('processes each file once across restarts through the ledger in the checkpoint', async () => {
    await land('raw/2024/03/15/14/a.csv');
    await land('raw/2024/03/15/14/b.csv');
    await land('raw/2024/03/15/15/c.csv');
    const first = new LandingSource({ root, maxFilesPerBatch: 2 });
    const batch = await first.nextBatch();
    expect(batch.map((f) => f.path)).toEqual(['raw/2024/03/15/14/a.csv', 'raw/2024/03/15/14/b.csv']);
    first.markProcessed(batch.map((f) => f.path));
    // The ledger travels as JSON text in a checkpoint.
    const checkpoint = JSON.stringify(first.ledgerState());
    expect(JSON.parse(checkpoint)).toEqual({
      version: 1,
      floor: null,
      processed: { '2024/03/15/14': ['a.csv', 'b.csv'] },
    });

    await land('raw/2024/03/15/14/d.csv'); // landed late in an hour already read
    const restarted = new LandingSource({ root, ledger: JSON.parse(checkpoint) });
    const rest = await restarted.nextBatch();
    expect(rest.map((f) => f.path)).toEqual(['raw/2024/03/15/14/d.csv', 'raw/2024/03/15/15/c.csv']);
    expect(restarted.isProcessed('raw/2024/03/15/14/a.csv')).toBe(true);
    expect(restarted.isProcessed('raw/2024/03/15/15/c.csv')).toBe(false);
  });

  it('does not hand out in-flight files twice, and hands released ones out again', async () => {
    await land('raw/2024/03/15/14/a.csv');
    await land('raw/2024/03/15/14/b.csv');
    const source = new LandingSource({ root, maxFilesPerBatch: 1 });
    const a = await source.nextBatch();
    expect(a.map((f) => f.path)).toEqual(['raw/2024/03/15/14/a.csv']);
    const b = await source.nextBatch();
    expect(b.map((f) => f.path)).toEqual(['raw/2024/03/15/14/b.csv']);
    expect(await source.nextBatch()).toEqual([]); // both in flight; a re-listing must not return them
    source.release(['raw/2024/03/15/14/a.csv']); // its commit failed
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/a.csv']);
    source.markProcessed(['raw/2024/03/15/14/a.csv', 'raw/2024/03/15/14/b.csv']);
    expect(await source.nextBatch()).toEqual([]);
  });

  it('picks up files that land after the first listing', async () => {
    await land('raw/2024/03/15/14/a.csv');
    const source = new LandingSource({ root });
    source.markProcessed((await source.nextBatch()).map((f) => f.path));
    expect(await source.nextBatch()).toEqual([]);
    await land('raw/2024/03/15/16/b.csv');
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/16/b.csv']);
  });

  it('skips files younger than minFileAgeMs, for writers that do not use temporary names', async () => {
    await land('raw/2024/03/15/14/a.csv');
    let now = Date.now();
    const source = new LandingSource({ root, minFileAgeMs: 60_000, now: () => now });
    expect(await source.nextBatch()).toEqual([]);
    now += 120_000;
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/a.csv']);
  });

  it('compacts the ledger: hours before the floor count as processed and are forgotten', async () => {
    await land('raw/2024/03/15/13/a.csv');
    await land('raw/2024/03/15/14/b.csv');
    const source = new LandingSource({ root });
    source.markProcessed((await source.nextBatch()).map((f) => f.path));
    source.compactBefore('2024/03/15/14');
    expect(source.ledgerState()).toEqual({
      version: 1,
      floor: '2024/03/15/14',
      processed: { '2024/03/15/14': ['b.csv'] },
    });
    await land('raw/2024/03/15/13/late.csv');
    await land('raw/2024/03/15/14/c.csv');
    const restarted = new LandingSource({ root, ledger: source.ledgerState() });
    expect((await restarted.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/c.csv']);
  });

  it('refuses a ledger that is not one', () => {
    expect(() => parseLedgerState(null)).toThrow(LandingError);
    expect(() => parseLedgerState({ version: 2, floor: null, processed: {} })).toThrow(/unknown version/);
    expect(() =>
      parseLedgerState({ version: 1, floor: null, processed: { '2024/03/15': ['a.csv'] } }),
    ).toThrow(/hour/);
    expect(() => parseLedgerState({ version: 1, floor: null, processed: { '2024/03/15/14': [1] } })).toThrow(
      /file names/,
    );
    expect(() => new LandingSource({ root }).markProcessed(['elsewhere/a.csv'])).toThrow(
      /not a landing path/,
    );
  });
});

describe('landingReceivedAt', () => {
  it('is the end of the hour folder, for landing paths only', () => {
    expect(landingReceivedAt('raw/2024/03/15/23/MTR-1.csv')).toBe(Date.UTC(2024, 2, 16, 0));
    expect(landingReceivedAt('/data/landing/raw/2024/01/01/00/x.json')).toBe(Date.UTC(2024, 0, 1, 1));
    expect(landingReceivedAt('somewhere/else.csv')).toBeNull();
  });
});
