import { defineConfig } from 'vitest/config';

// GPU tests share one Dawn device per worker; lavapipe is CPU-bound, so two workers on a 2-core machine.
// Timeouts are generous: with a cold shader cache lavapipe compiles every pipeline from scratch, and one
// speculative GPU test (three models, four draft sources, several tree sizes) took over 2 minutes that way.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // an empty cache directory per worker: no autotune picks or kept speculation measurements from ~/.cache
    setupFiles: ['test/helpers/cache-dir.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
