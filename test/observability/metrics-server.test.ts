import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../cli/main.js';
import { metricsHostOf } from '../../cli/serve-queries.js';
import {
  DEFAULT_METRICS_HOST,
  EXPOSITION_CONTENT_TYPE,
  type MetricsServer,
  MetricsServerError,
  startMetricsServer,
} from '../../connectors/metrics-server.js';
import { JobMetrics } from '../../pipelines/job-metrics.js';
import type { OutputBatch } from '../../pipelines/runner.js';

const opened: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

async function serve(metrics: JobMetrics): Promise<MetricsServer> {
  const server = await startMetricsServer({
    port: 0,
    host: '127.0.0.1',
    render: () => metrics.render(),
    ready: () => metrics.isReady(),
  });
  opened.push(server);
  return server;
}

describe('metrics HTTP endpoint', () => {
  it('is live at once, ready only between opening the source and a fatal sink error', async () => {
    const metrics = new JobMetrics();
    const server = await serve(metrics);
    expect(server.port).toBeGreaterThan(0);
    const status = async (path: string) => (await fetch(`${server.url}${path}`)).status;
    expect(await status('/healthz')).toBe(200);
    expect(await status('/readyz')).toBe(503);
    metrics.observer.opened?.();
    expect(await status('/readyz')).toBe(200);
    await metrics.observer.sinkFailed?.(new Error('store down'), {} as OutputBatch);
    expect(await status('/readyz')).toBe(503);
    expect(await status('/healthz')).toBe(200);
  });

  it('is not ready after the run stopped', async () => {
    const metrics = new JobMetrics();
    const server = await serve(metrics);
    metrics.observer.opened?.();
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    metrics.observer.stopped?.();
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
  });

  it('serves the exposition with the Prometheus content type', async () => {
    const metrics = new JobMetrics();
    metrics.observer.consumerLag?.(17);
    const server = await serve(metrics);
    const res = await fetch(`${server.url}/metrics?ignored=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(EXPOSITION_CONTENT_TYPE);
    const body = await res.text();
    expect(body).toContain('# TYPE greenstream_consumer_lag gauge\ngreenstream_consumer_lag 17\n');
    for (const name of [
      'greenstream_stage_elements_total',
      'greenstream_records_in_total',
      'greenstream_readings_stored_total',
      'greenstream_quarantined_total',
      'greenstream_dead_lettered_total',
      'greenstream_consumer_lag',
      'greenstream_watermark_delay_seconds',
      'greenstream_sink_write_seconds',
      'greenstream_checkpoints_total',
      'greenstream_alerts_total',
    ]) {
      expect(body).toContain(`# HELP ${name} `);
    }
  });

  it('answers HEAD without a body, 404 on unknown paths, 405 on other methods', async () => {
    const server = await serve(new JobMetrics());
    const head = await fetch(`${server.url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('answers 500 when rendering fails, and keeps serving', async () => {
    let fail = true;
    const server = await startMetricsServer({
      port: 0,
      host: '127.0.0.1',
      render: () => {
        if (fail) throw new Error('collector broke');
        return 'up 1\n';
      },
      ready: () => true,
    });
    opened.push(server);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('collector broke');
    fail = false;
    expect(await (await fetch(`${server.url}/metrics`)).text()).toBe('up 1\n');
  });

  it('fails with a typed error when the port is taken, and closes idempotently', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const attempt = startMetricsServer({ port, host: '127.0.0.1', render: () => '', ready: () => true });
      await expect(attempt).rejects.toBeInstanceOf(MetricsServerError);
      await expect(attempt).rejects.toMatchObject({ context: { port } });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    const server = await serve(new JobMetrics());
    // A keep-alive connection left open by a scraper must not hold the close.
    await fetch(`${server.url}/healthz`);
    await server.close();
    await server.close();
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});

describe('metrics endpoint bind address', () => {
  it('binds loopback unless told otherwise, and reports the address it bound', async () => {
    const local = await startMetricsServer({ port: 0, render: () => '', ready: () => true });
    opened.push(local);
    expect(local.address).toBe(DEFAULT_METRICS_HOST);
    expect(local.address).toBe('127.0.0.1');
    expect(local.url).toBe(`http://127.0.0.1:${local.port}`);
    const wide = await startMetricsServer({ port: 0, host: '0.0.0.0', render: () => '', ready: () => true });
    opened.push(wide);
    expect(wide.address).toBe('0.0.0.0');
    // Reachable from this host through loopback.
    expect(wide.url).toBe(`http://127.0.0.1:${wide.port}`);
    expect((await fetch(`${wide.url}/healthz`)).status).toBe(200);
  });

  it('takes --metrics-host, then $GS_METRICS_HOST, then loopback', () => {
    expect(metricsHostOf({}, {})).toBe('127.0.0.1');
    expect(metricsHostOf({}, { GS_METRICS_HOST: '0.0.0.0' })).toBe('0.0.0.0');
    expect(metricsHostOf({ 'metrics-host': '::1' }, { GS_METRICS_HOST: '0.0.0.0' })).toBe('::1');
    expect(() => metricsHostOf({ 'metrics-host': 'http://x/' }, {})).toThrow(UsageError);
  });
});
