import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Network tests start real processes on loopback; the machine has 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
    allowOnly: false,
  },
});
