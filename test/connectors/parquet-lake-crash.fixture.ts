/**
 * Run by parquet-lake.test.ts in a child process: writes a batch and dies by SIGKILL at the worst
 * moment, after the temporary files are synced and before any rename. Usage: `<lake dir>`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openParquetLake } from '../../connectors/parquet-lake.js';
import { makeReadings } from './parquet-fixtures.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: parquet-lake-crash.fixture.ts <lake dir>');

const lake = await openParquetLake({
  dir,
  afterTemporaryWrite: (files) => {
    writeFileSync(join(dir, 'crashed-with.json'), JSON.stringify(files));
    process.kill(process.pid, 'SIGKILL');
  },
});
await lake.writeBatch(
  'readings',
  makeReadings({ start: Date.UTC(2024, 0, 31, 23), meters: 5, intervals: 8 }),
  'ckpt-crashed',
);
