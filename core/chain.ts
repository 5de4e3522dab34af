/**
 * Operator chaining (Flink's chained tasks): consecutive per-element stages run in one driver loop, each
 * element handed from stage to stage by a direct call instead of one buffered batch, pass and event per
 * stage. Each stage keeps its own state, timers, counters and name; the events leaving the chain are the
 * ones the stages would have emitted one after the other.
 */
import { Observable } from 'rxjs';
import { StageError } from './errors.js';
import { type FlowEvent, OutputBuffer, type OutputTag, type Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';

/**
 * Where a link sends what it makes: the next link (or the chain's output) and its tagged outputs. Plain
 * functions, not methods: a stage may keep them unbound.
 */
export interface LinkOutput<O> {
  emit(item: O): void;
  tag<T>(tag: OutputTag<T>, item: T): void;
}

/** One stage's work, opened once per subscription, driven element by element. */
export interface Link<I> {
  /** Before each input event (data batch or watermark) reaches the chain. */
  start?(): void;
  element(item: I): void;
  /** The watermark reached this stage: fire its timers, flush its buffers; outputs go to its output. */
  watermark?(time: number): void;
}

/** Opens a stage's link writing to `out`. */
export type LinkFactory<I, O> = (out: LinkOutput<O>) => Link<I>;

const LINK = Symbol('link');

type WithLink<I, O> = Transform<I, O> & { [LINK]?: LinkFactory<I, O> };

/**
 * The stage run on its own: a batch pass over its link into an output buffer, every event of its input
 * answered by at most one event per output. The transform carries its link, for `fuseLinks` to chain.
 */
export function linkTransform<I, O>(open: LinkFactory<I, O>): Transform<I, O> {
  const transform: WithLink<I, O> = (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      const out = new OutputBuffer<O>();
      // Plain functions, so a stage may hand them on unbound.
      const link = open({ emit: (item) => out.emit(item), tag: (tag, item) => out.tag(tag, item) });
      const next = (e: FlowEvent<O>): void => subscriber.next(e);
      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            link.start?.();
            const items = event.items;
            out.startBatch(items);
            for (let i = 0; i < items.length; i++) link.element(items[i]!);
            out.drainTo(next);
          } else if (event.kind === 'watermark' && link.watermark !== undefined) {
            link.start?.();
            link.watermark(event.time);
            out.drainTo(next);
            subscriber.next(event);
          } else subscriber.next(event);
        },
      });
    });
  transform[LINK] = open;
  return transform;
}

/** The link a transform made by `linkTransform` runs, if it is one. */
export function linkOf<I, O>(transform: Transform<I, O>): LinkFactory<I, O> | undefined {
  return (transform as WithLink<I, O>)[LINK];
}

/** What the chain keeps per stage: the graph's counters of that stage. */
export interface ChainCounters {
  in: number;
  out: number;
  tagged: Record<string, number>;
  watermark: number;
}

export interface ChainedStage {
  readonly name: string;
  readonly open: LinkFactory<unknown, unknown>;
  readonly counters: ChainCounters;
}

/**
 * With stage timing on, one element in {@link SAMPLE_EVERY} is timed stage by stage (two clock reads per
 * stage: timing every element would cost more than most stages' work); watermark steps are timed whole.
 * The chain's own clock total is shared out among its stages by these samples.
 */
export const SAMPLE_EVERY = 16;

/** Per-stage exclusive time of the sampled elements and of watermark steps, ms. */
export class ChainClock {
  readonly spent: Float64Array;
  private current = -1;
  private since = 0;

  constructor(readonly names: readonly string[]) {
    this.spent = new Float64Array(names.length);
  }

  /** Stage `k` starts (weight: how many elements the sample stands for); returns the stage to go back to. */
  enter(k: number, weight: number): number {
    const now = performance.now();
    const outer = this.current;
    if (outer >= 0) this.spent[outer]! += (now - this.since) * weight;
    this.current = k;
    this.since = now;
    return outer;
  }

  leave(outer: number, weight: number): void {
    const now = performance.now();
    this.spent[this.current]! += (now - this.since) * weight;
    this.current = outer;
    this.since = now;
  }

  /** Each stage's share of the chain's time. */
  shares(): number[] {
    let total = 0;
    for (const ms of this.spent) total += ms;
    return [...this.spent].map((ms) => (total > 0 ? ms / total : 1 / this.spent.length));
  }
}

/**
 * One transform running `stages` chained. For each input event the stages run depth first, an element
 * going through every stage before the next one starts; the output is then handed on as the stages, run
 * one after the other, would have: each stage's tagged outputs in stage order, then the main output. On a
 * watermark, each stage in turn fires its timers (their outputs go through the stages after it at once)
 * and the outputs so far are handed on, as the watermark would have reached each stage in turn. A throw
 * in a stage's code leaves as a `StageError` naming that stage.
 */
export function fuseLinks<I, O>(
  graphName: string,
  stages: readonly ChainedStage[],
  clock?: ChainClock,
): Transform<I, O> {
  const count = stages.length;
  return (source) =>
    new Observable<FlowEvent<O>>((subscriber) => {
      let main: O[] = [];
      const tagged: readonly Map<string, unknown[]>[] = stages.map(() => new Map());
      /** An element of the current event is being timed. */
      let sampling = false;
      const links: Link<unknown>[] = new Array(count);
      /** The stage running now: what a throw is charged to. */
      let active = 0;
      let downstream = (item: unknown): void => {
        main.push(item as O);
      };
      for (let k = count - 1; k >= 0; k--) {
        const { open, counters } = stages[k]!;
        const buffer = tagged[k]!;
        const into = downstream;
        const below = k + 1;
        const belowCounters = stages[below]?.counters ?? { in: 0 };
        const out: LinkOutput<unknown> = {
          // A throw below leaves `active` at the stage that threw.
          emit: (item) => {
            counters.out++;
            belowCounters.in++;
            if (sampling) {
              const outer = clock!.enter(below, SAMPLE_EVERY);
              active = below;
              into(item);
              clock!.leave(outer, SAMPLE_EVERY);
            } else {
              active = below;
              into(item);
            }
            active = k;
          },
          tag: (tag, item) => {
            let list = buffer.get(tag.name);
            if (list === undefined) {
              list = [];
              buffer.set(tag.name, list);
            }
            list.push(item);
            counters.tagged[tag.name] = (counters.tagged[tag.name] ?? 0) + 1;
          },
        };
        const link = open(out);
        links[k] = link;
        downstream = link.element;
      }
      const head = downstream;
      const next = (e: FlowEvent<O>): void => subscriber.next(e);
      const drain = (): void => {
        for (let k = 0; k < count; k++) {
          const buffer = tagged[k]!;
          if (buffer.size === 0) continue;
          for (const [tag, items] of buffer) next({ kind: 'tagged', tag, items });
          // The lists left with their events: the stage's next outputs start new ones.
          buffer.clear();
        }
        if (main.length > 0) {
          const items = main;
          main = [];
          next({ kind: 'data', items });
        }
      };
      const startAll = (): void => {
        for (let k = 0; k < count; k++) links[k]!.start?.();
      };
      return subscribeGuarded(source, subscriber, {
        next: (event) => {
          if (event.kind === 'data') {
            startAll();
            const items = event.items;
            stages[0]!.counters.in += items.length;
            try {
              for (let i = 0; i < items.length; i++) {
                active = 0;
                if (clock !== undefined && i % SAMPLE_EVERY === 0) {
                  sampling = true;
                  const outer = clock.enter(0, SAMPLE_EVERY);
                  head(items[i]);
                  clock.leave(outer, SAMPLE_EVERY);
                  sampling = false;
                } else head(items[i]);
              }
            } catch (err) {
              sampling = false;
              throw named(graphName, stages[active]!.name, err);
            }
            drain();
          } else if (event.kind === 'watermark') {
            startAll();
            for (let k = 0; k < count; k++) {
              const { counters } = stages[k]!;
              const link = links[k]!;
              if (link.watermark !== undefined) {
                const outer = clock?.enter(k, 1) ?? -1;
                active = k;
                try {
                  link.watermark(event.time);
                } catch (err) {
                  throw named(graphName, stages[active]!.name, err);
                }
                clock?.leave(outer, 1);
              }
              counters.watermark = event.time;
              drain();
            }
            subscriber.next(event);
          } else subscriber.next(event);
        },
      });
    });
}

/** A failure of a stage's own code names the stage; one already named by a later stage passes. */
function named(graphName: string, stage: string, err: unknown): StageError {
  return err instanceof StageError ? err : new StageError(graphName, stage, err);
}
