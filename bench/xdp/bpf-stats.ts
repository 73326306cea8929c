// The XDP program's own run time, from the kernel's BPF statistics: with
// kernel.bpf_stats_enabled=1 the kernel times every run of every program, and the fdinfo of a
// program's file descriptor (held by the XDP agent, quic-lb-xdp) reports run_time_ns and run_cnt.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
/** enum bpf_prog_type: BPF_PROG_TYPE_XDP (include/uapi/linux/bpf.h). */
const PROG_TYPE_XDP = 6;

export interface ProgStats {
  id: number;
  type: number;
  run_time_ns: number;
  run_cnt: number;
}

/** A BPF program's fields from the text of /proc/PID/fdinfo/FD, or null when the fd is no BPF program. */
export function parseProgFdinfo(text: string): ProgStats | null {
  const field = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const id = field('prog_id');
  const type = field('prog_type');
  if (id === undefined || type === undefined) return null;
  return { id, type, run_time_ns: field('run_time_ns') ?? 0, run_cnt: field('run_cnt') ?? 0 };
}

/** The XDP programs whose fds the processes `pids` hold, one entry per program id. */
export function xdpPrograms(pids: number[]): ProgStats[] {
  const out = new Map<number, ProgStats>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const p = parseProgFdinfo(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (p && p.type === PROG_TYPE_XDP) out.set(p.id, p);
      } catch {
        // closed meanwhile
      }
    }
  }
  return [...out.values()];
}

/**
 * Turns the kernel's BPF run-time statistics on (a machine-wide sysctl; it costs every BPF
 * program two clock reads per run) and returns what puts the old value back.
 */
export function enableBpfStats(): () => void {
  const before = readFileSync(STATS_SYSCTL, 'utf8').trim();
  if (before === '1') return () => {};
  writeFileSync(STATS_SYSCTL, '1');
  let done = false;
  const restore = (): void => {
    if (done) return;
    done = true;
    process.off('exit', restore);
    writeFileSync(STATS_SYSCTL, before);
  };
  // Also on an exit the caller's `finally` never reaches (SIGINT: test/netns/netns.ts exits).
  process.on('exit', restore);
  return restore;
}
