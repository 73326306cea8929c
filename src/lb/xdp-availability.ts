// Whether `datapath: xdp` can run here, said in words an operator can act on. These are quick
// checks before the agent starts; the agent's own failure (the verifier, the attach) is the last
// word (src/lb/xdp-agent.ts).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { DatapathSpec } from './config.js';

/** The two built files the XDP data path needs (`npm run build` makes them when it can). */
export interface XdpArtifacts {
  /** The agent (xdp/agent.c). */
  binary: string;
  /** The BPF object (xdp/quic_lb.bpf.c). */
  object: string;
}

/** dist/xdp/ of this package: this module is dist/lb/xdp-availability.js once built. */
export function defaultXdpArtifacts(): XdpArtifacts {
  const dir = fileURLToPath(new URL('../xdp/', import.meta.url));
  return { binary: `${dir}quic-lb-xdp`, object: `${dir}quic_lb.bpf.o` };
}

/** Linux capability numbers (linux/capability.h). */
const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** The effective capabilities of this process (/proc/self/status CapEff), or undefined. */
function effectiveCapabilities(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : undefined;
}

/**
 * Whether capabilities `caps` (a CapEff mask) let a process load and attach an XDP program:
 * CAP_NET_ADMIN to attach, and CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN) to load one that
 * reads packet memory and calls helpers.
 */
export function capabilitiesSuffice(caps: bigint): boolean {
  const has = (n: number): boolean => ((caps >> BigInt(n)) & 1n) === 1n;
  return has(CAP_NET_ADMIN) && (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)));
}

/** Why `datapath: xdp` (spec) cannot run with `artifacts`, or undefined when nothing is in the way. */
export function xdpUnavailable(spec: DatapathSpec, artifacts: XdpArtifacts): string | undefined {
  if (process.platform !== 'linux') return `XDP needs Linux (this is ${process.platform})`;
  let status = '';
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    // no /proc: the capability check is left to the agent
  }
  const caps = effectiveCapabilities(status);
  if (caps !== undefined && !capabilitiesSuffice(caps))
    return 'no privilege: loading and attaching an XDP program needs root (or CAP_NET_ADMIN with CAP_BPF and CAP_PERFMON)';
  const missing = [artifacts.object, artifacts.binary].filter((f) => !existsSync(f));
  if (missing.length > 0)
    return `not built: ${missing.join(', ')} missing (clang and libbpf-dev at build time: scripts/system-deps.sh, then npm run build)`;
  if (spec.interface === undefined || !existsSync(`/sys/class/net/${spec.interface}`))
    return `no interface ${spec.interface ?? '(none given)'} in this network namespace`;
  return undefined;
}
