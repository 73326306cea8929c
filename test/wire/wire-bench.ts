// Allocation and per-operation cost of the wire hot paths (not a test: run by hand).
//   node --expose-gc --import tsx test/wire/wire-bench.ts
// For each case: ns/op (median of 5 rounds of 1e6 ops) and heap growth over one round with no GC
// in between (an allocation-free function grows the heap by ~0 bytes per op).
import { PerformanceObserver } from 'node:perf_hooks';
import {
  PacketHeader,
  ProxyHeader,
  ProxyHeaderTemplate,
  VarintResult,
  createProxyAuth,
  encodeProxyHeader,
  parseHeader,
  parseProxyHeader,
  readVarintInto,
  signProxyHeader,
  ProxyDirection,
} from '../../src/wire/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
let gcCount = 0;
new PerformanceObserver((l) => (gcCount += l.getEntries().length)).observe({ entryTypes: ['gc'] });

function measure(name: string, n: number, f: (i: number) => number): void {
  const times: number[] = [];
  let sink = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += f(i);
    times.push(Number(process.hrtime.bigint() - t0) / n);
  }
  gc!();
  const g0 = gcCount;
  const h0 = process.memoryUsage().heapUsed;
  for (let i = 0; i < n; i++) sink += f(i);
  const h1 = process.memoryUsage().heapUsed;
  times.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(44)} ${times[2].toFixed(1).padStart(8)} ns/op   heap +${((h1 - h0) / n).toFixed(2)} B/op   gcs ${gcCount - g0}   (${sink & 1})`,
  );
}

const N = 1_000_000;
const long = Buffer.from('c000000001088394c8f03e5157080000449e' + '00'.repeat(1182), 'hex');
const short = Buffer.from('4f0102030405060708' + '00'.repeat(60), 'hex');
const h = new PacketHeader();
measure('parseHeader (v1 Initial)', N, () => (parseHeader(long, h) ? h.dcidLength : 0));
measure('parseHeader (short)', N, () => (parseHeader(short, h) ? h.dcidOffset : 0));
const vi = Buffer.from('c2197c5eff14e88c9d7f3e7d7bbd25', 'hex');
const vr = new VarintResult();
measure(
  'readVarintInto x3 (4,2,1 octets)',
  N,
  () => readVarintInto(vi, 8, vr) + readVarintInto(vi, 12, vr) + readVarintInto(vi, 14, vr),
);
const tpl = new ProxyHeaderTemplate({ fixedAddr: '198.19.0.1', fixedPort: 443, fixedSide: 'dst' });
const addrs = Array.from({ length: 256 }, (_, i) => `198.18.${i}.${(i * 7) & 255}`);
measure('ProxyHeaderTemplate.next (IPv4 string)', N, (i) => tpl.next(addrs[i & 255], 40000 + (i & 1023))!.length);
const tpl6 = new ProxyHeaderTemplate({ fixedAddr: '2001:db8::1', fixedPort: 443, fixedSide: 'dst' });
const addrs6 = Array.from({ length: 256 }, (_, i) => `2001:db8:${i.toString(16)}::${(i * 7).toString(16)}`);
measure('ProxyHeaderTemplate.next (IPv6 string)', N, (i) => tpl6.next(addrs6[i & 255], 40000)!.length);
const dg = Buffer.concat([
  encodeProxyHeader({ srcAddr: '198.18.0.1', srcPort: 5, dstAddr: '198.19.0.1', dstPort: 443 }),
  long,
]);
const ph = new ProxyHeader();
measure('parseProxyHeader (IPv4, no auth)', N, () => parseProxyHeader(dg, ph));
const auth = createProxyAuth(Buffer.alloc(32, 1), { now: () => 1_750_000_000_000 });
const signed = Buffer.concat([
  encodeProxyHeader({ srcAddr: '198.18.0.1', srcPort: 5, dstAddr: '198.19.0.1', dstPort: 443, hmacKey: auth }, long),
  long,
]);
measure('parseProxyHeader (IPv4, HMAC, 1200-octet payload)', N / 10, () => parseProxyHeader(signed, ph, auth));
const tplA = new ProxyHeaderTemplate({ fixedAddr: '198.19.0.1', fixedPort: 443, fixedSide: 'dst', withAuth: true });
measure('template.next + signProxyHeader (HMAC, 1200 B)', N / 10, (i) =>
  signProxyHeader(tplA.next(addrs[i & 255], 1)!, long, auth, ProxyDirection.TO_BACKEND) ? 1 : 0,
);
console.log(`node ${process.version}, ${process.arch}`);
