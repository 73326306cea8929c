// The runtime's ceiling: a node:dgram relay that forwards every datagram unchanged to one
// backend over a connected upstream socket (no parsing, no encapsulation; replies go to the
// last client seen).
//   node --import tsx bench/routers/bare-relay.ts --listen 127.0.3.100:0 --backend 127.0.3.10:4000 [--workers 2]
// Prints `READY <port>` once bound.
import cluster from 'node:cluster';
import { createSocket } from 'node:dgram';
import { endpoint, parseArgs } from './args.js';

const args = parseArgs(process.argv.slice(2));
const listen = endpoint(args.get('listen') ?? '127.0.0.1:0');
const backend = endpoint(args.get('backend') ?? '');
const workers = Number(args.get('workers') ?? 1);
const BUFFER = 8 << 20;

function relay(): void {
  const up = createSocket({ type: 'udp4', sendBufferSize: BUFFER });
  up.on('error', () => {});
  // Minimal return path for echo measurements: replies go to the client seen last (exact with
  // one client; with many, a reply may reach another client socket of the same generator, which
  // still measures its round trip from the timestamp inside).
  let lastPort = 0;
  let lastAddress = '';
  up.connect(backend.port, backend.host, () => {
    const s = createSocket({ type: 'udp4', recvBufferSize: BUFFER });
    up.on('message', (msg) => {
      if (lastPort !== 0) s.send(msg, lastPort, lastAddress);
    });
    s.on('message', (msg, rinfo) => {
      lastPort = rinfo.port;
      lastAddress = rinfo.address;
      up.send(msg);
    });
    s.bind(listen.port, listen.host, () => {
      if (cluster.isPrimary) process.stdout.write(`READY ${s.address().port}\n`);
      else process.send?.({ ready: s.address().port });
    });
  });
}

if (workers > 1 && cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m: { ready?: number }) => {
      if (m.ready !== undefined && ++ready === workers) process.stdout.write(`READY ${m.ready}\n`);
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(0);
  });
} else {
  relay();
}
