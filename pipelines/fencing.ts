/**
 * Fencing: the source, the sinks and the checkpoint store of a run, each guarded by the worker's lease,
 * so a worker whose id a newer worker took over stops at its next pull, write, acknowledgement or
 * checkpoint save, before it performs it (with `FencedError`).
 */

import type { Lease } from '../connectors/lease.js';
import type { SnapshotState } from '../core/index.js';
import type { Pull, Source } from './contracts.js';
import type { CheckpointStore, PipelineSinks, StagedCheckpoint } from './runner.js';

export function fencedSource<P extends Pull>(source: Source<P>, lease: Lease): Source<P> {
  const guarded: Source<P> = {
    name: source.name,
    async open(position) {
      // Opening recreates the durable consumer: the one thing a stale worker must never do.
      await lease.check('open the source');
      await source.open(position);
    },
    async next() {
      await lease.check('pull');
      return source.next();
    },
    position: () => source.position(),
    async commit() {
      await lease.check('acknowledge');
      await source.commit();
    },
    async close() {
      // A fenced worker leaves its deliveries alone: negative acknowledgements would reach the consumer
      // its successor recreated under the same name and redeliver what the successor holds.
      if (!lease.fenced) await source.close();
    },
    ...(source.resumesFromPosition === undefined ? {} : { resumesFromPosition: source.resumesFromPosition }),
  };
  const pending = source.pending?.bind(source);
  return pending === undefined ? guarded : { ...guarded, pending };
}

export function fencedSinks(sinks: PipelineSinks, lease: Lease): PipelineSinks {
  const seal = sinks.seal?.bind(sinks);
  return {
    async rollback(committed) {
      await lease.check('roll back');
      await sinks.rollback(committed);
    },
    async write(batch) {
      await lease.check('write outputs');
      await sinks.write(batch);
    },
    // Not guarded: `seal` must take its buffers before its first await (see PipelineSinks), so it cannot
    // wait for a check. What it writes belongs to an epoch whose checkpoint save is guarded, and a
    // successor waits out the old holder before it rolls such files back.
    ...(seal === undefined ? {} : { seal }),
  };
}

export function fencedCheckpoints(checkpoints: CheckpointStore, lease: Lease): CheckpointStore {
  return {
    ...(checkpoints.chains === true ? { chains: true } : {}),
    ...(checkpoints.extendsLoaded === true ? { extendsLoaded: true } : {}),
    load: () => checkpoints.load(),
    async save(checkpoint) {
      await lease.check('save a checkpoint');
      await checkpoints.save(checkpoint);
    },
    // Checked before the state is stored and again before the commit, as a save is before both.
    ...(checkpoints.stage === undefined
      ? {}
      : {
          async stage(seq: number, state: SnapshotState): Promise<StagedCheckpoint> {
            await lease.check('stage a checkpoint');
            const staged = await checkpoints.stage!(seq, state);
            return {
              async commit(checkpoint) {
                await lease.check('save a checkpoint');
                await staged.commit(checkpoint);
              },
            };
          },
        }),
  };
}
