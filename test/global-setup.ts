// One temporary directory per test run: every test file, and every process the tests start
// (quic-lb, demo backends, gtlsclient, redis-server, nginx, BIRD), makes its temporary files
// under it through TMPDIR / os.tmpdir(); it is removed when the run ends.
// QUIC_LB_KEEP_TEST_TMP=1 keeps it (its path is printed) for post-mortems.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(path.join(tmpdir(), 'quic-lb-test-'));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (process.env.QUIC_LB_KEEP_TEST_TMP === '1') {
      process.stdout.write(`test temporary files kept in ${root}\n`);
      return;
    }
    rmSync(root, { recursive: true, force: true });
  };
}
