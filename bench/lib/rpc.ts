// Request/response over a worker thread's message port, and starting a TypeScript worker under tsx.
import { Worker, parentPort } from 'node:worker_threads';

type Handler = (args: never) => unknown;

export class WorkerRpc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly worker: Worker) {
    worker.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.result);
    });
    worker.on('error', (e) => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    });
  }

  /** Starts `file` (a .ts module) in a worker thread with tsx registered. */
  static start(file: URL, workerData: unknown): WorkerRpc {
    const boot =
      "const { workerData } = require('node:worker_threads');" +
      "import('tsx/esm/api').then((m) => { m.register(); return import(workerData.__file); })" +
      '.catch((e) => { console.error(e); process.exit(1); });';
    const w = new Worker(boot, { eval: true, workerData: { ...(workerData as object), __file: file.href } });
    return new WorkerRpc(w);
  }

  call<T>(cmd: string, args: unknown = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, cmd, args });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** In a worker: answer WorkerRpc calls with `handlers[cmd](args)`. */
export function serveRpc(handlers: Record<string, Handler>): void {
  parentPort!.on('message', (m: { id: number; cmd: string; args: never }) => {
    const h = handlers[m.cmd];
    Promise.resolve()
      .then(() => {
        if (!h) throw new Error(`unknown command ${m.cmd}`);
        return h(m.args);
      })
      .then(
        (result) => parentPort!.postMessage({ id: m.id, result }),
        (e: unknown) =>
          parentPort!.postMessage({ id: m.id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
      );
  });
}
