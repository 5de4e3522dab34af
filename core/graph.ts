/** The named pipeline graph: stage names, per-stage counters and timing, failures named by stage, printing. */
import { Observable, Subject } from 'rxjs';
import { StageError } from './errors.js';
import type { FlowEvent, OutputTag, Transform } from './flow.js';
import { subscribeGuarded } from './guarded.js';

export type NodeKind = 'source' | 'stage' | 'sink';

export interface StageCounters {
  /** Elements the stage received on its main input. */
  in: number;
  /** Elements it emitted on its main output. */
  out: number;
  /** Elements it routed to each tagged output. */
  tagged: Record<string, number>;
  watermark: number;
}

interface GraphNode {
  readonly name: string;
  readonly kind: NodeKind;
}

export interface GraphEdge {
  readonly from: string;
  readonly to: string;
  readonly label?: string;
}

/** The graph's shape, plain JSON. */
export interface GraphTopology {
  readonly name: string;
  readonly nodes: readonly { readonly name: string; readonly kind: NodeKind }[];
  readonly edges: readonly GraphEdge[];
}

/** Where a stage sits and what it routes to tagged outputs. */
export interface StageOptions {
  /** The node feeding it; default the previously added node. */
  readonly after?: string;
  /** The tagged outputs the stage emits: the printed graph draws an edge from it to each one's sink. */
  readonly emits?: readonly OutputTag<unknown>[];
}

/**
 * The named pipeline graph: each stage is registered under a stable name used in metrics, logs, state
 * namespaces and the printed graph, and is wrapped so its in / out / tagged counts are kept.
 */
export class PipelineGraph {
  private readonly nodes = new Map<string, GraphNode>();
  private readonly edges: GraphEdge[] = [];
  private readonly counters = new Map<string, StageCounters>();
  private readonly emits = new Map<string, readonly string[]>();
  private readonly taggedSinks = new Map<string, string>();
  private timing: StageClock | undefined;
  private last: string | undefined;

  constructor(readonly name: string) {}

  source(name: string): void {
    this.addNode(name, 'source');
    this.last = name;
  }

  /**
   * Registers a stage after `after` (default: the previously added node) and returns the transform
   * wrapped with counters. Tagged events from upstream bypass the stage untouched. A failure of the stage
   * (a throw in its code, or an error it raises) leaves it as a `StageError` naming the stage; one that
   * came from upstream already names its own stage and passes through.
   */
  stage<I, O>(
    name: string,
    transform: Transform<I, O>,
    options: string | StageOptions = {},
  ): Transform<I, O> {
    const { after = this.last, emits = [] } = typeof options === 'string' ? { after: options } : options;
    this.addNode(name, 'stage');
    this.emits.set(
      name,
      emits.map((t) => t.name),
    );
    if (after !== undefined) this.edges.push({ from: after, to: name });
    this.last = name;
    const counters: StageCounters = { in: 0, out: 0, tagged: {}, watermark: Number.NEGATIVE_INFINITY };
    this.counters.set(name, counters);
    const failed = (err: unknown): StageError =>
      err instanceof StageError ? err : new StageError(this.name, name, err);
    return this.wrap(name, transform, failed, counters);
  }

  /**
   * Registers stages that run fused in one transform (`keyedChain`): each stays a node of the graph, in
   * order after `after` (default the previously added node), with its declared outputs and its counters,
   * which `build` hands to the transform to keep. The chain's time is measured under `name` as a whole
   * (clocking each member per element would cost more than some members' work). A failure the transform
   * raises as a `MemberFailure` names the member's stage.
   */
  fused<I, O>(
    name: string,
    stages: readonly { readonly name: string; readonly emits?: readonly OutputTag<unknown>[] }[],
    build: (counters: readonly StageCounters[]) => Transform<I, O>,
    after: string | undefined = this.last,
  ): Transform<I, O> {
    let from = after;
    const counters = stages.map((s) => {
      this.addNode(s.name, 'stage');
      this.emits.set(
        s.name,
        (s.emits ?? []).map((t) => t.name),
      );
      if (from !== undefined) this.edges.push({ from, to: s.name });
      from = s.name;
      const c: StageCounters = { in: 0, out: 0, tagged: {}, watermark: Number.NEGATIVE_INFINITY };
      this.counters.set(s.name, c);
      return c;
    });
    this.last = from;
    const failed = (err: unknown): StageError =>
      err instanceof StageError
        ? err
        : err instanceof MemberFailure
          ? new StageError(this.name, err.stage, err.cause)
          : new StageError(this.name, name, err);
    return this.wrap(name, build(counters), failed, undefined);
  }

  /** The stage's transform with its counters (unless it keeps them itself), clock and failure naming. */
  private wrap<I, O>(
    clockName: string,
    transform: Transform<I, O>,
    failed: (err: unknown) => StageError,
    counters: StageCounters | undefined,
  ): Transform<I, O> {
    const timed = (source: Observable<FlowEvent<I>>): Observable<FlowEvent<O>> => {
      const clock = this.timing;
      if (clock === undefined) return untimed(source);
      // Stages call each other synchronously: a stage's clock stops while its output runs downstream.
      return untimed(source.pipe(clock.around(clockName))).pipe(clock.around(OUTSIDE_STAGES));
    };
    const untimed: Transform<I, O> = (source) =>
      new Observable<FlowEvent<O>>((subscriber) => {
        const inner = new Subject<FlowEvent<I>>();
        const innerSub = subscribeGuarded(inner.pipe(transform), subscriber, {
          next: (e) => {
            if (counters !== undefined) {
              if (e.kind === 'data') counters.out += e.items.length;
              else if (e.kind === 'tagged')
                counters.tagged[e.tag] = (counters.tagged[e.tag] ?? 0) + e.items.length;
              else if (e.kind === 'watermark') counters.watermark = e.time;
            }
            subscriber.next(e);
          },
          error: (err: unknown) => subscriber.error(failed(err)),
        });
        const sourceSub = subscribeGuarded(source, subscriber, {
          next: (e) => {
            if (e.kind === 'tagged') {
              subscriber.next(e);
              return;
            }
            if (e.kind === 'data' && counters !== undefined) counters.in += e.items.length;
            inner.next(e);
          },
          error: (err: unknown) => inner.error(err),
          complete: () => inner.complete(),
        });
        return () => {
          sourceSub.unsubscribe();
          innerSub.unsubscribe();
        };
      });
    return timed;
  }

  /**
   * Measures the time each stage spends on its own work (exclusive of the stages after it), for
   * profiling; costs two clock reads per event and stage. Call before the graph is subscribed.
   */
  enableTiming(): void {
    this.timing ??= new StageClock();
  }

  /** Milliseconds each stage spent on its own work since timing was enabled; `(between stages)` is the rest. */
  stageTimes(): Record<string, number> {
    return this.timing === undefined ? {} : this.timing.totals();
  }

  /** A sink fed by `from`, optionally through a tagged output. */
  sink(name: string, from: string, tag?: string): void {
    this.addNode(name, 'sink');
    this.edges.push(tag === undefined ? { from, to: name } : { from, to: name, label: tag });
  }

  /** A sink fed by tagged output `tag` of every stage that declares it emits `tag`. */
  taggedSink(name: string, tag: OutputTag<unknown>): void {
    this.addNode(name, 'sink');
    this.taggedSinks.set(tag.name, name);
  }

  /** The tagged outputs `stage` declared it emits. */
  declaredTags(stage: string): readonly string[] {
    return this.emits.get(stage) ?? [];
  }

  edge(from: string, to: string, label?: string): void {
    this.edges.push(label === undefined ? { from, to } : { from, to, label });
  }

  stageCounters(): Record<string, StageCounters> {
    const result: Record<string, StageCounters> = {};
    for (const [name, c] of this.counters) result[name] = { ...c, tagged: { ...c.tagged } };
    return result;
  }

  /** The nodes and every edge (tagged ones included), as the printed graph draws them: for dashboards. */
  topology(): GraphTopology {
    return {
      name: this.name,
      nodes: [...this.nodes.values()].map((n) => ({ name: n.name, kind: n.kind })),
      edges: this.allEdges().map((e) => ({ ...e })),
    };
  }

  toMermaid(): string {
    const id = nodeIds(this.nodes);
    const lines = ['flowchart LR'];
    for (const node of this.nodes.values()) {
      const label = node.name.replace(/"/g, "'");
      const shape =
        node.kind === 'source' ? `[("${label}")]` : node.kind === 'sink' ? `[("${label}")]` : `["${label}"]`;
      lines.push(`  ${id.get(node.name)}${shape}`);
    }
    for (const e of this.allEdges()) {
      const arrow = e.label === undefined ? '-->' : `-. ${e.label} .->`;
      lines.push(`  ${id.get(e.from)} ${arrow} ${id.get(e.to)}`);
    }
    return `${lines.join('\n')}\n`;
  }

  toDot(): string {
    const lines = [`digraph "${this.name}" {`, '  rankdir=LR;'];
    for (const node of this.nodes.values()) {
      const shape = node.kind === 'stage' ? 'box' : 'cylinder';
      lines.push(`  "${node.name}" [shape=${shape}];`);
    }
    for (const e of this.allEdges()) {
      lines.push(
        `  "${e.from}" -> "${e.to}"${e.label === undefined ? '' : ` [label="${e.label}", style=dashed]`};`,
      );
    }
    lines.push('}');
    return `${lines.join('\n')}\n`;
  }

  /** The declared edges, and one from each stage to the sink of every tag it emits. */
  private allEdges(): GraphEdge[] {
    const tagged: GraphEdge[] = [];
    for (const [stage, tags] of this.emits) {
      for (const tag of tags) {
        const sink = this.taggedSinks.get(tag);
        if (sink !== undefined) tagged.push({ from: stage, to: sink, label: tag });
      }
    }
    return [...this.edges, ...tagged];
  }

  private addNode(name: string, kind: NodeKind): void {
    if (this.nodes.has(name)) throw new Error(`pipeline "${this.name}" already has a node named "${name}"`);
    this.nodes.set(name, { name, kind });
  }
}

/**
 * A member of a fused transform (`PipelineGraph.fused`) failed: the graph reports it as a `StageError`
 * of the member's stage, `cause` being what the member threw.
 */
export class MemberFailure extends Error {
  override readonly name = 'MemberFailure';

  constructor(
    readonly stage: string,
    override readonly cause: unknown,
  ) {
    super(`stage "${stage}" failed`, { cause });
  }
}

/** Time spent downstream of a stage that no stage owns: routing, side outputs, the sinks' buffers. */
const OUTSIDE_STAGES = '(between stages)';

/** Exclusive wall time per stage: the clock runs for whichever stage is innermost on the call stack. */
class StageClock {
  private readonly spent = new Map<string, number>();
  private current: string | undefined;
  private since = 0;

  /** Charges the time `source`'s events take to reach the next operator to `name`. */
  around<T>(name: string): (source: Observable<T>) => Observable<T> {
    return (source) =>
      new Observable<T>((subscriber) =>
        subscribeGuarded(source, subscriber, {
          next: (e) => {
            const outer = this.switchTo(name);
            try {
              subscriber.next(e);
            } finally {
              this.switchTo(outer);
            }
          },
          complete: () => {
            const outer = this.switchTo(name);
            try {
              subscriber.complete();
            } finally {
              this.switchTo(outer);
            }
          },
        }),
      );
  }

  totals(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const [name, ms] of this.spent) result[name] = Math.round(ms * 10) / 10;
    return result;
  }

  private switchTo(name: string | undefined): string | undefined {
    const now = performance.now();
    const previous = this.current;
    if (previous !== undefined) this.spent.set(previous, (this.spent.get(previous) ?? 0) + now - this.since);
    this.current = name;
    this.since = now;
    return previous;
  }
}

function nodeIds(nodes: Map<string, GraphNode>): Map<string, string> {
  const ids = new Map<string, string>();
  let i = 0;
  for (const name of nodes.keys()) ids.set(name, `n${i++}`);
  return ids;
}
