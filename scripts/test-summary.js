// The last lines of `npm test` (scripts/test.sh): "N passed, N failed[, N skipped]" from vitest's
// JSON reports, then one line per failed test (file, name, first line of the error), so a CI log
// cut to its tail still names what failed.
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;
let files = 0;
const failures = [];
const firstLine = (text) =>
  String(text ?? '')
    .split('\n')
    .find((line) => line.trim() !== '')
    ?.trim()
    .slice(0, 200) ?? '';

for (const report of process.argv.slice(2)) {
  if (!existsSync(report)) continue;
  const r = JSON.parse(readFileSync(report, 'utf8'));
  files++;
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + r.numTodoTests;
  for (const file of r.testResults ?? []) {
    const name = relative(process.cwd(), file.name);
    const failedTests = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failedTests) failures.push(`FAILED ${name} > ${t.fullName}: ${firstLine(t.failureMessages?.[0])}`);
    // A file that fails outside any test (an import error, a failing beforeAll) has no failed test.
    if (file.status === 'failed' && failedTests.length === 0)
      failures.push(`FAILED ${name}: ${firstLine(file.message)}`);
  }
}
if (files) {
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
  for (const line of failures) console.log(line);
}
