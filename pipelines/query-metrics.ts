/**
 * What queries on the worker's query endpoint cost, as Prometheus metrics registered beside the job's:
 * requests by outcome, their wall time, and the rows and bytes they returned.
 */
import type { QueryEvent } from '../connectors/query-endpoint.js';
import type { MetricsRegistry } from './metrics.js';

/** From a point lookup to the endpoint's default time limit (30 s). */
export const QUERY_SECONDS_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Registers the query metrics on `registry`; returns the endpoint's `onQuery` callback. */
export function queryMetrics(registry: MetricsRegistry): (event: QueryEvent) => void {
  const requests = registry.counter<'outcome'>({
    name: 'greenstream_queries_total',
    help: 'Queries answered by the query endpoint, by outcome: ok, refused (not a read, or the endpoint is busy or not open), error (the engine failed it, e.g. a row or time limit).',
    labelNames: ['outcome'],
  });
  const seconds = registry.histogram<'outcome'>({
    name: 'greenstream_query_seconds',
    help: 'Wall time of a query on the query endpoint, from its request to its answer, by outcome.',
    labelNames: ['outcome'],
    buckets: QUERY_SECONDS_BUCKETS,
  });
  const rows = registry.counter({
    name: 'greenstream_query_result_rows_total',
    help: 'Rows returned by successful queries on the query endpoint.',
  });
  const bytes = registry.counter({
    name: 'greenstream_query_result_bytes_total',
    help: 'Bytes of results returned by successful queries on the query endpoint (before compression).',
  });
  return (event) => {
    requests.inc({ outcome: event.outcome });
    seconds.observe({ outcome: event.outcome }, event.seconds);
    rows.inc(undefined, event.rows);
    bytes.inc(undefined, event.bytes);
  };
}
