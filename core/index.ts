/** The dataflow core's public surface, one export line per module. */
export * from './dense-keys.js';
export * from './dense-rows.js';
export * from './dense-vectors.js';
export * from './errors.js';
export * from './flow.js';
export * from './graph.js';
export * from './guarded.js';
export * from './keyed-chain.js';
export * from './keyed-process.js';
export * from './par-do.js';
export * from './side-input.js';
export * from './snapshot-codec.js';
export * from './state-store.js';
export * from './tags.js';
export * from './upstream-watermarks.js';
export * from './watermarks.js';
export * from './windows.js';
