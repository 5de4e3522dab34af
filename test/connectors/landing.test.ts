import { mkdir, mkdtemp, open, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  deadLetterLandingFile,
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

describe('LandingSource: entries it cannot take are handed out refused, with the reason', () => {
  it('refuses a 3 GiB sparse file by its stat size, unread, and stops a batch at its byte budget', async () => {
    await land('raw/2024/03/15/14/a.csv', 'meter_id,timestamp,value,unit\nm,t,1,kW\n');
    await land('raw/2024/03/15/14/huge.csv', '');
    await truncate(join(root, 'raw/2024/03/15/14/huge.csv'), 3 * 1024 ** 3);
    await land('raw/2024/03/15/14/z.csv', 'x'.repeat(2_000));
    const source = new LandingSource({ root, maxFileBytes: 1_000_000, maxBytesPerBatch: 1_000 });
    const before = process.memoryUsage().rss;
    const first = await source.nextBatch();
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
    // a.csv (39 bytes), the refused file (0 bytes read); z.csv would pass the 1,000-byte budget.
    expect(first.map((f) => [f.path, f.refused ?? null, f.bytes.byteLength])).toEqual([
      ['raw/2024/03/15/14/a.csv', null, 39],
      [
        'raw/2024/03/15/14/huge.csv',
        `file of ${3 * 1024 ** 3} bytes exceeds the limit of 1000000 bytes (not read)`,
        0,
      ],
    ]);
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/15/14/z.csv']);
  });

  it('refuses symbolic links (files and hour folders), names that are not UTF-8, and what is not a file', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'gs-outside-'));
    try {
      await writeFile(join(outside, 'secret.csv'), 'meter_id,timestamp,value,unit\n');
      await land('raw/2024/03/15/14/ok.csv');
      await symlink(join(outside, 'secret.csv'), join(root, 'raw/2024/03/15/14/link.csv'));
      await symlink(outside, join(root, 'raw/2024/03/15/15'));
      await mkdir(join(root, 'raw/2024/03/15/14/folder.csv'));
      const badName = Buffer.concat([
        Buffer.from(join(root, 'raw/2024/03/15/14/bad-')),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('.csv'),
      ]);
      await (await open(badName, 'w')).close();
      const source = new LandingSource({ root });
      const batch = await source.nextBatch();
      expect(batch.map((f) => [f.path, f.refused ?? null])).toEqual([
        ['raw/2024/03/15/14/bad-%FF%FE.csv', 'file name is not valid UTF-8'],
        ['raw/2024/03/15/14/folder.csv', expect.stringMatching(/not a regular file/)],
        ['raw/2024/03/15/14/link.csv', 'symbolic link: landing files are not followed'],
        ['raw/2024/03/15/14/ok.csv', null],
        ['raw/2024/03/15/15/', 'symbolic link to a folder: landing folders are not followed'],
      ]);
      // Reported once: marked processed (the files) or remembered (the folder), never handed out again.
      source.markProcessed(batch.map((f) => f.path));
      expect(await source.nextBatch()).toEqual([]);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('collapses settled hours into the floor, walks only after it when idle, and still finds a late file', async () => {
    // The ledger compares file change times with this clock: it must be the file system's.
    let offset = 0;
    const now = () => Date.now() + offset;
    for (let h = 0; h < 6; h++) await land(`raw/2024/03/1${h}/00/a.csv`);
    const source = new LandingSource({
      root,
      settleMs: 48 * 3_600_000,
      rescanBelowFloorMs: 600_000,
      now,
    });
    const batch = await source.nextBatch();
    expect(batch).toHaveLength(6);
    source.markProcessed(batch.map((f) => f.path));
    const ledger = source.ledgerState();
    expect(ledger.floor).toBe('2024/03/13/00');
    expect(Object.keys(ledger.processed)).toEqual(['2024/03/13/00', '2024/03/14/00', '2024/03/15/00']);
    // A file landing late in a collapsed hour: not seen by an idle poll, found by the next rescan.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await land('raw/2024/03/11/00/late.csv');
    expect(await source.nextBatch()).toEqual([]);
    offset += 600_000;
    expect((await source.nextBatch()).map((f) => f.path)).toEqual(['raw/2024/03/11/00/late.csv']);
  });
});

describe('deadLetterLandingFile', () => {
  it('writes the copy and its reason, and refuses a dead-letter folder that is a symbolic link out', async () => {
    const dir = join(root, 'dead-letter');
    await deadLetterLandingFile(dir, 'raw/2024/03/15/14/a.csv', Buffer.from('x'), 'why');
    expect(JSON.parse(await readFile(join(dir, 'raw/2024/03/15/14/a.csv.reason.json'), 'utf8'))).toEqual({
      source: 'raw/2024/03/15/14/a.csv',
      reason: 'why',
    });
    const outside = await mkdtemp(join(tmpdir(), 'gs-outside-'));
    try {
      await mkdir(join(dir, 'raw/2024/03/15'), { recursive: true });
      await symlink(outside, join(dir, 'raw/2024/03/15/15'));
      await expect(
        deadLetterLandingFile(dir, 'raw/2024/03/15/15/b.csv', Buffer.from('x'), 'why'),
      ).rejects.toThrow(/symbolic link/);
      await rm(join(dir, 'raw/2024/03/15/15'));
      // A planted link at the copy's own name is not followed either.
      await mkdir(join(dir, 'raw/2024/03/15/16'));
      await symlink(join(outside, 'target'), join(dir, 'raw/2024/03/15/16/c.csv.reason.json'));
      await expect(
        deadLetterLandingFile(dir, 'raw/2024/03/15/16/c.csv', Buffer.alloc(0), 'why'),
      ).rejects.toThrow();
      expect(await readdir(outside)).toEqual([]);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});
