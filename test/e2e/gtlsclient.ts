// Runs Debian's ngtcp2 `gtlsclient` (a QUIC client nobody on this project wrote) and reads
// what it printed. Its exit code says nothing (0 even on handshake timeout), so callers assert
// on the lines and on the downloaded file; it always runs under a hard timeout.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface ClientRun {
  output: string;
  /** Directory given to --download. */
  downloadDir: string;
  /** True when the hard timeout killed the client. */
  timedOut: boolean;
  ms: number;
}

export interface ClientOptions {
  host: string;
  port: number;
  /** Request paths, e.g. ['/bytes/200000']. */
  paths: string[];
  extraArgs?: string[];
  /** Hard limit (default 20 s). */
  timeoutMs?: number;
}

/** Runs gtlsclient once and resolves with its combined output. Never rejects on client failure. */
export function runClient(opts: ClientOptions): Promise<ClientRun> {
  const downloadDir = mkdtempSync(path.join(tmpdir(), 'quic-lb-dl-'));
  const authority = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const uris = opts.paths.map((p) => `https://${authority}:${opts.port}${p}`);
  const args = [
    '--exit-on-all-streams-close',
    '--no-quic-dump',
    '--no-http-dump',
    '--timeout=10s',
    `--download=${downloadDir}`,
    ...(opts.extraArgs ?? []),
    opts.host,
    String(opts.port),
    ...uris,
  ];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('gtlsclient', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 20_000);
    child.on('close', () => {
      clearTimeout(timer);
      const output = Buffer.concat(chunks).toString('latin1');
      writeFileSync(path.join(downloadDir, 'client.log'), output); // kept for post-mortems
      resolve({ output, downloadDir, timedOut, ms: Date.now() - started });
    });
  });
}

/** The sha256 (hex) of a downloaded file, or undefined when it is missing. */
export function downloadedSha256(run: ClientRun, name: string): string | undefined {
  const f = path.join(run.downloadDir, name);
  if (!existsSync(f)) return undefined;
  return createHash('sha256').update(readFileSync(f)).digest('hex');
}

/**
 * Why a download does not match /bytes/N, for assertion messages: size, first differing
 * octet, and the client's close / reset / error lines.
 */
export function explainDownload(run: ClientRun, name: string, size: number): string {
  const f = path.join(run.downloadDir, name);
  const lines = run.output
    .split('\n')
    .filter(
      (l) =>
        /CONNECTION_CLOSE|closed with|SR token|ERR_|drain|idle|timeout/i.test(l) && !l.includes('transport_parameters'),
    );
  if (!existsSync(f)) return `no file; timedOut=${run.timedOut}\n${lines.slice(-15).join('\n')}`;
  const b = readFileSync(f);
  let first = -1;
  for (let i = 0; i < b.length; i++) {
    if (b[i] !== i % 251) {
      first = i;
      break;
    }
  }
  return `size ${b.length}/${size}, first difference at ${first}, timedOut=${run.timedOut}, ${run.ms} ms, client log ${path.join(run.downloadDir, 'client.log')}\n${lines.slice(-15).join('\n')}`;
}

/** sha256 of the body the demo server generates for /bytes/N (octet i = i mod 251). */
export function expectedSha256(size: number): string {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = i % 251;
  return createHash('sha256').update(b).digest('hex');
}

/** Every CID the client saw from the server: handshake SCID, preferred_address CID, NEW_CONNECTION_ID CIDs. */
export function serverCidsSeen(output: string): { scid?: string; preferred?: string; newConnectionIds: string[] } {
  const scid = /cry remote transport_parameters initial_source_connection_id=0x([0-9a-f]+)/.exec(output)?.[1];
  const preferred = /cry remote transport_parameters preferred_address\.cid=0x([0-9a-f]+)/.exec(output)?.[1];
  const newConnectionIds = [
    ...new Set(
      [...output.matchAll(/frm rx \d+ 1RTT NEW_CONNECTION_ID\(0x18\) seq=\d+ cid=0x([0-9a-f]+)/g)].map((m) => m[1]),
    ),
  ];
  return { scid, preferred, newConnectionIds };
}

export const has = (output: string, line: string): boolean => output.includes(line);

/** What gtlsclient logged of a Retry (ngtcp2: `pkt rx ... scid=0x… type=Retry`) and of the server's handshake CIDs. */
export function retryStory(out: string): { retries: string[]; firstDcid?: string; odcid?: string; rscid?: string } {
  return {
    retries: [...out.matchAll(/pkt rx pkn=\d+ dcid=0x[0-9a-f]* scid=0x([0-9a-f]+) version=0x0+1 type=Retry/g)].map(
      (m) => m[1],
    ),
    firstDcid: /pkt tx pkn=\d+ dcid=0x([0-9a-f]+) scid=0x[0-9a-f]+ version=0x0+1 type=Initial/.exec(out)?.[1],
    odcid: /transport_parameters original_destination_connection_id=0x([0-9a-f]+)/.exec(out)?.[1],
    rscid: /transport_parameters retry_source_connection_id=0x([0-9a-f]+)/.exec(out)?.[1],
  };
}
