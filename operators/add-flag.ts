/**
 * Adding a flag to a reading's `flags` array at the size it needs. A reading leaves parsing with an empty
 * array, and V8 grows an empty array's store on its first `push` to 17 slots (152 bytes), which the
 * reading then carries through the graph for the one flag it holds; replacing the empty array by a
 * one-element array costs 24 bytes. Stages downstream still `push` into whatever array they find.
 */
import type { Reading, ReadingFlag } from '../schemas/reading.js';

export function addFlag(r: Reading, flag: ReadingFlag): void {
  const flags = r.flags;
  if (flags.length === 0) r.flags = [flag];
  else flags.push(flag);
}
