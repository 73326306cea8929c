// Worker-thread host for the sinks (keeps their receive path off the harness's event loop).
import { workerData } from 'node:worker_threads';
import { serveRpc } from '../lib/rpc.js';
import { SinkSet, type SinkSessionBits } from './sinks.js';

const { addresses, ownerBuffer } = workerData as { addresses: string[]; ownerBuffer: SharedArrayBuffer };
const sinks = new SinkSet(addresses, new Int8Array(ownerBuffer));

serveRpc({
  start: (a: { ports?: number[] }) => sinks.start(a.ports),
  reset: (a: { trial: number; echo?: boolean }) => sinks.reset(a.trial, a.echo),
  retire: (a: { sink: number }) => sinks.retire(a.sink),
  stats: () => sinks.stats(),
  sessionMode: (a: SinkSessionBits) => sinks.sessionMode(a),
  close: () => sinks.close(),
});
