// `quic-lb check-config FILE`: validate a config with the same code `serve` uses.
import type { CommandModule } from 'yargs';
import { ConfigError, loadConfigFile } from '../lb/index.js';
import { QUIC_V1, QUIC_V2, formatEndpoint } from '../wire/index.js';
import { CliError } from './errors.js';

interface CheckArgs {
  file: string;
  json: boolean;
}

export const checkConfigCommand: CommandModule<object, CheckArgs> = {
  command: 'check-config <file>',
  describe: 'validate a load balancer config file (exit 0 if valid, 1 with the field and reason if not)',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'YAML config file' })
      .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' }) as never,
  handler: (argv) => {
    try {
      const warnings: string[] = [];
      const c = loadConfigFile(argv.file, warnings);
      for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
      if (argv.json) {
        process.stdout.write(`${JSON.stringify({ ok: true, config: redact(c) })}\n`);
        return;
      }
      const algos = c.quicLb.map(
        (q) => `${q.configId}:${q.key ? 'encrypted' : 'plaintext'}(sid ${q.serverIdLength}, nonce ${q.nonceLength})`,
      );
      process.stdout.write(
        `ok: ${argv.file}\n` +
          `  VIPs: ${c.listen.map(formatEndpoint).join(', ')}\n` +
          `  QUIC-LB configs: ${algos.join(', ') || 'none (every packet uses the fallback)'}\n` +
          `  backends: ${c.backends.map((b) => `${b.name}=${formatEndpoint(b.address)} w${b.weight} ${b.health.type}`).join(', ')}\n` +
          `  return path: ${c.returnPath.mode}${c.returnPath.listen ? ` on ${formatEndpoint(c.returnPath.listen)}` : ''}${c.returnPath.hmacKeys.length > 0 ? ` (HMAC, ${c.returnPath.hmacKeys.length} key(s))` : ''}\n` +
          `  workers: ${c.workers}, metrics: ${c.metrics.listen ? formatEndpoint(c.metrics.listen) : 'off'}\n` +
          (c.anycast ? `  anycast: ${anycastLine(c.anycast)}\n` : '') +
          (c.retry ? `  retry: ${retryLine(c.retry)}\n` : '') +
          (c.datapath ? `  datapath: ${datapathLine(c.datapath)}\n` : ''),
      );
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      if (argv.json) {
        process.stdout.write(
          `${JSON.stringify({ ok: false, code: err.code, field: err.field, reason: err.reason })}\n`,
        );
        process.exitCode = 1;
        return;
      }
      throw new CliError(`${argv.file}: ${err.code} at ${err.field || '(file)'}: ${err.reason}`, 1);
    }
  },
};

/** The config without key material. */
function redact(c: ReturnType<typeof loadConfigFile>): unknown {
  return {
    ...c,
    quicLb: c.quicLb.map((q) => ({ ...q, key: q.key ? '(set)' : undefined })),
    fallback: { ...c.fallback, key: '(set)' },
    returnPath: { ...c.returnPath, hmacKeys: c.returnPath.hmacKeys.map(() => '(set)') },
    retry: c.retry && {
      ...c.retry,
      keys: c.retry.keys.map((k) => ({ sequence: k.sequence, key: '(set)', iv: '(set)' })),
    },
  };
}

/** The data path in one line: node, or xdp on its interface with the attach mode and the fallback. */
function datapathLine(d: NonNullable<ReturnType<typeof loadConfigFile>['datapath']>): string {
  if (d.mode === 'node') return 'node (node:dgram)';
  const unavailable = d.unavailable === 'stop' ? 'refuse to start' : 'node:dgram alone';
  return `xdp on ${d.interface} (attach ${d.attach}; when unavailable: ${unavailable})`;
}

/** The Retry offload section in one line: mode, keys (the first seals), lifetime, versions, load thresholds. */
function retryLine(r: NonNullable<ReturnType<typeof loadConfigFile>['retry']>): string {
  const version = (v: number): string => (v === QUIC_V1 ? 'v1' : v === QUIC_V2 ? 'v2' : `0x${v.toString(16)}`);
  const l = r.load;
  return (
    `${r.mode}, ${r.keys.length} key(s) (sequence ${r.keys[0]?.sequence ?? '-'} seals), token lifetime ` +
    `${r.tokenLifetimeSeconds} s, versions ${r.versions.map(version).join(', ')}` +
    (r.mode === 'load' ? `, on above ${l.onPerSecond}/s, off under ${l.offPerSecond}/s for ${l.offAfterMs} ms` : '')
  );
}

/** The server-mode section in one line: forwarding, sample period and hysteresis, each limit on. */
function anycastLine(a: NonNullable<ReturnType<typeof loadConfigFile>['anycast']>): string {
  const n = a.announce;
  const limits = [
    n.maxConnections > 0 ? `connections ${n.maxConnections}/${n.resumeConnections}` : '',
    n.maxEventLoopDelayMs > 0 ? `event-loop delay ${n.maxEventLoopDelayMs}/${n.resumeEventLoopDelayMs} ms` : '',
    n.maxCpu > 0 ? `cpu ${n.maxCpu}/${n.resumeCpu}` : '',
  ].filter((x) => x !== '');
  return (
    `forward ${a.forward ? 'on' : 'off'}, sample every ${n.intervalMs} ms, withdraw after ${n.withdrawAfter}, announce after ${n.announceAfter}, ` +
    `limits (max/resume): ${limits.join(', ') || 'none'}`
  );
}
