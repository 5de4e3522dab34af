/** Partition sets (`0-3,8`): parsing `--partitions`, checking and spelling a set. */

/** More would mean as many consumers on one worker; a typo like `0-1600` is caught here. */
export const MAX_OWNED_PARTITIONS = 1024;

/**
 * The partitions `--partitions` names: numbers and inclusive ranges separated by commas, `0-3,8`.
 * Sorted, each once. Throws `RangeError` on anything else.
 */
export function parsePartitionSet(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const item = part.trim();
    const range = /^(\d+)\s*-\s*(\d+)$/.exec(item);
    if (range !== null) {
      const from = Number(range[1]);
      const to = Number(range[2]);
      if (from > to) throw new RangeError(`partition range "${item}" runs backwards`);
      if (to - from >= MAX_OWNED_PARTITIONS)
        throw new RangeError(`partition range "${item}" names more than ${MAX_OWNED_PARTITIONS} partitions`);
      for (let p = from; p <= to; p++) out.push(p);
    } else if (/^\d+$/.test(item)) {
      out.push(Number(item));
    } else {
      throw new RangeError(
        `"${text}" is not a partition set: give partition numbers and ranges separated by commas, like 0-3,8`,
      );
    }
  }
  return normalizePartitionSet(out);
}

/** Sorted, each once; throws `RangeError` on an empty, oversized or invalid set. */
export function normalizePartitionSet(partitions: readonly number[]): number[] {
  const set = [...new Set(partitions)].sort((a, b) => a - b);
  if (set.length === 0) throw new RangeError('a partition set must name at least one partition');
  if (set.length > MAX_OWNED_PARTITIONS)
    throw new RangeError(`a worker owns at most ${MAX_OWNED_PARTITIONS} partitions, got ${set.length}`);
  for (const p of set) {
    if (!Number.isSafeInteger(p) || p < 0) throw new RangeError(`partition ${p} is not a partition number`);
  }
  return set;
}

/** The shortest spelling of a partition set, `0-3,8`: for logs, errors and the source name. */
export function formatPartitionSet(partitions: readonly number[]): string {
  const set = [...new Set(partitions)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < set.length; ) {
    let j = i;
    while (j + 1 < set.length && set[j + 1] === set[j]! + 1) j++;
    parts.push(j === i ? String(set[i]) : `${set[i]}-${set[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
