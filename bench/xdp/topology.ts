// bench:xdp's topology (issue 15), in network namespaces built by test/netns/netns.ts (which
// tracks every process started through it, kills what is left inside its namespaces and deletes
// them on teardown, process exit, SIGINT and SIGTERM):
//
//   load ns (udp-blast) ── router ns ─┬─ lb1 ns (router under test 1, listens on 198.18.11.2)
//                                     ├─ …
//                                     ├─ lbN ns (router under test N, 198.18.(10+N).2)
//                                     └─ sink ns (udp-sink: five backends, one address, five ports)
//
// Every router under test has a namespace (and a veth) of its own, so an XDP program on one LB's
// link never sees another router's traffic, and native and generic attach can both run. Each
// LB forwards (net.ipv4.ip_forward=1: the XDP program's next-hop lookup is a forwarding lookup,
// docs/xdp.md). The router side of every LB's veth gets a pass-only XDP program in native mode
// (xdp_pass.bpf.c): a veth delivers frames its peer sends with XDP_TX only while it runs NAPI.
// The load namespace's link has its checksum offload off (see create()).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createFleet, type Fleet, type Ns } from '../../test/netns/netns.js';
import { parseMetrics } from '../../test/helpers/metrics.js';
import { repoRoot } from '../harness/build.js';
import { XDP_METRICS_PORT, type RouterPlacement } from '../harness/routers.js';
import type { NativeTopology } from '../native/native.js';

export const NS_PREFIX = 'qlbxb';
/** The port every router under test listens on, in its own namespace. */
export const ROUTER_PORT = 4433;
/** Sinks of the sink namespace (INITIAL_POOL's four backends and the spare). */
export const SINK_COUNT = 5;

const PASS_SRC = path.join(repoRoot, 'bench', 'xdp', 'xdp_pass.bpf.c');
const PASS_DIR = path.join(repoRoot, '.tmp', 'bench-xdp');

/** Compiles xdp_pass.bpf.c (again only when the source is newer); returns the object or why not. */
export function buildPassProgram(): string | { error: string } {
  const obj = path.join(PASS_DIR, 'xdp_pass.bpf.o');
  if (existsSync(obj) && statSync(obj).mtimeMs >= statSync(PASS_SRC).mtimeMs) return obj;
  mkdirSync(PASS_DIR, { recursive: true });
  const triplet = spawnSync('cc', ['-print-multiarch'], { encoding: 'utf8' }).stdout?.trim();
  const inc = triplet && existsSync(`/usr/include/${triplet}`) ? ['-I', `/usr/include/${triplet}`] : [];
  const r = spawnSync('clang', ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', ...inc, '-c', PASS_SRC, '-o', obj], {
    encoding: 'utf8',
  });
  if (r.error || r.status !== 0)
    return {
      error: `clang could not build ${path.relative(repoRoot, PASS_SRC)}: ${(r.stderr || String(r.error)).trim()}`,
    };
  return obj;
}

export class XdpTopology {
  private constructor(
    readonly fleet: Fleet,
    /** Why native attach is not measured ('' when it is). */
    readonly nativeUnavailable: string,
  ) {}

  /** Namespaces for `routers` routers under test (1..8); tears itself down when setup fails. */
  static async create(routers: number): Promise<XdpTopology> {
    const fleet = await createFleet({ prefix: NS_PREFIX, lbCount: routers, backendCount: 1 });
    try {
      for (const lb of fleet.lbs) await fleet.execOk(lb, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      const pass = buildPassProgram();
      let why = typeof pass === 'string' ? '' : pass.error;
      // The sender computes its UDP checksums itself, as a datagram from a NIC carries them. With
      // veth's checksum offload on, a local sender's datagram crosses the veths with a partial
      // checksum (CHECKSUM_PARTIAL, only the pseudo-header sum in the field); native XDP sees the
      // raw frame without that flag, and the program, which derives the outer checksum from the
      // inner one, sent datagrams the sink dropped as UdpInCsumErrors.
      const off = await fleet.exec(fleet.client, ['ethtool', '-K', fleet.client.ifname, 'tx', 'off']);
      if (off.code !== 0)
        why ||= `ethtool -K ${fleet.client.ifname} tx off failed in the load namespace (${off.stderr.trim() || 'ethtool missing? scripts/system-deps.sh'}): native XDP would forward datagrams with a partial inner checksum, whose outer checksum is wrong`;
      if (typeof pass === 'string')
        for (const lb of fleet.lbs) {
          const r = await fleet.exec(fleet.router, [
            'ip',
            'link',
            'set',
            'dev',
            lb.routerIfname,
            'xdpdrv',
            'obj',
            pass,
            'sec',
            'xdp',
          ]);
          if (r.code !== 0) {
            why = `the pass program does not attach natively to ${lb.routerIfname}: ${r.stderr.trim()}`;
            break;
          }
        }
      return new XdpTopology(fleet, why);
    } catch (e) {
      await fleet.teardown();
      throw e;
    }
  }

  get loadNs(): Ns {
    return this.fleet.client;
  }

  get sinkNs(): Ns {
    return this.fleet.backends[0];
  }

  /** Where the NativeEngine sends from, sinks and starts routers (router i in lb(i+1)). */
  native(): NativeTopology {
    return {
      loadNetns: this.loadNs.name,
      sources: [this.loadNs.address as string],
      sinkNetns: this.sinkNs.name,
      sinkAddresses: Array.from({ length: SINK_COUNT }, () => this.sinkNs.address as string),
      // past the LBs (the no-LB candidate, which starts nothing): no address
      routerHost: (i) => this.fleet.lbs[i]?.address ?? '',
    };
  }

  placement(): RouterPlacement {
    return {
      of: (host) => {
        const lb = this.fleet.lbs.find((l) => l.address === host);
        if (!lb) throw new Error(`bench:xdp: no LB namespace has ${host}`);
        return lb.name;
      },
      port: ROUTER_PORT,
    };
  }

  lb(i: number): Ns {
    const lb = this.fleet.lbs[i];
    if (!lb) throw new Error(`bench:xdp: router ${i} has no namespace (${this.fleet.lbs.length} built)`);
    return lb;
  }

  /** The metrics of the `quic-lb serve` listening on `host` (empty when it does not answer). */
  async metrics(host: string): Promise<Map<string, number>> {
    const lb = this.fleet.lbs.find((l) => l.address === host);
    if (!lb) return new Map();
    const url = `http://127.0.0.1:${XDP_METRICS_PORT}/metrics`;
    const r = await this.fleet.exec(lb, ['curl', '-s', '--max-time', '3', url], 6000);
    return parseMetrics(r.code === 0 ? r.stdout : '');
  }

  teardown(): Promise<void> {
    return this.fleet.teardown();
  }
}
