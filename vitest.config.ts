import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const packages = ['core', 'protocol', 'engine', 'coordinator', 'worker', 'cli'];

// Tests import the packages' TypeScript sources (vite resolves the `.js` specifiers to `.ts`), so a test run
// needs no build; processes that tests spawn run the built `dist/`, which `npm test` builds first (pretest).
export default defineConfig({
  resolve: {
    alias: Object.fromEntries(
      packages.map((p) => [`@hwa/${p}`, fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url))]),
    ),
  },
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Two cores: integration tests start worker processes of their own.
    maxWorkers: 2,
  },
});
