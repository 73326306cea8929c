// The legitimate clients of the flood benchmark: Debian's ngtcp2 client (gtlsclient), one run per
// handshake at a fixed rate from the client namespace's own address, each fetching /bytes/N. Its
// exit code says nothing (0 even on a handshake timeout), so a run is judged by what it printed:
// "QUIC handshake has completed" (a success, when within the deadline) and the downloaded body
// (recorded beside it: under a flood the response may take longer than the handshake). The handshake time is ngtcp2's own clock:
// its log lines start `I<ms since the connection began>`, and the last one before the completion
// line is when the handshake completed (a Retry round trip included), without process start-up.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Fleet } from '../../test/netns/netns.js';
import { sleep } from '../lib/proc.js';

/** Body size each legitimate client downloads (small: the handshake is what is measured). */
export const BODY_SIZE = 1000;

export interface ClientOutcome {
  /** Handshake completed within the deadline. */
  handshake: boolean;
  /** The body arrived whole and right (octet i = i mod 251, the demo's /bytes/N). */
  body: boolean;
  /** Handshake time in ms (ngtcp2's clock), when it completed. */
  handshakeMs: number | null;
  /** The client saw a Retry. */
  retried: boolean;
}

/** Reads one gtlsclient output: whether and when the handshake completed, whether a Retry came. */
export function parseClientOutput(out: string): { handshakeMs: number | null; retried: boolean } {
  const done = out.indexOf('QUIC handshake has completed');
  let handshakeMs: number | null = null;
  if (done >= 0) {
    const stamps = [...out.slice(0, done).matchAll(/^I(\d{8}) /gm)];
    handshakeMs = stamps.length > 0 ? Number(stamps[stamps.length - 1][1]) : 0;
  }
  return { handshakeMs, retried: /type=Retry\b/.test(out) };
}

/** The demo's /bytes/N body check. */
export function isDemoBody(b: Buffer | undefined, n: number): boolean {
  if (b === undefined || b.length !== n) return false;
  for (let i = 0; i < n; i++) if (b[i] !== i % 251) return false;
  return true;
}

/** Judges one run: a success is a completed handshake within `deadlineMs`; the body is judged too. */
export function judge(out: string, body: Buffer | undefined, deadlineMs: number): ClientOutcome {
  const p = parseClientOutput(out);
  const handshake = p.handshakeMs !== null && p.handshakeMs <= deadlineMs;
  return {
    handshake,
    body: handshake && isDemoBody(body, BODY_SIZE),
    handshakeMs: handshake ? p.handshakeMs : null,
    retried: p.retried,
  };
}

/** One gtlsclient run in the client namespace, killed 2 s after the deadline (time for the request). */
export async function legitClient(fleet: Fleet, dir: string, port: number, deadlineMs: number): Promise<ClientOutcome> {
  const dl = mkdtempSync(path.join(dir, 'dl-'));
  try {
    const hardMs = deadlineMs + 2000;
    const r = await fleet.exec(
      fleet.client,
      [
        'timeout',
        '-s',
        'KILL',
        String(hardMs / 1000),
        'gtlsclient',
        '--exit-on-all-streams-close',
        '--no-quic-dump',
        '--no-http-dump',
        `--handshake-timeout=${deadlineMs}ms`,
        '--timeout=2s',
        `--download=${dl}`,
        fleet.vip,
        String(port),
        `https://${fleet.vip}:${port}/bytes/${BODY_SIZE}`,
      ],
      hardMs + 2000,
    );
    const f = path.join(dl, String(BODY_SIZE));
    return judge(r.stdout + r.stderr, existsSync(f) ? readFileSync(f) : undefined, deadlineMs);
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}

/** Starts a client every 1000/rate ms for `windowMs`, then waits for them all; outcomes in start order. */
export async function legitClients(
  fleet: Fleet,
  dir: string,
  port: number,
  o: { rate: number; windowMs: number; deadlineMs: number },
): Promise<ClientOutcome[]> {
  const n = Math.max(1, Math.round((o.rate * o.windowMs) / 1000));
  const t0 = Date.now();
  const runs: Promise<ClientOutcome>[] = [];
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / o.rate;
    if (due > Date.now()) await sleep(due - Date.now());
    runs.push(legitClient(fleet, dir, port, o.deadlineMs));
  }
  return Promise.all(runs);
}
