/**
 * A chain of columnar members (`column-rules.ts` flag in place, `column-stages.ts` return new batches) run
 * as `core/keyed-chain.ts` runs its row members: a data batch a piece at a time through every member,
 * tagged records per batch member after member; on a watermark, each member in turn fires its timers and
 * releases what is due, which goes through the later members before they see the watermark. Each member's
 * input watermark is kept under the keyed chain's name for it, so the chains' final states compare.
 */
import type { StateStore, ValueState } from '../../core/index.js';
import type { ReadingFlag } from '../../schemas/reading.js';
import { ColumnBuilder } from './column-builder.js';
import { type ColumnRule, PIECE, TagLists } from './column-rules.js';
import type { ColumnStage } from './column-stages.js';
import type { ReadingColumns } from './reading-columns.js';

export type ColumnMember = ColumnRule | ColumnStage;

function isStage(m: ColumnMember): m is ColumnStage {
  return 'take' in m;
}

/** What a data batch or a watermark made: data batches, each as the column pieces it came out in. */
export type ColumnOutput = ReadingColumns[][];

export class ColumnChain {
  private readonly sinks: TagLists[];
  private readonly watermarks: ValueState<number>[];
  private readonly anyStage: boolean;

  constructor(
    store: StateStore,
    readonly members: readonly ColumnMember[],
    /** Everything the members tagged, in the keyed chain's order. */
    readonly tags: TagLists = new TagLists(),
  ) {
    this.sinks = members.map(() => new TagLists());
    this.watermarks = members.map((m) =>
      store.value<number>(`${m.name}/input-watermark`, Number.NEGATIVE_INFINITY),
    );
    this.anyStage = members.some(isStage);
  }

  /** The order the members add flags in: each member's, in member order, each flag once. */
  flagOrder(): ReadingFlag[] {
    return [...new Set(this.members.flatMap((m) => m.adds))];
  }

  data(b: ReadingColumns): ColumnOutput {
    if (b.length === 0) return [];
    const out = this.through(0, b);
    this.drain(0);
    return out.length === 0 ? [] : [out];
  }

  watermark(time: number): ColumnOutput {
    const events: ColumnOutput = [];
    for (let k = 0; k < this.members.length; k++) {
      const m = this.members[k]!;
      this.watermarks[k]!.set(time);
      const emitted = isStage(m) ? m.onWatermark(time, this.sinks[k]!) : undefined;
      this.drain(k, k + 1);
      if (emitted !== undefined && emitted.length > 0) {
        const out = this.through(k + 1, emitted);
        this.drain(k + 1);
        if (out.length > 0) events.push(out);
      }
    }
    return events;
  }

  /** Members `k …` over `b`, a piece at a time; the pieces that come out of the last. */
  private through(k: number, b: ReadingColumns): ReadingColumns[] {
    const members = this.members;
    if (k >= members.length) return [b];
    if (!this.anyStage) {
      for (let from = 0; from < b.length; from += PIECE) {
        const to = Math.min(b.length, from + PIECE);
        for (let j = k; j < members.length; j++) (members[j] as ColumnRule).run(b, from, to, this.sinks[j]!);
      }
      return [b];
    }
    // The pieces' outputs gathered into one batch, made at the first piece a stage changed: until then the
    // output is the input's first pieces (the stages' outputs are theirs only until their next piece).
    let out: ColumnBuilder | undefined;
    for (let from = 0; from < b.length; from += PIECE) {
      let cur = b;
      let f = from;
      let t = Math.min(b.length, from + PIECE);
      for (let j = k; j < members.length && t > f; j++) {
        const m = members[j]!;
        if (isStage(m)) {
          const next = m.take(cur, f, t, this.watermarks[j]!.get(), this.sinks[j]!);
          if (next === undefined) continue;
          cur = next;
          f = 0;
          t = next.length;
        } else m.run(cur, f, t, this.sinks[j]!);
      }
      if (out === undefined) {
        if (cur === b && f === from && t === Math.min(b.length, from + PIECE)) continue;
        out = new ColumnBuilder(b.length + 256);
        out.copyRange(b, 0, from);
      }
      out.copyRange(cur, f, t);
    }
    if (out === undefined) return [b];
    return out.length === 0 ? [] : [out.take()];
  }

  /** Hands on the tagged records of members `from … to - 1`, in member order. */
  private drain(from: number, to = this.members.length): void {
    for (let k = from; k < to; k++) this.tags.append(this.sinks[k]!);
  }
}
