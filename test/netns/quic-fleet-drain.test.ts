// Issue 6 item 5: a backend drained and removed. Weight 0 takes it out of every LB's fallback
// table (no new connections) while CID-routed packets of its live connections still reach it;
// once they have finished it is removed from the config and stopped. Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type Fleet } from './netns.js';
import { waitFor } from '../helpers/wait.js';
import {
  RUN,
  client,
  fleetConfig,
  isDemoBody,
  reloadLbs,
  scrape,
  useQuicFleet,
  type ClientResult,
} from './quic-fleet.js';

const KEY = randomBytes(16).toString('hex');
const CONFIGS = [{ configId: 0, key: KEY }];
const toBackend = async (fleet: Fleet, name: string): Promise<number> => {
  let n = 0;
  for (const lb of fleet.lbs)
    n += (await scrape(fleet, lb)).get(`quic_lb_backend_packets_total{backend="${name}",direction="to_backend"}`) ?? 0;
  return n;
};
const backendOf = (fleet: Fleet, r: ClientResult): string | undefined => {
  const m = /preferred_address\.ipv4_addr=([\d.]+)/.exec(r.out);
  const be = fleet.backends.find((b) => b.address === m?.[1]);
  return be ? `be${be.index}` : undefined;
};

describe.runIf(RUN)('QUIC fleet: draining and removing a backend (root)', () => {
  const ctx = useQuicFleet({ configs: CONFIGS });

  it('weight 0: its connections finish, new ones go elsewhere; then removed and stopped without a failure', async () => {
    const { qf, fleet } = ctx;
    // Long downloads on the VIP path until at least one of them is on be3.
    const size = 10_000_000;
    const long: Promise<ClientResult>[] = [];
    for (let i = 0; i < 12 && (await toBackend(fleet, 'be3')) === 0; i++) {
      long.push(client(fleet, qf.dir, `/bytes/${size}`, ['--no-preferred-addr']));
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await toBackend(fleet, 'be3')).toBeGreaterThan(0);

    await reloadLbs(qf, fleetConfig(fleet, CONFIGS, { weights: { be3: 0 } }));
    const be3Before = await toBackend(fleet, 'be3');
    const fresh = await Promise.all(
      Array.from({ length: 12 }, () => client(fleet, qf.dir, '/bytes/20000', ['--delay-stream=200ms'])),
    );
    for (const r of fresh) {
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, 20_000)).toBe(true);
      expect(['be1', 'be2']).toContain(backendOf(fleet, r)); // never the drained backend
    }
    const longResults = await Promise.all(long);
    const onBe3 = longResults.filter((r) => backendOf(fleet, r) === 'be3');
    expect(onBe3.length).toBeGreaterThan(0);
    for (const r of longResults) {
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, size)).toBe(true);
    }
    expect(await toBackend(fleet, 'be3')).toBeGreaterThan(be3Before); // its live connections were still delivered

    // removed from the config, then stopped: new connections keep working
    await reloadLbs(qf, fleetConfig(fleet, CONFIGS, { omit: ['be3'] }));
    const be3 = qf.backendProcs.get(fleet.backends[2].name);
    process.kill(be3?.pid as number, 'SIGTERM');
    await waitFor('be3 stopped', async () => be3?.exitCode !== null, 20_000);
    const after = await Promise.all(
      Array.from({ length: 6 }, () => client(fleet, qf.dir, '/bytes/20000', ['--delay-stream=200ms'])),
    );
    for (const r of after) {
      expect(r.out).toContain('[:status: 200]');
      expect(['be1', 'be2']).toContain(backendOf(fleet, r));
    }
  }, 180_000);
});
