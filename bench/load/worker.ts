// Worker-thread host for the load generator.
import { workerData } from 'node:worker_threads';
import { serveRpc } from '../lib/rpc.js';
import { Generator, type GeneratorOptions, type RunOptions, type SessionBits, type Target } from './generator.js';

const { options, ownerBuffer } = workerData as { options: GeneratorOptions; ownerBuffer: SharedArrayBuffer };
const gen = new Generator(options, new Int8Array(ownerBuffer));

serveRpc({
  init: () => gen.init(),
  connect: (a: { target: Target }) => gen.connect(a.target),
  handshake: (a: { trial: number; rate: number }) => gen.handshake(a.trial, a.rate),
  mint: (a: { scheme: string }) => gen.mint(a.scheme),
  run: (a: RunOptions) => gen.run(a),
  churn: (a: { trial: number; target: Target; count: number; batch: number; rate: number }) =>
    gen.churn(a.trial, a.target, a.count, a.batch, a.rate),
  echoStats: () => gen.echoStats(),
  sessionMode: (a: SessionBits) => gen.sessionMode(a),
  sessionReport: () => gen.sessionReport(),
  connectOwners: (a: { sinks: Target[] }) => gen.connectOwners(a.sinks),
  close: () => gen.close(),
});
