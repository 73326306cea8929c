// The Retry offload's decisions in process, with an injected clock (src/lb/retry-offload.ts): the
// load-triggered thresholds to the datagram, the quiet period, the transition, offPerSecond 0, and
// reloads between modes. No sockets: a recording sender stands in for the VIP socket.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  Counters,
  FourTuple,
  RetryOffload,
  buildRouterState,
  createLogger,
  decide,
  validateConfig,
} from '../../src/lb/index.js';
import {
  OpenedRetryToken,
  QUIC_V1,
  RETRY_OK,
  RETRY_TOKEN_ERR_INVALID,
  RETRY_TOKEN_OK,
  RetryPacket,
  RetryTokenKeys,
  generateRetryTokenKey,
  openRetryToken,
  parseRetry,
} from '../../src/wire/index.js';
import { FALLBACK_KEY, KEY } from './fixtures.js';
import { syntheticInitial } from '../helpers/retry-initial.js';

const key = generateRetryTokenKey(7);
const keyHex = { sequence: 7, key: Buffer.from(key.key).toString('hex'), iv: Buffer.from(key.iv).toString('hex') };

/** A validated config with `retry` (its keys injected: validateConfig reads files, these tests have none). */
function config(retry: Record<string, unknown>): ReturnType<typeof validateConfig> {
  const c = validateConfig({
    listen: ['127.0.6.3:4433'],
    quicLb: [{ configId: 1, serverIdLength: 2, nonceLength: 6, key: KEY }],
    backends: [{ name: 'a', address: '127.0.6.44:4000', serverIds: { 1: '0a01' }, health: { type: 'none' } }],
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    retry: { ...retry, mode: 'off' },
  });
  return { ...c, retry: { ...c.retry!, mode: retry.mode as 'off' | 'always' | 'load', keys: [keyHex] } };
}

/** An offload on one VIP with a fake clock; `send(initial)` runs decide() then intercept(). */
function harness(cfg: ReturnType<typeof validateConfig>, family: 4 | 6 = 4) {
  const clock = { now: 1_000_000 };
  const sent: Uint8Array[] = [];
  const counters = new Counters();
  const offload = new RetryOffload(
    counters.retry,
    createLogger('silent'),
    (m) => {
      sent.push(Buffer.from(m));
      return true;
    },
    () => clock.now,
  );
  const t = new FourTuple();
  t.family = family;
  t.client.set(family === 4 ? CLIENT4 : CLIENT6);
  t.clientPort = 5000;
  t.vip.set(family === 4 ? [127, 0, 6, 3] : Buffer.from('fd00000000000000000000000000006b', 'hex'));
  t.vipPort = 4433;
  let on = offload.configure(cfg);
  offload.addVip(t);
  let state = buildRouterState(cfg, new Map(), counters);
  return {
    clock,
    sent,
    counters,
    offload,
    get on() {
      return on;
    },
    reconfigure(next: ReturnType<typeof validateConfig>): void {
      on = offload.configure(next);
      state = buildRouterState(next, new Map(), counters);
    },
    /** True when the offload consumed the datagram. */
    send(dg: Buffer): boolean {
      const d = decide(dg, t, state);
      return on && d.backend >= 0 && offload.intercept(dg, state.header, d, t, '127.0.6.80', 0);
    },
  };
}

const CLIENT4 = [127, 0, 6, 80];
/** fd00::6:80 */
const CLIENT6 = Buffer.from('fd000000000000000000000000060080', 'hex');

const tokenless = (): Buffer => syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8));

describe('RetryOffload, load-triggered', () => {
  it('turns on above onPerSecond (not at it), off after offAfterMs under offPerSecond, with a transition', () => {
    const h = harness(
      config({ mode: 'load', load: { onPerSecond: 10, offPerSecond: 4, offAfterMs: 1000, transitionMs: 500 } }),
    );
    expect(h.on).toBe(true);
    // 10 Initials in one second: at the threshold, still off.
    for (let i = 0; i < 10; i++) {
      expect(h.send(tokenless())).toBe(false);
      h.clock.now += 50;
    }
    expect(h.offload.isActive(0)).toBe(false);
    // The 11th within the window: on, and answered with a Retry.
    const dcid = randomBytes(8);
    expect(h.send(syntheticInitial(QUIC_V1, dcid, randomBytes(8)))).toBe(true);
    expect(h.offload.isActive(0)).toBe(true);
    expect(h.sent.length).toBe(1);
    expect(parseRetry(h.sent[0], dcid, new RetryPacket())).toBe(RETRY_OK);
    expect(h.counters.retry.modeChanges).toBe(1);
    expect(h.counters.retry.active[0]).toBe(1);
    expect(h.counters.retry.since[0]).toBe(h.clock.now);

    // 5/s for 3 s: at or above offPerSecond 4, stays on (ticks every 250 ms).
    for (let ms = 0; ms < 3000; ms += 200) {
      h.send(tokenless());
      h.clock.now += 200;
      h.offload.tick();
    }
    expect(h.offload.isActive(0)).toBe(true);
    // Quiet: the rate decays under 4 within ~1 s, then 1000 ms more.
    let offAt = -1;
    const quietStart = h.clock.now;
    for (let ms = 0; ms < 4000 && offAt < 0; ms += 250) {
      h.clock.now += 250;
      h.offload.tick();
      if (!h.offload.isActive(0)) offAt = h.clock.now - quietStart;
    }
    expect(offAt).toBeGreaterThanOrEqual(1000);
    expect(offAt).toBeLessThanOrEqual(2500);
    expect(h.counters.retry.modeChanges).toBe(2);
    expect(h.counters.retry.active[0]).toBe(0);
    // Transition: a Retry token is still opened (forged: dropped); after transitionMs it is forwarded unopened.
    const forged = syntheticInitial(
      QUIC_V1,
      randomBytes(8),
      randomBytes(8),
      Buffer.concat([Buffer.of(7), randomBytes(60)]),
    );
    expect(h.send(forged)).toBe(true);
    expect(h.counters.retry.tokens[4]).toBe(1); // invalid
    h.clock.now += 500;
    expect(h.send(forged)).toBe(false);
    expect(h.counters.retry.tokens[8]).toBe(1); // unverified
    expect(h.send(tokenless())).toBe(false);
  });

  it('offPerSecond 0: stays on while any token-less Initial arrives, off once none has for offAfterMs', () => {
    const h = harness(config({ mode: 'load', load: { onPerSecond: 2, offPerSecond: 0, offAfterMs: 500 } }));
    for (let i = 0; i < 3; i++) h.send(tokenless());
    expect(h.offload.isActive(0)).toBe(true);
    // One Initial every 750 ms for 10 s: the rate never decays to 0, so it stays on.
    for (let ms = 0; ms < 10_000; ms += 250) {
      if (ms % 750 === 0) h.send(tokenless());
      h.clock.now += 250;
      h.offload.tick();
    }
    expect(h.offload.isActive(0)).toBe(true);
    for (let ms = 0; ms < 4000; ms += 250) {
      h.clock.now += 250;
      h.offload.tick();
    }
    expect(h.offload.isActive(0)).toBe(false);
  });

  it('reloads: load -> always turns on, always -> off turns off and stops intercepting, off -> load starts off', () => {
    const h = harness(config({ mode: 'load', load: { onPerSecond: 100 } }));
    expect(h.send(tokenless())).toBe(false);
    h.reconfigure(config({ mode: 'always' }));
    expect(h.offload.isActive(0)).toBe(true);
    expect(h.send(tokenless())).toBe(true);
    h.reconfigure(config({ mode: 'off' }));
    expect(h.on).toBe(false);
    expect(h.offload.isActive(0)).toBe(false);
    expect(h.send(tokenless())).toBe(false);
    h.reconfigure(config({ mode: 'load', load: { onPerSecond: 100 } }));
    expect(h.offload.isActive(0)).toBe(false);
    expect(h.counters.retry.modeChanges).toBe(2);
    expect(h.sent.length).toBe(1);
  });
});

describe('RetryOffload, IPv6 client', () => {
  it('seals the token for the 16-octet address and port; it opens only for that address', () => {
    const h = harness(config({ mode: 'always' }), 6);
    const dcid = randomBytes(8);
    expect(h.send(syntheticInitial(QUIC_V1, dcid, randomBytes(8)))).toBe(true);
    const retry = Buffer.from(h.sent[0]);
    const r = new RetryPacket();
    expect(parseRetry(retry, dcid, r)).toBe(RETRY_OK);
    const scid = retry.subarray(r.scidOffset, r.scidOffset + r.scidLength);
    const token = retry.subarray(r.tokenOffset, r.tokenOffset + r.tokenLength);
    const ring = new RetryTokenKeys([key]);
    const out = new OpenedRetryToken();
    const open = (ip: Uint8Array): number =>
      openRetryToken(ring, token, 0, token.length, ip, 5000, scid, Math.floor(h.clock.now / 1000), out);
    expect(open(CLIENT6)).toBe(RETRY_TOKEN_OK);
    expect(out.odcid()).toEqual(dcid);
    const other = Buffer.from(CLIENT6);
    other[15] ^= 1;
    expect(open(other)).toBe(RETRY_TOKEN_ERR_INVALID);
    expect(open(Buffer.from(CLIENT4))).toBe(RETRY_TOKEN_ERR_INVALID);
  });
});
