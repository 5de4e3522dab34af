/**
 * The checkpoint positions of the message sources: `{ lastSeq }` for a worker owning every partition,
 * `{ partitions: { "<p>": lastSeq } }` for one owning a set, each read and checked against the worker.
 */
import { ConfigurationError, type Json } from '../core/index.js';
import { formatPartitionSet, normalizePartitionSet } from './partition-set.js';

/** A checkpoint position this source cannot resume from; the worker stops rather than guess. */
export class SourcePositionError extends ConfigurationError<Readonly<Record<string, string>>> {
  override readonly name = 'SourcePositionError';
  constructor(message: string, context: Readonly<Record<string, string>>) {
    super(message, { context });
  }
}

/** The resume sequence of a worker owning every partition. */
export function lastSeqOf(position: Json | undefined): number {
  if (position === undefined || position === null || typeof position !== 'object' || Array.isArray(position))
    return 0;
  if (position.partitions !== undefined && position.lastSeq === undefined) {
    const stored = partitionsOfPosition(position.partitions);
    throw new SourcePositionError(
      `the checkpoint holds the positions of partitions ${formatPartitionSet(stored)}, but this worker ` +
        'owns every partition: its operator state lacks the meters of the other partitions. Run it with ' +
        `--partitions ${formatPartitionSet(stored)}, or start an all-partitions worker under a new --worker id`,
      { stored: formatPartitionSet(stored), owned: 'all' },
    );
  }
  const seq = position.lastSeq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new Error(`checkpoint position ${JSON.stringify(position)} has no valid lastSeq`);
  }
  return seq;
}

/** The resume sequence of each owned partition, from a checkpoint position of the same partition set. */
export function partitionPositions(
  position: Json | undefined,
  partitions: readonly number[],
): Map<number, number> {
  const owned = formatPartitionSet(partitions);
  if (position === undefined || position === null) return new Map(partitions.map((p) => [p, 0]));
  if (typeof position !== 'object' || Array.isArray(position)) {
    throw new SourcePositionError(`checkpoint position ${JSON.stringify(position)} is not an object`, {
      owned,
    });
  }
  if (position.partitions === undefined) {
    throw new SourcePositionError(
      `the checkpoint holds one position for the whole stream ({ lastSeq }), written by a worker that owned ` +
        `every partition (or one, before partition sets); this worker owns partitions ${owned}, and that ` +
        'operator state may hold meters it does not own. Start it under a new --worker id',
      { stored: 'all', owned },
    );
  }
  const stored = partitionsOfPosition(position.partitions);
  if (formatPartitionSet(stored) !== owned) {
    throw new SourcePositionError(
      `the checkpoint covers partitions ${formatPartitionSet(stored)}, but this worker was started with ` +
        `${owned}: operator state belongs to the meters of one partition set, so a worker cannot take on or ` +
        `give up partitions. Run it with --partitions ${formatPartitionSet(stored)}, or start the new set ` +
        'under a new --worker id',
      { stored: formatPartitionSet(stored), owned },
    );
  }
  const seqs = position.partitions as Record<string, number>;
  return new Map(partitions.map((p) => [p, seqs[String(p)]!]));
}

/** The partitions named by a `{ partitions }` position; throws when a sequence is not a valid one. */
export function partitionsOfPosition(value: Json | undefined): number[] {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) {
    throw new SourcePositionError(`checkpoint partitions ${JSON.stringify(value)} is not an object`, {});
  }
  const out: number[] = [];
  for (const [key, seq] of Object.entries(value)) {
    const partition = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(partition))
      throw new SourcePositionError(`checkpoint names partition "${key}", not a partition number`, {});
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
      throw new SourcePositionError(`checkpoint position of partition ${key} is ${JSON.stringify(seq)}`, {});
    out.push(partition);
  }
  return normalizePartitionSet(out);
}
