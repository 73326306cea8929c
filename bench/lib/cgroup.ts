// CPU budgets for benchmark processes: each process gets its own cgroup with a CFS quota, so a
// forwarding process can use at most `cpus` of a core whatever else runs. The forwarder
// benchmark uses it to measure how workers scale on a machine with fewer cores than the load
// needs (docs/bench.md, "Worker scaling under a CPU budget"). Needs root and the cgroup `cpu`
// controller (v1 at /sys/fs/cgroup/cpu, or v2 with `cpu` in cgroup.controllers).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Scheduler period of the budget groups: short, so a throttled process stalls for at most a few ms. */
export const BUDGET_PERIOD_US = 10_000;

interface Hierarchy {
  version: 1 | 2;
  root: string;
}

const V1_ROOT = '/sys/fs/cgroup/cpu';
const V2_ROOTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'];

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The cgroup hierarchy with a usable `cpu` controller, or why there is none. */
export function cpuHierarchy(): Hierarchy | { error: string } {
  if (existsSync(path.join(V1_ROOT, 'cpu.cfs_quota_us'))) return { version: 1, root: V1_ROOT };
  for (const root of V2_ROOTS) {
    const controllers = readText(path.join(root, 'cgroup.controllers'));
    if (controllers?.split(/\s+/).includes('cpu')) return { version: 2, root };
  }
  return {
    error: `no cgroup cpu controller (neither ${V1_ROOT}/cpu.cfs_quota_us nor "cpu" in ${V2_ROOTS.map((r) => `${r}/cgroup.controllers`).join(' or ')})`,
  };
}

/** A process confined to `cpus` of a core. `release()` moves it back out and removes the group. */
export class CpuBudget {
  private released = false;

  private constructor(
    readonly pid: number,
    readonly cpus: number,
    readonly dir: string,
    private readonly h: Hierarchy,
  ) {}

  /**
   * Creates the group `<root>/<name>`, sets its quota to `cpus` × the period and moves `pid` (the
   * whole process, every thread) into it. Throws an Error naming the file and the reason when the
   * machine does not allow it (not root, no cpu controller).
   */
  static apply(pid: number, cpus: number, name: string): CpuBudget {
    if (!(cpus > 0 && cpus <= 64)) throw new Error(`cpu budget: ${cpus} is not a number of CPUs in (0, 64]`);
    if (!/^[A-Za-z0-9._-]+$/.test(name))
      throw new Error(`cpu budget: group name ${JSON.stringify(name)} has characters other than A-Z a-z 0-9 . _ -`);
    const h = cpuHierarchy();
    if ('error' in h) throw new Error(`cpu budget: ${h.error}`);
    const dir = path.join(h.root, name);
    const quota = Math.max(1000, Math.round(cpus * BUDGET_PERIOD_US));
    const write = (file: string, value: string): void => {
      try {
        writeFileSync(path.join(dir, file), value);
      } catch (e) {
        throw new Error(`cpu budget: cannot write ${value.trim()} to ${path.join(dir, file)}: ${(e as Error).message}`);
      }
    };
    try {
      mkdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(`cpu budget: cannot create ${dir}: ${(e as Error).message}`);
    }
    const b = new CpuBudget(pid, cpus, dir, h);
    try {
      if (h.version === 1) {
        write('cpu.cfs_period_us', String(BUDGET_PERIOD_US));
        write('cpu.cfs_quota_us', String(quota));
      } else {
        write('cpu.max', `${quota} ${BUDGET_PERIOD_US}`);
      }
      write('cgroup.procs', String(pid));
    } catch (e) {
      b.release();
      throw e;
    }
    return b;
  }

  /** The group's quota as the kernel reports it, in CPUs (for the report and the tests). */
  quotaCpus(): number | undefined {
    if (this.h.version === 1) {
      const q = Number(readText(path.join(this.dir, 'cpu.cfs_quota_us')));
      const p = Number(readText(path.join(this.dir, 'cpu.cfs_period_us')));
      return q > 0 && p > 0 ? q / p : undefined;
    }
    const [q, p] = (readText(path.join(this.dir, 'cpu.max')) ?? '').trim().split(/\s+/).map(Number);
    return q > 0 && p > 0 ? q / p : undefined;
  }

  /** The process IDs in the group now. */
  members(): number[] {
    return (readText(path.join(this.dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
  }

  /** Moves what is still in the group back to the root group and removes the group. Never throws. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const p of this.members()) {
      try {
        writeFileSync(path.join(this.h.root, 'cgroup.procs'), String(p));
      } catch {
        // exited meanwhile
      }
    }
    try {
      rmdirSync(this.dir);
    } catch {
      // still busy or already gone: the group is empty or holds an exiting process; nothing runs limited by it
    }
  }
}
