/**
 * A dense integer per key, in first-seen order: keyed state held in arrays indexed by it, so a stage
 * finds a key's state by an array access instead of hashing the key's string in a map of its own.
 */
export class DenseKeyIndex {
  private readonly numbers = new Map<string, number>();
  private readonly keys: string[] = [];
  #generation = 0;

  /** The key's number, given one now if it has none. */
  intern(key: string): number {
    let n = this.numbers.get(key);
    if (n === undefined) {
      n = this.keys.length;
      this.keys.push(key);
      this.numbers.set(key, n);
    }
    return n;
  }

  /** The key's number, if it has one. */
  numberOf(key: string): number | undefined {
    return this.numbers.get(key);
  }

  /**
   * The key as first interned: elements that carry this instance compare with it by identity, so the
   * check that a carried number belongs to this index costs a pointer comparison.
   */
  keyOf(n: number): string | undefined {
    return this.keys[n];
  }

  get size(): number {
    return this.keys.length;
  }

  /** The keys in number order: what a checkpoint keeps, so a restored run numbers keys as before. */
  snapshot(): string[] {
    return this.keys.slice();
  }

  /**
   * How many times `restore` replaced the keys. Otherwise keys only ever join the index, so what a reader
   * derived from its first keys holds while this is unchanged.
   */
  get generation(): number {
    return this.#generation;
  }

  restore(keys: readonly string[]): void {
    this.#generation++;
    this.numbers.clear();
    this.keys.length = 0;
    for (const key of keys) this.intern(key);
  }
}

/**
 * How a keyed stage finds an element's dense key: the store's index named `index`, and the number an
 * element carries in it (given once, where elements are made). An element without one, or whose number
 * names another key (made by another index), is interned by its string key instead.
 */
export interface DenseKey<I> {
  readonly index: string;
  readonly of: (item: I) => number | undefined;
}
