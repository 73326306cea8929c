// CPU time and resident memory of a process and all its descendants, from /proc.
import { readFileSync, readdirSync } from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64

function children(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (text) for (const c of text.split(/\s+/)) out.push(Number(c));
    } catch {
      // task exited
    }
  }
  return out;
}

/** `pid` and every descendant still alive. */
export function processTree(pid: number): number[] {
  const all: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    all.push(p);
    todo.push(...children(p));
  }
  return all;
}

/** utime + stime of one process in µs, or 0 if it is gone. */
export function cpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised comm; utime is field 14, stime 15 (1-based).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1e6) / CLK_TCK;
  } catch {
    return 0;
  }
}

export function treeCpuUs(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) sum += cpuUs(p);
  return sum;
}

/** VmRSS of one process in bytes, or 0 if it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function treeRssBytes(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) sum += rssBytes(p);
  return sum;
}

export function machineInfo(): { cpu_model: string; cores: number; kernel: string } {
  let model = 'unknown';
  let cores = 0;
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    model = /model name\s*:\s*(.+)/.exec(text)?.[1]?.trim() ?? model;
    cores = (text.match(/^processor\s*:/gm) ?? []).length;
  } catch {
    // not Linux
  }
  let kernel = 'unknown';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // not Linux
  }
  return { cpu_model: model, cores, kernel };
}
