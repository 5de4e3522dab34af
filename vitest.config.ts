import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    // Child processes, not worker threads: chDB and DuckDB are native modules, and chDB binds one data
    // directory per process, so every test file gets a fresh process.
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2, isolate: true } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.tmp/vitest-results.json' },
  },
});
