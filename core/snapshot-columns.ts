/**
 * Keyed entries of a full snapshot in columns: a namespace whose values are flat objects of the same
 * fields (numbers, booleans, null, strings) is written as one JSON list per field and block of entries
 * instead of one JSON text per entry, which at 50,000 meters made ~300 K strings of garbage a checkpoint.
 * An entry of any other shape keeps its own JSON text, at its place in the order.
 *
 * Text: `{"$columns":[field, …],"blocks":[[keys, column, column, …], …],"other":[[at, [key, value]], …]}`,
 * where `at` is an entry's place among all the namespace's entries (the blocks' rows fill the others, in
 * order), each column a block's values of one field. Numbers go through the same JSON as a per-entry text
 * (non-finite ones as `{"$num": …}`, -0 as 0), so an entry restores exactly as its own text would.
 */

import { SnapshotFormatError } from './snapshot-codec.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The member that marks a namespace written in columns (a list of entries otherwise). */
export const COLUMNS_MEMBER = '$columns';
/** Entries a block of columns holds: each block's text is made in one step of a capture. */
const ENTRIES_PER_BLOCK = 1024;

/** Whether `x` is a value a column holds as it is. */
function scalar(x: unknown): boolean {
  return typeof x === 'number' || typeof x === 'string' || typeof x === 'boolean' || x === null;
}

/** Gathers a namespace's entries, in order, into columns (or texts of their own) and prints them in blocks. */
export class ColumnEntries {
  private fields: string[] | undefined;
  private keys: string[] = [];
  private columns: unknown[][] = [];
  private readonly blocks: string[] = [];
  private readonly other: string[] = [];
  private count = 0;

  /** `json`: an entry's or a column's JSON text, as the snapshot prints any value. */
  constructor(private readonly json: (value: unknown) => string) {}

  /**
   * Whether `value` goes into the columns: a plain object of scalar fields, the same as the first such
   * value's, in the same order (the first one decides the fields).
   */
  fits(value: unknown): value is Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype)
      return false;
    const record = value as Record<string, unknown>;
    const fields = this.fields;
    if (fields === undefined) {
      const names = Object.keys(record);
      if (names.length === 0 || names.includes('__proto__')) return false;
      for (const name of names) if (!scalar(record[name])) return false;
      this.fields = names;
      this.columns = names.map(() => []);
      return true;
    }
    let i = 0;
    for (const name in record) {
      if (i >= fields.length || name !== fields[i] || !scalar(record[name])) return false;
      i++;
    }
    return i === fields.length;
  }

  /** Adds the next entry. */
  add(key: string, value: unknown): void {
    if (!this.fits(value)) {
      this.addText(this.json([key, value]));
      return;
    }
    const { fields, columns } = this;
    for (let j = 0; j < fields!.length; j++) columns[j]!.push(value[fields![j]!]);
    this.keys.push(key);
    this.count++;
    if (this.keys.length >= ENTRIES_PER_BLOCK) this.closeBlock();
  }

  /** Adds the next entry as its own JSON text `[key,value]` (printed before it could change). */
  addText(text: string): void {
    this.other.push(`[${this.count},${text}]`);
    this.count++;
  }

  private closeBlock(): void {
    if (this.keys.length === 0) return;
    const parts = [JSON.stringify(this.keys)];
    for (const column of this.columns) parts.push(this.json(column));
    this.blocks.push(`[${parts.join(',')}]`);
    this.keys = [];
    this.columns = this.columns.map(() => []);
  }

  /** The namespace's text in pieces, in the layout above. */
  pieces(): string[] {
    this.closeBlock();
    const out = [`{${JSON.stringify(COLUMNS_MEMBER)}:${JSON.stringify(this.fields ?? [])},"blocks":[`];
    for (let i = 0; i < this.blocks.length; i++) out.push(i > 0 ? `,${this.blocks[i]}` : this.blocks[i]!);
    out.push('],"other":[');
    for (let i = 0; i < this.other.length; i++) out.push(i > 0 ? `,${this.other[i]}` : this.other[i]!);
    out.push(']}');
    return out;
  }
}

/**
 * The entries of a namespace as a snapshot's parsed JSON holds them: a list of entries as it is, or the
 * columns above turned back into entries, in order. A layout that does not add up fails with
 * `SnapshotFormatError`.
 */
export function entriesOf(ns: string, held: unknown): [string, Json][] {
  if (Array.isArray(held)) return held as [string, Json][];
  const fail = (message: string): SnapshotFormatError =>
    new SnapshotFormatError(`keyed state ${ns} in columns: ${message}`, {
      context: { bytes: 0, offset: 0, part: ns },
    });
  if (typeof held !== 'object' || held === null || !(COLUMNS_MEMBER in held))
    throw fail('neither a list of entries nor columns');
  const { $columns: fields, blocks, other } = held as { $columns: unknown; blocks: unknown; other: unknown };
  if (
    !Array.isArray(fields) ||
    fields.some((f) => typeof f !== 'string' || f === '__proto__') ||
    !Array.isArray(blocks) ||
    !Array.isArray(other)
  )
    throw fail('bad fields, blocks or other entries');
  const out: [string, Json][] = [];
  let next = 0;
  const takeOther = (): void => {
    while (next < other.length && (other[next] as unknown[])[0] === out.length) {
      const item = other[next] as unknown[];
      const entry = item[1] as unknown[];
      if (!Array.isArray(entry) || typeof entry[0] !== 'string') throw fail(`bad entry at ${out.length}`);
      out.push(entry as [string, Json]);
      next++;
    }
  };
  for (const block of blocks as unknown[]) {
    if (!Array.isArray(block) || block.length !== fields.length + 1 || !Array.isArray(block[0]))
      throw fail('a block is not its keys and one column per field');
    const keys = block[0] as unknown[];
    for (let j = 1; j < block.length; j++)
      if (!Array.isArray(block[j]) || (block[j] as unknown[]).length !== keys.length)
        throw fail(
          `a column of ${String((block[j] as unknown[] | undefined)?.length)} values for ${keys.length} keys`,
        );
    for (let r = 0; r < keys.length; r++) {
      takeOther();
      const key = keys[r];
      if (typeof key !== 'string') throw fail(`key ${JSON.stringify(key)} is not a string`);
      const value: { [field: string]: Json } = {};
      for (let j = 0; j < fields.length; j++) value[fields[j] as string] = (block[j + 1] as Json[])[r]!;
      out.push([key, value]);
    }
  }
  takeOther();
  if (next !== other.length) throw fail(`entry ${next} of the others is out of place`);
  return out;
}
