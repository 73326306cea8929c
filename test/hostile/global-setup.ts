// Global setup of `npm run test:hostile`: the shared one (a per-run TMPDIR), a fresh summary at
// the start, and the closing figures printed and written (summary.ts) at the end.
import sharedSetup from '../global-setup.js';
import { formatSummary, resetSummary, writeSummary } from './summary.js';

export default function setup(): () => void {
  const teardownShared = sharedSetup();
  resetSummary();
  return () => {
    const s = writeSummary();
    if (s) process.stdout.write(`\n${formatSummary(s)}\n`);
    teardownShared();
  };
}
