// CpuBudget (bench/lib/cgroup.ts): a spinning process moved into its own group gets at most its
// quota of CPU, and release() takes it back out and removes the group. The bound asserted is an
// upper one (a loaded machine gives the spinner less, never more); it needs root and the cgroup
// cpu controller, which this project's machines have; elsewhere apply() must say why it cannot.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuBudget, cpuHierarchy } from '../../bench/lib/cgroup.js';
import { cpuUs } from '../../bench/lib/procstat.js';
import { sleep } from '../helpers/wait.js';

describe('CpuBudget', () => {
  it('rejects a budget that is not a share of CPUs and a group name with path characters', () => {
    expect(() => CpuBudget.apply(process.pid, 0, 'x')).toThrow(/not a number of CPUs/);
    expect(() => CpuBudget.apply(process.pid, Number.NaN, 'x')).toThrow(/not a number of CPUs/);
    expect(() => CpuBudget.apply(process.pid, 0.5, '../escape')).toThrow(/group name/);
  });

  it('caps a spinning process at its quota, and release() moves it out and removes the group', async () => {
    const spinner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    const pid = spinner.pid!;
    let b: CpuBudget | undefined;
    try {
      const h = cpuHierarchy();
      const isRoot = process.getuid?.() === 0;
      if ('error' in h || !isRoot) {
        // Not a machine this benchmark phase can run on: the error names the reason.
        expect(() => CpuBudget.apply(pid, 0.2, `quic-lb-test-${pid}`)).toThrow(/^cpu budget: /);
        return;
      }
      b = CpuBudget.apply(pid, 0.2, `quic-lb-test-${pid}`);
      expect(b.quotaCpus()).toBeCloseTo(0.2, 5);
      expect(b.members()).toEqual([pid]);
      await sleep(200);
      const c0 = cpuUs(pid);
      const t0 = process.hrtime.bigint();
      await sleep(1500);
      const used = (cpuUs(pid) - c0) / (Number(process.hrtime.bigint() - t0) / 1000);
      // 0.2 of a core, plus the 10 ms tick of /proc accounting; unlimited it would be ~1.0.
      expect(used).toBeLessThan(0.3);
      expect(used).toBeGreaterThan(0);
      b.release();
      expect(existsSync(b.dir)).toBe(false);
      // Out of the group it spins freely again (bounded below only loosely: the machine may be busy).
      const c1 = cpuUs(pid);
      await sleep(1000);
      expect(cpuUs(pid) - c1).toBeGreaterThan(0);
    } finally {
      spinner.kill('SIGKILL');
      b?.release(); // a failed assertion must not leave the group behind
    }
  }, 15_000);
});
