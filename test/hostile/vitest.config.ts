// `npm run test:hostile`: the hostile-internet cases (network namespaces, raw sockets; root).
// Their files end in `.hostile.ts`, so the default config (test/**/*.test.ts) never picks them
// up for a non-root run; scripts/test.sh adds this run when it runs as root (as CI does).
// One file at a time: the cases measure octets and RSS, and the machine has 2 cores.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/hostile/**/*.hostile.ts'],
    globalSetup: ['test/hostile/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 90_000,
    fileParallelism: false,
    maxWorkers: 1,
    allowOnly: false,
  },
});
