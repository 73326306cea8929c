// The pool-change scenario when the generator's clock lags the harness's (what a loaded machine
// does: the generator's worker thread starts its run late, so the SIGHUP that removes sink3
// lands while sink3's connections are still sending). quic-lb serve (four-pass) then sends
// those packets by fallback — their backend is gone, there is no right destination — and the
// sinks must count them as orphaned, not as misdelivered; every other packet reaches its owner.
import { afterAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../../bench/harness/build.js';
import { Engine } from '../../bench/harness/engine.js';
import { quicLbRouter, type RouterHandle } from '../../bench/harness/routers.js';
import { CHANGED_POOL } from '../../bench/harness/suite.js';

describe('pool change with a lagging generator', () => {
  const engine = new Engine({ conns: 400, packetSize: 300, seed: 11, maxFlows: 400, needRedis: false });
  let handle: RouterHandle | undefined;
  afterAll(async () => {
    await handle?.stop();
    await engine.close();
  });

  it('counts the removed backend\u2019s packets as orphaned and keeps correct delivery at 1', async () => {
    ensureBuilt(() => {});
    await engine.setup();
    const spec = quicLbRouter('four-pass');
    handle = await engine.start(spec, 6);
    const T = 1500;
    const h = handle;
    const r = await engine.trial(spec, h, {
      rate: 3000,
      durationMs: T,
      // The harness changes the pool at T/3; the generator retires sink3's clients only at 2T/3.
      actions: [
        {
          atMs: T / 3,
          run: async () => {
            await engine.retireSink(3);
            await h.setPool(CHANGED_POOL);
          },
        },
      ],
      events: [{ atMs: (2 * T) / 3, type: 'retire-owner', sink: 3 }],
    });
    expect(r.connections).toBe(400);
    // About a quarter of the traffic for T/3 belonged to sink3 after it left.
    expect(r.orphaned).toBeGreaterThan(50);
    expect(r.misdelivered).toBe(0);
    expect(r.correct_ratio).toBe(1);
  });
});
