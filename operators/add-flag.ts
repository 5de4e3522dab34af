/**
 * How a reading's `flags` grow: every stage that adds a flag goes through `addFlag`, because most readings
 * leave parsing with {@link NO_FLAGS}, one frozen empty array they all share (a fresh empty array per reading
 * is 32 bytes and an allocation, for a list that stays empty for nearly every reading). A push into the
 * shared array would throw, so a stage that pushes directly shows up in the tests at once.
 */
import type { Reading, ReadingFlag } from '../schemas/reading.js';

/** The flags of a reading that has none; frozen, never to be pushed into. */
export const NO_FLAGS: ReadingFlag[] = Object.freeze([]) as unknown as ReadingFlag[];

/**
 * Appends `flag` to `r.flags`. An empty array (the shared one, or any other) is replaced by a one-element
 * array: 24 bytes of store, where V8 would grow an empty array to 17 slots (152 bytes) on its first `push`.
 */
export function addFlag(r: Reading, flag: ReadingFlag): void {
  const flags = r.flags;
  if (flags.length === 0) r.flags = [flag];
  else flags.push(flag);
}
