import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    // Property tests print their seed on failure; re-run one with FC_SEED=<seed>.
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
