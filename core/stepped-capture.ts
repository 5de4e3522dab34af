/**
 * A copy of numbered items (typed rows, typed lists) at an instant, made in slices between batches: `step`
 * copies them in order until a deadline, and an item about to change is copied first (`keep`), so the
 * items left for later still hold their value of that instant when `step` reaches them.
 */
export abstract class SteppedCapture {
  /** Items at or past `cursor` copied ahead of it because they were about to change. */
  private readonly early: Uint8Array;
  private cursor = 0;

  constructor(
    protected readonly count: number,
    /** Items copied per step before the deadline is checked again. */
    private readonly perStep: number,
    private readonly release: () => void,
    /**
     * For a capture of some items only (an incremental checkpoint's changed ones): the capture's position
     * of item `n`, or -1 when it is not captured. Without it, item `n` is position `n`.
     */
    private readonly positions?: Int32Array,
  ) {
    this.early = new Uint8Array(count);
  }

  get complete(): boolean {
    return this.cursor >= this.count;
  }

  /** Before item `n` changes: keeps its value of the capture's instant. */
  keep(n: number): void {
    const positions = this.positions;
    const p = positions === undefined ? n : n < positions.length ? positions[n]! : -1;
    if (p < this.cursor || p >= this.count || this.early[p] === 1) return;
    this.early[p] = 1;
    this.copyRange(p, p + 1);
  }

  /** Copies items until `deadline` (a `performance.now()` time); true once all are. */
  step(deadline: number): boolean {
    while (this.cursor < this.count) {
      const end = Math.min(this.cursor + this.perStep, this.count);
      // Runs of items not copied early, each in one piece.
      let from = this.cursor;
      for (let n = this.cursor; n < end; n++) {
        if (this.early[n] === 1) {
          if (from < n) this.copyRange(from, n);
          from = n + 1;
        }
      }
      if (from < end) this.copyRange(from, end);
      this.cursor = end;
      if (this.cursor >= this.count) break;
      if (performance.now() >= deadline) return false;
    }
    this.release();
    return true;
  }

  /** Copies what is left at once. */
  finish(): void {
    this.step(Number.POSITIVE_INFINITY);
  }

  /** Copies the items at positions `from` up to (not including) `to` into the capture. */
  protected abstract copyRange(from: number, to: number): void;
}
