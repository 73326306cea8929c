// `npm run test:quick`: the edit-test loop. Unit tests only: in-process code and loopback sockets
// of this process; no build (dist/), no system packages (gtlsclient, redis-server, nginx, BIRD,
// kubectl, docker), no network namespaces, no child processes. Not a substitute for `npm test`.
// A test file joins this list only if it needs none of those.
// `npm run coverage`: the same files with V8 coverage of src/ (text summary on the terminal,
// HTML in coverage/index.html). Code that only runs in child processes (dist/cli.js, forked LB
// workers) is measured by neither, so the CLI and the cluster show low here.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/wire/**/*.test.ts',
      'test/cid/**/*.test.ts',
      'test/backend/**/*.test.ts',
      'test/demo/protocol.test.ts',
      'test/demo/cert.test.ts',
      'test/anycast/{announce,load-sampler,server,view}.test.ts',
      'test/lb/{fuzz,maglev,router,rotation}.test.ts',
      'test/bench/{generator,packets,profiles,procstat,report,sessions,sinks,trial-record}.test.ts',
    ],
    // Both run the built CLI (dist/) as a child process.
    exclude: ['test/cid/cli.test.ts', 'test/cid/package.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    allowOnly: false,
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary', 'html', 'json-summary'],
      reportsDirectory: 'coverage',
      // A report also when a test fails (a port taken by another run, say): coverage is still read.
      reportOnFailure: true,
    },
  },
});
