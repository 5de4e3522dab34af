/**
 * Reads a grid maintenance file: CSV with header `region,start,end,reason` (any order, `reason` optional),
 * times ISO-8601 with a zone; each line a window [start, end) of the region. Lines that cannot be used
 * are returned with their line number and why, never dropped silently.
 */
import type { MaintenanceWindow } from '../schemas/external.js';
import { splitRecord } from './dispatch.js';

export interface MaintenanceFile {
  readonly windows: MaintenanceWindow[];
  readonly errors: { readonly line: number; readonly reason: string }[];
}

const ZONED = /(Z|[+-]\d{2}:?\d{2})$/;

export function parseMaintenanceCsv(text: string): MaintenanceFile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = splitRecord(lines[0] ?? '').map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const windows: MaintenanceWindow[] = [];
  const errors: { line: number; reason: string }[] = [];
  for (const name of ['region', 'start', 'end'])
    if (col(name) === -1) return { windows, errors: [{ line: 1, reason: `header lacks "${name}"` }] };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const f = splitRecord(line);
    const region = (f[col('region')] ?? '').trim();
    const startText = (f[col('start')] ?? '').trim();
    const endText = (f[col('end')] ?? '').trim();
    const start = ZONED.test(startText) ? Date.parse(startText) : Number.NaN;
    const end = ZONED.test(endText) ? Date.parse(endText) : Number.NaN;
    if (region === '') errors.push({ line: i + 1, reason: 'empty region' });
    else if (!Number.isFinite(start) || !Number.isFinite(end))
      errors.push({ line: i + 1, reason: 'start and end must be ISO-8601 times with a zone' });
    else if (!(end > start)) errors.push({ line: i + 1, reason: 'end must be after start' });
    else
      windows.push({
        region,
        start,
        end,
        reason: col('reason') === -1 ? '' : (f[col('reason')] ?? '').trim(),
      });
  }
  return { windows, errors };
}
