// A fetch thread that dies: the real one (built), then an uncaught error once it has pulled.
await import('../../dist/pipelines/fetch-thread.js');
setTimeout(() => {
  throw new Error('the fetch thread crashed');
}, 300);
