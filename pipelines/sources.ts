/**
 * Index of the sources the meter-quality job reads: each role lives in its own file (files, messages,
 * partitioned merge, partition sets, checkpoint positions); this module keeps the names importable from
 * one place.
 */
export { batchFromDecoded } from './decoded-batch.js';
export { defaultBatchBytes, type FilesSourceOptions, filesSource } from './files-source.js';
export { type MessageSourceOptions, messageReadingSource, type OpenMessages } from './message-source.js';
export { formatPartitionSet, MAX_OWNED_PARTITIONS, parsePartitionSet } from './partition-set.js';
export {
  type OpenPartitionMessages,
  type PartitionedSourceOptions,
  partitionedReadingSource,
} from './partitioned-source.js';
export { SourcePositionError } from './source-positions.js';
