/**
 * A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4): counters,
 * gauges and histograms with labels. Written here rather than taken from a client library because the
 * pipeline needs a dozen series and the format is a page of rules.
 *
 * Values are kept per label set; a series appears in the output once it has been touched. Collectors run
 * before each render, so figures kept elsewhere (a graph's stage counters, a watermark) are read at scrape
 * time instead of being copied on every element.
 */

export type Labels = Readonly<Record<string, string>>;

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, ascending; `+Inf` is added. */
  readonly buckets: readonly number[];
}

/** A metric or label name outside the exposition format's grammar, or labels not matching their declaration. */
export class MetricDefinitionError extends Error {
  override readonly name = 'MetricDefinitionError';
  constructor(
    message: string,
    readonly metric: string,
  ) {
    super(message);
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value: backslash, double quote and line feed are the only characters the format escapes. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Escapes HELP text: backslash and line feed (a double quote stays as is there). */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Sample values as the format spells them: `NaN`, `+Inf`, `-Inf`, otherwise JavaScript's shortest form. */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

abstract class Metric<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: MetricType;

  constructor(options: MetricOptions<L>, reserved: readonly string[] = []) {
    if (!METRIC_NAME.test(options.name))
      throw new MetricDefinitionError(`invalid metric name "${options.name}"`, options.name);
    const labelNames = options.labelNames ?? [];
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__') || reserved.includes(label))
        throw new MetricDefinitionError(`invalid label name "${label}" on ${options.name}`, options.name);
    }
    if (new Set(labelNames).size !== labelNames.length)
      throw new MetricDefinitionError(`duplicate label names on ${options.name}`, options.name);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = labelNames;
  }

  /** The series key: label values in declaration order; throws when a label is missing or unknown. */
  protected keyOf(labels: Partial<Record<L, string>> | undefined): string {
    const given: Partial<Record<L, string>> = labels ?? {};
    const keys = Object.keys(given);
    if (keys.length !== this.labelNames.length || keys.some((k) => !this.labelNames.includes(k as L))) {
      throw new MetricDefinitionError(
        `${this.name} takes labels {${this.labelNames.join(',')}}, got {${keys.join(',')}}`,
        this.name,
      );
    }
    return JSON.stringify(this.labelNames.map((l) => given[l] as string));
  }

  protected labelText(key: string, extra?: string): string {
    const values = JSON.parse(key) as string[];
    const parts = this.labelNames.map((l, i) => `${l}="${escapeLabelValue(values[i] as string)}"`);
    if (extra !== undefined) parts.push(extra);
    return parts.length === 0 ? '' : `{${parts.join(',')}}`;
  }

  /** HELP, TYPE and sample lines, without a trailing line feed. */
  render(): string[] {
    return [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
      ...this.samples(),
    ];
  }

  protected abstract samples(): string[];
  abstract reset(): void;
}

/** A value that only goes up (per label set) while the process lives. */
export class Counter<L extends string = never> extends Metric<L> {
  readonly type = 'counter';
  private readonly values = new Map<string, number>();

  inc(labels?: Record<L, string>, by = 1): void {
    if (!(by >= 0)) throw new MetricDefinitionError(`${this.name} cannot decrease (by ${by})`, this.name);
    const key = this.keyOf(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  /** Mirrors a count kept elsewhere that is itself monotonic (e.g. a stage's element count). */
  set(labels: Record<L, string> | undefined, total: number): void {
    this.values.set(this.keyOf(labels), total);
  }

  get(labels?: Record<L, string>): number {
    return this.values.get(this.keyOf(labels)) ?? 0;
  }

  reset(): void {
    this.values.clear();
  }

  protected samples(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${this.labelText(k)} ${formatSampleValue(v)}`);
  }
}

/** A value that goes up and down; a series can be removed when it stops being known. */
export class Gauge<L extends string = never> extends Metric<L> {
  readonly type = 'gauge';
  private readonly values = new Map<string, number>();

  set(labels: Record<L, string> | undefined, value: number): void {
    this.values.set(this.keyOf(labels), value);
  }

  inc(labels?: Record<L, string>, by = 1): void {
    const key = this.keyOf(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(labels?: Record<L, string>): number | undefined {
    return this.values.get(this.keyOf(labels));
  }

  /** Drops the series: an unknown value is absent from the output rather than a made-up zero. */
  remove(labels?: Record<L, string>): void {
    this.values.delete(this.keyOf(labels));
  }

  reset(): void {
    this.values.clear();
  }

  protected samples(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${this.labelText(k)} ${formatSampleValue(v)}`);
  }
}

interface HistogramSeries {
  /** Non-cumulative counts per bucket, `+Inf` last. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into cumulative `le` buckets, with their `_sum` and `_count`. */
export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(options: HistogramOptions<L>) {
    super(options, ['le']);
    const b = options.buckets;
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x <= (b[i - 1] as number))))
      throw new MetricDefinitionError(`${options.name} buckets must be finite and ascending`, options.name);
    this.buckets = [...b];
  }

  observe(labels: Record<L, string> | undefined, value: number): void {
    const key = this.keyOf(labels);
    let s = this.series.get(key);
    if (s === undefined) {
      s = { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && value > (this.buckets[i] as number)) i++;
    s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += value;
    s.count += 1;
  }

  /** Count and sum of one series (zeros when never observed). */
  get(labels?: Record<L, string>): { readonly count: number; readonly sum: number } {
    const s = this.series.get(this.keyOf(labels));
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }

  reset(): void {
    this.series.clear();
  }

  protected samples(): string[] {
    const lines: string[] = [];
    for (const [key, s] of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i] as number;
        const le = i < this.buckets.length ? formatSampleValue(this.buckets[i] as number) : '+Inf';
        lines.push(`${this.name}_bucket${this.labelText(key, `le="${le}"`)} ${cumulative}`);
      }
      lines.push(`${this.name}_sum${this.labelText(key)} ${formatSampleValue(s.sum)}`);
      lines.push(`${this.name}_count${this.labelText(key)} ${s.count}`);
    }
    return lines;
  }
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/** The metrics of one process, rendered together; names are unique. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, AnyMetric>();
  private readonly collectors: (() => void)[] = [];

  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.add(new Counter<L>(options));
  }

  gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
    return this.add(new Gauge<L>(options));
  }

  histogram<L extends string = never>(options: HistogramOptions<L>): Histogram<L> {
    return this.add(new Histogram<L>(options));
  }

  /** Runs before every render to refresh values pulled from elsewhere. */
  addCollector(collect: () => void): void {
    this.collectors.push(collect);
  }

  /** The whole exposition, ending with a line feed. */
  render(): string {
    for (const collect of this.collectors) collect();
    const lines: string[] = [];
    for (const metric of this.metrics.values()) lines.push(...metric.render());
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  private add<M extends Metric<string>>(metric: M): M {
    // Histograms also own `<name>_bucket`, `_sum` and `_count`; a clash there would make the output ambiguous.
    const owned = (m: Metric<string>) =>
      m.type === 'histogram' ? [m.name, `${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name];
    const taken = new Set([...this.metrics.values()].flatMap(owned));
    if (owned(metric).some((n) => taken.has(n)))
      throw new MetricDefinitionError(`metric ${metric.name} is already registered`, metric.name);
    this.metrics.set(metric.name, metric as unknown as AnyMetric);
    return metric;
  }
}
