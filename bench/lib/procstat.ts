// CPU time and resident memory of a process and all its descendants, from /proc.
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

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

/** PIDs of the kernel's ksoftirqd/N threads (softirq work deferred from interrupt exits and bh-enables). */
export function softirqdPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/')) out.push(Number(d));
    } catch {
      // exited
    }
  }
  return out;
}

let softirqd: number[] | undefined;

/** CPU time (µs) the ksoftirqd threads have used so far (their PIDs found once). */
export function softirqdCpuUs(): number {
  softirqd ??= softirqdPids();
  return softirqd.reduce((a, p) => a + cpuUs(p), 0);
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

/** Busy and total jiffies of all CPUs so far (/proc/stat's first line; iowait counts as idle). */
function cpuJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * How many cores other work keeps busy right now: /proc/stat sampled over `ms` while this
 * process sleeps. Unlike the load average (a minute-long trailing mean, still high right after
 * the previous benchmark), it says whether the machine is busy at the start of this run.
 */
export async function busyCores(ms = 1000): Promise<number> {
  const a = cpuJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuJiffies();
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * cpus().length : 0;
}

/** The report note for a run that started while other work kept `busy` cores busy ('' when quiet). */
export function busyNote(busy: number): string {
  return busy > 0.25
    ? `Other work kept ${busy.toFixed(2)} cores busy when the run started (sampled over 1 s; load average ${loadavg()[0].toFixed(2)}): compare ratios, not absolute numbers.`
    : '';
}
