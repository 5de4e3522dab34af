/**
 * The hostile corpus of issue 12: every probe an attacker or a careless gateway tried, written into a
 * landing folder beside normal simulated data, with what each must now come to.
 */
import { appendFile, mkdir, open, readFile, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { simulate } from '../../simulator/index.js';

export interface HostileCorpus {
  /** The landing folder (holding `raw/` and `registry.csv`). */
  readonly landing: string;
  /** Folders outside the landing folder that links point to: nothing may be written there. */
  readonly outside: string;
  /** Records in decodable files (header lines excluded): stored + quarantined must equal it. */
  readonly records: number;
  /** Files (and folders) that must be dead-lettered, by landing path. */
  readonly deadLettered: readonly string[];
}

const HEADER = 'meter_id,timestamp,value,unit';
const MIB = 1024 * 1024;

/**
 * Writes the corpus: a small simulated fleet (its registry extended by three meters the probes use) plus
 * one file per probe. Sizes are the where they cost nothing (sparse files), smaller otherwise.
 */
export async function writeHostileCorpus(dir: string): Promise<HostileCorpus> {
  const landing = join(dir, 'landing');
  const outside = join(dir, 'outside');
  await mkdir(outside, { recursive: true });
  const summary = await simulate({ out: landing, meters: 20, days: 2, start: '2024-03-11', seed: 12 });
  let records = summary.lines;
  const registry = await readFile(join(landing, 'registry.csv'), 'utf8');
  const template = registry.split('\n')[1]!.split(',');
  for (const id of ['HOSTILE-1', 'HOSTILE-2', 'HOSTILE-3']) {
    await appendFile(join(landing, 'registry.csv'), `${[id, ...template.slice(1)].join(',')}\n`);
  }
  const put = async (path: string, content: string | Buffer, lines: number): Promise<void> => {
    await mkdir(join(landing, path, '..'), { recursive: true });
    await writeFile(join(landing, path), content);
    records += lines;
  };
  const csv = (rows: readonly string[]) => `${HEADER}\n${rows.join('\n')}\n`;
  const deadLettered: string[] = [];

  // Poison: a unit of 31 `u` and an emoji (cut inside the pair at 32 UTF-16 units), a JSON lone surrogate.
  await put(
    'raw/2024/03/11/05/p-unit-emoji.csv',
    csv([`HOSTILE-1,2024-03-11T05:00:00Z,1,${'u'.repeat(31)}😀`]),
    1,
  );
  await put(
    'raw/2024/03/11/05/p-surrogate.json',
    '[{"meter_id":"HOSTILE-1","timestamp":"2024-03-11T05:15:00Z","value":1,"unit":"\\udc00"}]',
    1,
  );
  // Poison: a reading in a folder of the year 2200, dated then.
  await put('raw/2200/01/01/00/p-2200.csv', csv(['HOSTILE-1,2200-01-01T00:10:00Z,1,kW']), 1);
  // Poison: a 3 GiB sparse file, and a directory named like a file (unreadable as one).
  await put('raw/2024/03/11/06/p-huge.csv', '', 0);
  await truncate(join(landing, 'raw/2024/03/11/06/p-huge.csv'), 3 * 1024 * MIB);
  deadLettered.push('raw/2024/03/11/06/p-huge.csv');
  await mkdir(join(landing, 'raw/2024/03/11/06/p-dir.csv'), { recursive: true });
  deadLettered.push('raw/2024/03/11/06/p-dir.csv');

  // Amplification: readings 1 s apart, then one 24 h later; a 2010 reading among 2024 readings.
  await put(
    'raw/2024/03/11/07/p-cadence.csv',
    csv([
      'HOSTILE-2,2024-03-11T07:00:00Z,1,kW',
      'HOSTILE-2,2024-03-11T07:00:01Z,1,kW',
      'HOSTILE-2,2024-03-11T07:00:02Z,1,kW',
    ]),
    3,
  );
  await put('raw/2024/03/12/07/p-cadence.csv', csv(['HOSTILE-2,2024-03-12T07:00:02Z,1,kW']), 1);
  const quarterHours = Array.from(
    { length: 8 },
    (_, i) =>
      `HOSTILE-3,2024-03-11T${String(7 + Math.floor(i / 4)).padStart(2, '0')}:${String((i % 4) * 15).padStart(2, '0')}:00Z,1,kW`,
  );
  await put(
    'raw/2024/03/11/08/p-2010.csv',
    csv([...quarterHours.slice(0, 4), 'HOSTILE-3,2010-06-01T00:00:00Z,1,kW', ...quarterHours.slice(4)]),
    9,
  );
  // Amplification: `[{},{},…]` JSON just under the 8 MiB payload limit, three files.
  const empties = `[${'{},'.repeat(Math.floor((8 * MIB - 16) / 3))}{}]`;
  for (const n of [1, 2, 3]) {
    // 10,000 failures, then one `too_many_records` record for the rest.
    await put(`raw/2024/03/11/09/p-empty-${n}.json`, empties, 10_001);
  }
  // Memory: eight 200 MB (sparse) files in one hour folder, two 3 MiB files of one unknown meter, and
  // 300 files of distinct 20-character unknown meter ids.
  for (let n = 0; n < 8; n++) {
    const path = `raw/2024/03/11/10/p-big-${n}.csv`;
    await put(path, '', 0);
    await truncate(join(landing, path), 200 * MIB);
    deadLettered.push(path);
  }
  const line = (i: number) => `UNKNOWN-METER-000001,2024-03-11T10:00:00Z,${i},kW`;
  const perFile = Math.floor((3 * MIB) / (line(0).length + 4));
  for (const n of [0, 1]) {
    await put(
      `raw/2024/03/11/10/p-mid-${n}.csv`,
      csv(Array.from({ length: perFile }, (_, i) => line(i))),
      perFile,
    );
  }
  for (let n = 0; n < 300; n++) {
    const id = `ID${String(n).padStart(18, '0')}`;
    await put(
      `raw/2024/03/11/11/p-id-${String(n).padStart(3, '0')}.csv`,
      csv([`${id},2024-03-11T11:00:00Z,1,kW`]),
      1,
    );
  }
  // The watermark: a reading dated a year on, in a folder of that year (sorts after every real file).
  await put('raw/2025/03/11/00/p-next-year.csv', csv(['HOSTILE-3,2025-03-11T00:00:00Z,1,kW']), 1);

  // Silent loss: a name that is not UTF-8, a linked file, a linked hour folder, sub-second timestamps.
  const badName = Buffer.concat([
    Buffer.from(join(landing, 'raw/2024/03/11/12/p-')),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('.csv'),
  ]);
  await mkdir(join(landing, 'raw/2024/03/11/12'), { recursive: true });
  const handle = await open(badName, 'w');
  await handle.writeFile(csv(['HOSTILE-1,2024-03-11T12:00:00Z,1,kW']));
  await handle.close();
  deadLettered.push('raw/2024/03/11/12/p-%FF%FE.csv');
  await writeFile(join(outside, 'secret.csv'), csv(['HOSTILE-1,2024-03-11T12:15:00Z,1,kW']));
  await symlink(join(outside, 'secret.csv'), join(landing, 'raw/2024/03/11/12/p-link.csv'));
  deadLettered.push('raw/2024/03/11/12/p-link.csv');
  await mkdir(join(outside, 'hour'), { recursive: true });
  await mkdir(join(landing, 'raw/2024/03/13'), { recursive: true });
  await symlink(join(outside, 'hour'), join(landing, 'raw/2024/03/13/13'));
  deadLettered.push('raw/2024/03/13/13/');
  await put(
    'raw/2024/03/11/14/p-subsecond.csv',
    csv(['HOSTILE-1,2024-03-11T14:00:00.000Z,1,kW', 'HOSTILE-1,2024-03-11T14:00:00.500Z,2,kW']),
    2,
  );

  // The landing folder stays inside: a dead-letter folder planted as a link out of it.
  await mkdir(join(landing, 'dead-letter/raw/2024/03/11'), { recursive: true });
  await mkdir(join(outside, 'dead'), { recursive: true });
  await symlink(join(outside, 'dead'), join(landing, 'dead-letter/raw/2024/03/11/06'));

  return { landing, outside, records, deadLettered };
}
