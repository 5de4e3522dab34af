/**
 * A reading's `flags`: how they grow, and whether one is there. Most readings leave parsing with {@link NO_FLAGS}, one frozen empty array
 * they all share (a fresh empty array per reading is 32 bytes and an allocation, for a list that stays
 * empty for nearly every reading), so `Reading.flags` is a readonly list: a stage adds a flag through
 * `addFlag`, which gives the reading a new array, and the compiler refuses a `push` into one.
 */
import type { Reading, ReadingFlag } from '../schemas/reading.js';

/** The flags of a reading that has none; frozen, shared by every such reading. */
export const NO_FLAGS: readonly ReadingFlag[] = Object.freeze([]);

/**
 * Gives `r` its flags with `flag` appended, in a new array of the size it needs: an array a reading
 * received may be shared (the frozen empty one, or a copy's), and only `r` must see the flag. Flags are
 * rare, so the copy costs little; a one-element array is 24 bytes of store, where V8 would grow an empty
 * array to 17 slots (152 bytes) on a first `push`.
 */
export function addFlag(r: Reading, flag: ReadingFlag): void {
  const flags = r.flags;
  r.flags = flags.length === 0 ? [flag] : [...flags, flag];
}

/** Whether `r` carries `flag`; a loop, as a reading holds at most a few. */
export function hasFlag(r: Reading, flag: ReadingFlag): boolean {
  const flags = r.flags;
  for (let i = 0; i < flags.length; i++) if (flags[i] === flag) return true;
  return false;
}
