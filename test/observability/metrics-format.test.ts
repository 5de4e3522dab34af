import { describe, expect, it } from 'vitest';
import {
  escapeHelp,
  escapeLabelValue,
  formatSampleValue,
  MetricDefinitionError,
  MetricsRegistry,
} from '../../pipelines/metrics.js';

/** Parses one sample line of the text format back into name, labels and value (the scraper's view). */
function parseSample(line: string): { name: string; labels: Record<string, string>; value: string } {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
  if (m === null) throw new Error(`not a sample line: ${line}`);
  const labels: Record<string, string> = {};
  const body = m[2] ?? '';
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
  let lm: RegExpExecArray | null = re.exec(body);
  let consumed = 0;
  while (lm !== null) {
    labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    consumed = re.lastIndex;
    lm = consumed < body.length ? re.exec(body) : null;
  }
  if (consumed !== body.length) throw new Error(`bad label set: {${body}}`);
  return { name: m[1]!, labels, value: m[3]! };
}

describe('Prometheus text exposition', () => {
  it('escapes backslash, double quote and line feed in label values, and only those', () => {
    expect(escapeLabelValue('a\\b"c\nd\te')).toBe('a\\\\b\\"c\\nd\te');
    expect(escapeHelp('path C:\\data\n"quoted"')).toBe('path C:\\\\data\\n"quoted"');
  });

  it('renders HELP and TYPE once per metric, before its samples, and ends with a line feed', () => {
    const registry = new MetricsRegistry();
    const stages = registry.counter<'stage' | 'output'>({
      name: 'greenstream_stage_elements_total',
      help: 'Elements per stage.\nSecond line with a \\ backslash.',
      labelNames: ['stage', 'output'],
    });
    const lag = registry.gauge({ name: 'greenstream_consumer_lag', help: 'Pending messages.' });
    stages.inc({ stage: 'parseReading', output: 'in' }, 5);
    stages.inc({ stage: 'parseReading', output: 'in' }, 2);
    stages.inc({ stage: 'parseReading', output: 'quarantine' });
    lag.set(undefined, 1234);
    const text = registry.render();
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toEqual([
      '# HELP greenstream_stage_elements_total Elements per stage.\\nSecond line with a \\\\ backslash.',
      '# TYPE greenstream_stage_elements_total counter',
      'greenstream_stage_elements_total{stage="parseReading",output="in"} 7',
      'greenstream_stage_elements_total{stage="parseReading",output="quarantine"} 1',
      '# HELP greenstream_consumer_lag Pending messages.',
      '# TYPE greenstream_consumer_lag gauge',
      'greenstream_consumer_lag 1234',
      '',
    ]);
  });

  it('round-trips hostile label values through the format', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter<'source'>({ name: 'x_total', help: 'h', labelNames: ['source'] });
    const hostile = 'gw-7/"north"\\raw\nfile,b="x"} 9';
    c.inc({ source: hostile }, 3);
    const sample = registry
      .render()
      .split('\n')
      .find((l) => l.startsWith('x_total{'))!;
    expect(parseSample(sample)).toEqual({ name: 'x_total', labels: { source: hostile }, value: '3' });
  });

  it('spells special values as the format does', () => {
    expect(formatSampleValue(Number.NaN)).toBe('NaN');
    expect(formatSampleValue(Number.POSITIVE_INFINITY)).toBe('+Inf');
    expect(formatSampleValue(Number.NEGATIVE_INFINITY)).toBe('-Inf');
    expect(formatSampleValue(0.25)).toBe('0.25');
    expect(formatSampleValue(1e21)).toBe('1e+21');
  });

  it('renders histograms with cumulative le buckets, +Inf, _sum and _count', () => {
    const registry = new MetricsRegistry();
    const h = registry.histogram<'outcome'>({
      name: 'greenstream_sink_write_seconds',
      help: 'Sink latency.',
      labelNames: ['outcome'],
      buckets: [0.1, 1, 10],
    });
    for (const v of [0.05, 0.1, 0.5, 3, 42]) h.observe({ outcome: 'ok' }, v);
    const lines = registry.render().trimEnd().split('\n');
    expect(lines).toEqual([
      '# HELP greenstream_sink_write_seconds Sink latency.',
      '# TYPE greenstream_sink_write_seconds histogram',
      'greenstream_sink_write_seconds_bucket{outcome="ok",le="0.1"} 2',
      'greenstream_sink_write_seconds_bucket{outcome="ok",le="1"} 3',
      'greenstream_sink_write_seconds_bucket{outcome="ok",le="10"} 4',
      'greenstream_sink_write_seconds_bucket{outcome="ok",le="+Inf"} 5',
      'greenstream_sink_write_seconds_sum{outcome="ok"} 45.65',
      'greenstream_sink_write_seconds_count{outcome="ok"} 5',
    ]);
  });

  it('keeps an unknown gauge out of the output instead of inventing a zero', () => {
    const registry = new MetricsRegistry();
    const g = registry.gauge({ name: 'greenstream_watermark_delay_seconds', help: 'Delay.' });
    g.set(undefined, 12);
    g.remove();
    expect(registry.render()).not.toMatch(/^greenstream_watermark_delay_seconds /m);
  });

  it('runs collectors before each render', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({ name: 'pulled_total', help: 'h' });
    let source = 1;
    registry.addCollector(() => c.set(undefined, source));
    expect(registry.render()).toContain('pulled_total 1\n');
    source = 9;
    expect(registry.render()).toContain('pulled_total 9\n');
  });

  it('rejects invalid names, reserved or mismatched labels, decreasing counters and duplicates', () => {
    const registry = new MetricsRegistry();
    expect(() => registry.counter({ name: '1bad', help: 'h' })).toThrow(MetricDefinitionError);
    expect(() => registry.gauge({ name: 'ok', help: 'h', labelNames: ['__reserved'] })).toThrow(
      MetricDefinitionError,
    );
    expect(() => registry.histogram({ name: 'h', help: 'h', labelNames: ['le'], buckets: [1] })).toThrow(
      MetricDefinitionError,
    );
    expect(() => registry.histogram({ name: 'h2', help: 'h', buckets: [2, 1] })).toThrow(
      MetricDefinitionError,
    );
    const c = registry.counter<'stage'>({ name: 'c_total', help: 'h', labelNames: ['stage'] });
    expect(() => c.inc({ stage: 'a' }, -1)).toThrow(MetricDefinitionError);
    expect(() => c.inc({ stage: 'a', extra: 'b' } as unknown as { stage: string })).toThrow(
      MetricDefinitionError,
    );
    expect(() => c.inc({} as { stage: string })).toThrow(MetricDefinitionError);
    expect(() => registry.gauge({ name: 'c_total', help: 'again' })).toThrow(MetricDefinitionError);
    registry.histogram({ name: 'lat', help: 'h', buckets: [1] });
    expect(() => registry.gauge({ name: 'lat_count', help: 'clash' })).toThrow(MetricDefinitionError);
  });
});
