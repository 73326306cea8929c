// An in-process demo backend (DemoServer on a BackendSocket) for tests that drive it with the
// real gtlsclient. The client is a separate process; nothing here blocks the event loop.
import { randomBytes } from 'node:crypto';
import { BackendSocket, createBackendCids, type BackendCids, type Endpoint } from '../../src/backend/index.js';
import { DemoServer } from '../../src/demo/index.js';
import { createConfig, QuicLbEncoder, type QuicLbConfig } from '../../src/cid/index.js';

export interface DemoFixture {
  server: DemoServer;
  socket: BackendSocket;
  encoder: QuicLbEncoder;
  cids: BackendCids;
  config: QuicLbConfig;
  serverId: Uint8Array;
  events: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface DemoFixtureOptions {
  listen: Endpoint;
  /** Advertise this unicast address as preferred_address (bound as a second socket). */
  preferred?: Endpoint;
  serverId?: Uint8Array;
  config?: QuicLbConfig;
  eventLog?: string;
  idleTimeoutMs?: number;
  staticDir?: string;
  /** Family of `preferred` in preferred_address (default 4). */
  preferredFamily?: 4 | 6;
}

export async function startDemoFixture(o: DemoFixtureOptions): Promise<DemoFixture> {
  const config = o.config ?? createConfig({ configId: 1, serverIdLength: 2, nonceLength: 6, key: randomBytes(16) });
  const serverId = o.serverId ?? Uint8Array.of(0x0a, 0x01);
  const encoder = new QuicLbEncoder({ configs: [{ config, serverId }] });
  const cids = createBackendCids(encoder, randomBytes(32));
  // No LB in front of the fixture: clients talk to it directly.
  const socket = new BackendSocket({
    listen: o.listen,
    unicast: o.preferred ? [o.preferred] : [],
    insecureAnyLb: true,
  });
  await socket.bind();
  const server = new DemoServer({
    socket,
    cids,
    serverId: Buffer.from(serverId).toString('hex'),
    name: 'fixture',
    preferredAddress: o.preferred
      ? o.preferredFamily === 6
        ? { ipv6: o.preferred }
        : { ipv4: o.preferred }
      : undefined,
    issueNewConnectionIds: cids.allowsAdditionalCids,
    eventLog: o.eventLog,
    idleTimeoutMs: o.idleTimeoutMs,
    staticDir: o.staticDir,
  });
  const events: Array<Record<string, unknown>> = [];
  server.on('event', (e: Record<string, unknown>) => events.push(e));
  return {
    server,
    socket,
    encoder,
    cids,
    config,
    serverId,
    events,
    async close() {
      server.close();
      await socket.close();
    },
  };
}

export const eventsOf = (f: DemoFixture, name: string): Array<Record<string, unknown>> =>
  f.events.filter((e) => e.event === name);
