import { defineConfig } from 'vitest/config';

// Tests import the built packages (dist/), exactly what child processes run; `npm test` builds first.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Two cores: integration tests spawn worker processes of their own, so files run one or two at a time.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
