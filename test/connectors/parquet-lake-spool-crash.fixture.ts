/**
 * Run by parquet-lake-spool.test.ts in a child process: spools readings of two months for worker
 * `w-killed` and dies by SIGKILL before the part is written. Usage: `<lake dir>`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openParquetLake } from '../../connectors/parquet-lake.js';
import { makeReadings } from './parquet-fixtures.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: parquet-lake-spool-crash.fixture.ts <lake dir>');

const lake = await openParquetLake({ dir });
const spool = lake.spool('readings', 'w-killed');
// 40 rows on 31 January, 40 on 1 February: two spool files, both past the first buffer write.
spool.append(makeReadings({ start: Date.UTC(2024, 0, 31, 23), meters: 10, intervals: 8 }));
writeFileSync(join(dir, 'spooled.json'), JSON.stringify(spool.rows));
process.kill(process.pid, 'SIGKILL');
