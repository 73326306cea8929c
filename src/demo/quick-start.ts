// The quick start (`quic-lb demo`): its LB config, the client commands it suggests and the
// one-line story of each backend event it prints (README "quick start", docs/backend.md).
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../backend/index.js';

/**
 * The quick start's LB config (YAML) with fresh random keys: QUIC-LB config 0 (2-octet server
 * IDs, 6-octet nonces), one backend per `backends` entry (backend-1, backend-2, ... with server
 * IDs 0001, 0002, ...), the return port two above the VIP's port, metrics on `metrics`.
 */
export function quickStartConfig(vip: string, backends: string[], metrics: string): string {
  const key = randomBytes(16).toString('hex');
  const fallback = randomBytes(16).toString('hex');
  const lines = [
    'listen:',
    `  - '${vip}'`,
    'quicLb:',
    `  - { configId: 0, serverIdLength: 2, nonceLength: 6, key: '${key}' }`,
    'backends:',
    ...backends.map(
      (b, i) =>
        `  - { name: backend-${i + 1}, address: '${b}', serverIds: { '0': '${(i + 1).toString(16).padStart(4, '0')}' } }`,
    ),
    'health:',
    '  intervalMs: 500',
    `fallback: { key: '${fallback}' }`,
    'returnPath:',
    '  mode: via-lb',
    `  listen: '${vip.replace(/:(\d+)$/, (_m, p: string) => `:${Number(p) + 2}`)}'`,
    'metrics:',
    `  listen: '${metrics}'`,
    'log: { level: warn }',
  ];
  return `${lines.join('\n')}\n`;
}

/** The gtlsclient command line the quick start prints to fetch `path` through `vip`. */
export function clientCommand(vip: Endpoint, path = '/bytes/200000'): string {
  return `gtlsclient --exit-on-all-streams-close --no-quic-dump --no-http-dump --delay-stream=300ms ${vip.address} ${vip.port} https://${vip.address}:${vip.port}${path}`;
}

/** `host:port` of an endpoint as a URL authority (IPv6 in brackets, RFC 3986 §3.2.2). */
function authority(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/**
 * The Chromium command line that fetches `path` through `vip` over HTTP/3 and prints the page
 * (docs/clients.md): QUIC forced on for the VIP's origin (no Alt-Svc discovery over TCP, which
 * the demo does not serve), the certificate accepted by its SPKI pin (`spkiPin`;
 * `--ignore-certificate-errors` does not apply to QUIC), a throwaway profile. Without
 * `--headless --dump-dom` it opens a window instead.
 */
export function chromiumCommand(vip: Endpoint, pin: string, path = '/'): string {
  const origin = authority(vip);
  return [
    'chromium --headless --no-sandbox --enable-quic',
    `--origin-to-force-quic-on=${origin}`,
    `--ignore-certificate-errors-spki-list=${pin}`,
    '--user-data-dir="$(mktemp -d)"',
    `--dump-dom https://${origin}${path}`,
  ].join(' ');
}

/** A line telling a demo server event (DemoServer 'event' record), or undefined for events the quick start does not print. */
export function describeEvent(e: Record<string, unknown>): string | undefined {
  const who = String(e.name ?? '');
  switch (e.event) {
    case 'connection-accepted':
      return `${who}: connection ${e.conn} from ${e.client} via ${e.via}`;
    case 'handshake-complete':
      return `${who}: connection ${e.conn} handshake done in ${Math.round(Number(e.ms))} ms`;
    case 'migrated':
      return `${who}: connection ${e.conn} moved to ${e.via} (client ${e.to}, CID seq ${e.cidSeq})`;
    case 'path-validated':
      return `${who}: connection ${e.conn} path ${e.via} validated`;
    case 'request':
      return `${who}: connection ${e.conn} GET ${e.path}`;
    case 'stream-sent':
      return `${who}: connection ${e.conn} sent ${e.bytes} octets on ${e.via}`;
    case 'closed':
      return `${who}: connection ${e.conn} closed (${e.by})`;
    case 'cids-reissued':
      return `${who}: re-issued CIDs of ${e.connections} connections (${e.reason})`;
    default:
      return undefined;
  }
}
