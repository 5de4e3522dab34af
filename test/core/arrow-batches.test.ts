import type { RecordBatch } from 'apache-arrow';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { dataEvent, type FlowEvent, mapBatch, PipelineGraph, watermarkEvent } from '../../core/index.js';
import { readingArrowSchema, recordBatchFromRows } from '../../schemas/arrow.js';
import { readingColumns } from '../../schemas/reading.js';
import { reading } from '../operators/fixtures.js';

/** The core carries columnar batches as well as arrays of objects: a stage may work on whole Arrow columns. */
describe('Arrow record batches through the core', () => {
  it('a columnar stage sums a column of each record batch, counted per stage like any element', () => {
    const batchOf = (kws: number[]) =>
      recordBatchFromRows(
        readingColumns,
        kws.map((kw, i) => reading({ kw, ts: Date.UTC(2024, 2, 11) + i * 900_000 })),
        readingArrowSchema,
      );
    const graph = new PipelineGraph('columnar');
    graph.source('batches');
    const sumKw = graph.stage(
      'sumKw',
      mapBatch<RecordBatch, number>((batches, out) => {
        for (const batch of batches) {
          let sum = 0;
          for (const v of batch.getChild('kw')!.toArray() as Float64Array) sum += v;
          out.emit(Math.round(sum * 1e4) / 1e4);
        }
      }),
    );
    const seen: FlowEvent<number>[] = [];
    from([dataEvent([batchOf([1, 2, 3.5]), batchOf([0.25])]), watermarkEvent(5)])
      .pipe(sumKw)
      .subscribe((e) => seen.push(e));
    expect(seen).toEqual([dataEvent([6.5, 0.25]), watermarkEvent(5)]);
    expect(graph.stageCounters().sumKw).toMatchObject({ in: 2, out: 2 });
  });
});
