// A one-client "Retry LB" relay for the demo server's Retry tests: it answers a token-less
// Initial with a Retry the way the LB does and relays everything else.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { encodeRetry, initialTokenOf, QUIC_V1, sealRetryToken, type RetryTokenKeys } from '../../src/wire/index.js';
import { parseInitial } from '../hostile/payloads.js';

/** The octets of a dotted-quad IPv4 literal. */
export const ipv4 = (a: string): Uint8Array => Uint8Array.from(a.split('.').map(Number));

export interface RetryRelay {
  /** Retries sent, datagrams relayed each way. */
  stats: { retries: number; toServer: number; toClient: number };
  /** The Retry SCIDs (hex) and the ODCIDs they stood for. */
  issued: Array<{ rscid: string; odcid: string }>;
  close(): void;
}

/**
 * A one-client stand-in for an LB doing Retry offload: the client talks to `listen`; a token-less
 * Initial is answered with a Retry (token sealed with `keys` for the address the server sees,
 * the relay's `upstream` socket; SCID random, 12 octets), everything else is relayed to
 * `server` from `upstream`, and the server's datagrams back to the client.
 */
export async function startRetryRelay(o: {
  listen: { address: string; port: number };
  upstream: { address: string; port: number };
  server: { address: string; port: number };
  keys: RetryTokenKeys;
  lifetimeSeconds?: number;
}): Promise<RetryRelay> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  await Promise.all([
    new Promise<void>((r) => front.bind(o.listen.port, o.listen.address, () => r())),
    new Promise<void>((r) => back.bind(o.upstream.port, o.upstream.address, () => r())),
  ]);
  const stats = { retries: 0, toServer: 0, toClient: 0 };
  const issued: RetryRelay['issued'] = [];
  const at = { tokenOffset: 0, tokenLength: 0 };
  let client: dgram.RemoteInfo | undefined;
  front.on('message', (m, r) => {
    client = r;
    if (initialTokenOf(m, at) && at.tokenLength === 0) {
      const { dcid, scid } = parseInitial(m);
      const rscid = randomBytes(12);
      const token = sealRetryToken(o.keys, {
        clientIp: ipv4(o.upstream.address),
        clientPort: o.upstream.port,
        odcid: dcid,
        rscid,
        expiresAt: Math.floor(Date.now() / 1000) + (o.lifetimeSeconds ?? 10),
      });
      issued.push({ rscid: rscid.toString('hex'), odcid: dcid.toString('hex') });
      stats.retries++;
      front.send(encodeRetry({ version: QUIC_V1, dcid: scid, scid: rscid, token, odcid: dcid }), r.port, r.address);
      return;
    }
    stats.toServer++;
    back.send(m, o.server.port, o.server.address);
  });
  back.on('message', (m) => {
    if (!client) return;
    stats.toClient++;
    front.send(m, client.port, client.address);
  });
  return {
    stats,
    issued,
    close() {
      front.close();
      back.close();
    },
  };
}
