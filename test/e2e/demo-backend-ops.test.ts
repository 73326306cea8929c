// `quic-lb demo backend` operations flags, on real sockets with a real backend process:
// --reset-key-file (stateless reset tokens from a mounted key file; --reset-key is gone; a key
// file others can read is warned about), --reply-to (LB-path replies to the config's return port
// or back to the forwarding LB), --allow-lb (encapsulated datagrams and probes from other
// sources dropped), signForward + SIGHUP (HMAC keys re-read), --insecure-any-lb, SIGUSR2 (drain:
// health probes answer "draining").
// Plain UDP sockets play the LB, its return port and the client. Addresses 127.0.2.110-119,
// ports 25930-25959.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { configYaml, readEvents, type StackSpec } from './stack.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { sleep, waitFor } from '../helpers/wait.js';
import {
  encodeHealthProbe,
  encodeProxyHeader,
  formatProxyAddress,
  HealthProbeKind,
  parseHealthProbe,
  parseProxyHeader,
  ProxyDirection,
  ProxyHeader,
} from '../../src/wire/index.js';
import { createConfig, encodeConnectionId, statelessResetToken } from '../../src/cid/index.js';

const QUIC_LB_KEY = '00112233445566778899aabbccddeeff';
const RESET_KEY = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
const VIP = { address: '127.0.2.110', port: 25930 }; // return port: 25931 (configYaml: VIP port + 1)
const CLIENT = { address: '198.51.100.7', port: 5555 };
const spec = (backendAddress: string, port: number): StackSpec => ({
  vip: VIP,
  metricsPort: 25932,
  quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: QUIC_LB_KEY }],
  backends: [{ name: 'a', address: backendAddress, port, serverIds: { 0: '0001' } }],
});
const qlb = createConfig({ configId: 0, serverIdLength: 2, nonceLength: 6, key: Buffer.from(QUIC_LB_KEY, 'hex') });

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-demo-ops-'));
const configFile = path.join(dir, 'lb.yaml');
writeFileSync(configFile, configYaml(spec('127.0.2.111', 25935), randomBytes(16).toString('hex')));
// The same stack with the return port on the wildcard address: only the forwarding LB is a known destination.
const wildcardFile = path.join(dir, 'lb-wildcard.yaml');
writeFileSync(
  wildcardFile,
  configYaml(spec('127.0.2.114', 25945), randomBytes(16).toString('hex')).replace(
    `listen: '${VIP.address}:${VIP.port + 1}'`,
    `listen: '0.0.0.0:${VIP.port + 1}'`,
  ),
);
const keyFile = path.join(dir, 'reset.key');
writeFileSync(keyFile, `${RESET_KEY}\n`, { mode: 0o600 });
// The same key in a file its group can read: the backend warns about it.
const groupKeyFile = path.join(dir, 'reset-group.key');
writeFileSync(groupKeyFile, `${RESET_KEY}\n`);
chmodSync(groupKeyFile, 0o640);

interface Sock {
  s: dgram.Socket;
  got: Buffer[];
}
async function udp(address: string, port = 0): Promise<Sock> {
  const s = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  await new Promise<void>((r) => s.bind(port, address, () => r()));
  return { s, got };
}
const send = (from: Sock, msg: Uint8Array, to: { address: string; port: number }): void =>
  from.s.send(msg, to.port, to.address);

/** A short-header datagram for a well-formed CID of backend 0001 that no connection owns: the backend answers with a stateless reset. */
function unknownCidPacket(): { cid: Uint8Array; pkt: Buffer } {
  const cid = encodeConnectionId(qlb, Uint8Array.of(0, 1), randomBytes(6));
  return { cid, pkt: Buffer.concat([Buffer.of(0x40), Buffer.from(cid), randomBytes(60)]) };
}
const encapsulate = (pkt: Buffer): Buffer =>
  Buffer.concat([
    encodeProxyHeader({ srcAddr: CLIENT.address, srcPort: CLIENT.port, dstAddr: VIP.address, dstPort: VIP.port }),
    pkt,
  ]);
const tokenOf = (reset: Buffer): string => reset.subarray(reset.length - 16).toString('hex');
const expectedToken = (cid: Uint8Array): string =>
  Buffer.from(statelessResetToken(Buffer.from(RESET_KEY, 'hex'), cid)).toString('hex');

describe('quic-lb demo backend: --reset-key-file, --reply-to, --allow-lb, SIGUSR2', () => {
  let lb1: Sock; // an allowed LB
  let lb2: Sock; // a source not in --allow-lb
  let returnPort: Sock; // the LB config's returnPath.listen
  const procs: Proc[] = [];

  beforeAll(async () => {
    lb1 = await udp('127.0.2.112');
    lb2 = await udp('127.0.2.113');
    returnPort = await udp(VIP.address, VIP.port + 1);
  });
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => stop(p)));
    for (const s of [lb1, lb2, returnPort]) s.got.length = 0;
  });
  afterAll(() => {
    for (const s of [lb1, lb2, returnPort]) s.s.close();
  });

  it('LB-path replies go to the return port (the anycast VIP in a stack), with the VIP -> client header; tokens come from --reset-key-file; --allow-lb drops other senders; SIGUSR2 drains', async () => {
    const log = path.join(dir, 'a.jsonl');
    const p = await startCli([
      'demo',
      'backend',
      '--config',
      configFile,
      '--name',
      'a',
      '--reset-key-file',
      groupKeyFile,
      '--allow-lb',
      '127.0.2.112',
      '--event-log',
      log,
    ]);
    procs.push(p);
    expect(p.ready.replyTo).toBe(`${VIP.address}:${VIP.port + 1}`);
    expect(p.output()).toContain(
      `quic-lb demo backend: warning: key file ${groupKeyFile} has mode 0640: readable or writable by group or others (chmod 600 it)`,
    );
    const backend = { address: '127.0.2.111', port: 25935 };

    // Through the LB: the reset leaves for the return port, not for the LB that forwarded it.
    const a = unknownCidPacket();
    send(lb1, encapsulate(a.pkt), backend);
    await waitFor('a reply at the return port', () => returnPort.got.length === 1, 3000);
    const h = new ProxyHeader();
    const hl = parseProxyHeader(returnPort.got[0], h);
    expect(hl).toBeGreaterThan(0);
    expect([formatProxyAddress(h, 'src'), h.srcPort]).toEqual([VIP.address, VIP.port]);
    expect([formatProxyAddress(h, 'dst'), h.dstPort]).toEqual([CLIENT.address, CLIENT.port]);
    const reset = returnPort.got[0].subarray(hl);
    expect(reset[0] & 0xc0).toBe(0x40);
    expect(reset.length).toBeLessThan(a.pkt.length);
    expect(tokenOf(reset)).toBe(expectedToken(a.cid)); // HMAC(key from the file, CID)
    expect(lb1.got.length).toBe(0);

    // Direct (a client on the backend's own address): answered to the sender, same key.
    const b = unknownCidPacket();
    send(lb1, b.pkt, backend);
    await waitFor('a direct reply', () => lb1.got.length === 1, 3000);
    expect(tokenOf(lb1.got[0])).toBe(expectedToken(b.cid));

    // A sender outside --allow-lb: dropped (nothing anywhere), while the allowed LB still gets through.
    send(lb2, encapsulate(unknownCidPacket().pkt), backend);
    await sleep(300);
    expect(returnPort.got.length).toBe(1);
    expect(lb2.got.length).toBe(0);

    // Health probes: only the allowed LB is answered (no reflector); up, then draining after SIGUSR2.
    const probe = (): Uint8Array => encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8));
    lb1.got.length = 0;
    send(lb2, probe(), backend);
    send(lb1, probe(), backend);
    await waitFor('a probe answer', () => lb1.got.length === 1, 3000);
    expect(parseHealthProbe(lb1.got[0])).toBe(HealthProbeKind.UP);
    await sleep(100);
    expect(lb2.got.length).toBe(0);
    process.kill(p.pid, 'SIGUSR2');
    await waitFor(
      'probes answered "draining"',
      async () => {
        lb1.got.length = 0;
        send(lb1, probe(), backend);
        await sleep(50);
        return lb1.got.length === 1 && parseHealthProbe(lb1.got[0]) === HealthProbeKind.DRAINING;
      },
      5000,
    );
    expect(readEvents(log).some((e) => e.event === 'draining')).toBe(true);
    expect(p.output()).toContain('draining');
    // Still serving while draining: LB-path datagrams are answered as before.
    const c = unknownCidPacket();
    send(lb1, encapsulate(c.pkt), backend);
    await waitFor('a reply while draining', () => returnPort.got.length === 2, 3000);
    expect(tokenOf(returnPort.got[1])).toBe(expectedToken(c.cid));
    expect(p.child.exitCode).toBeNull();
  });

  it('--reply-to lb, and auto with a return port or a listen address on 0.0.0.0: replies go back to the LB that forwarded the datagram', async () => {
    const cases: { args: string[]; backend: { address: string; port: number } }[] = [
      {
        args: ['--config', configFile, '--listen', '127.0.2.115:25946', '--reply-to', 'lb'],
        backend: { address: '127.0.2.115', port: 25946 },
      },
      { args: ['--config', wildcardFile], backend: { address: '127.0.2.114', port: 25945 } },
      // A backend on 0.0.0.0 (as in Kubernetes): its source address is whatever the kernel picks.
      { args: ['--config', configFile, '--listen', '0.0.0.0:25947'], backend: { address: '127.0.2.117', port: 25947 } },
    ];
    for (const k of cases) {
      const p = await startCli([
        'demo',
        'backend',
        '--name',
        'a',
        '--reset-key-file',
        keyFile,
        '--allow-lb',
        '127.0.2.112',
        ...k.args,
      ]);
      procs.push(p);
      expect(p.ready.replyTo).toBe('lb');
      lb1.got.length = 0;
      const a = unknownCidPacket();
      send(lb1, encapsulate(a.pkt), k.backend);
      await waitFor(`a reply at the forwarding LB (${k.args.join(' ')})`, () => lb1.got.length === 1, 3000);
      const h = new ProxyHeader();
      const hl = parseProxyHeader(lb1.got[0], h);
      expect([formatProxyAddress(h, 'dst'), h.dstPort]).toEqual([CLIENT.address, CLIENT.port]);
      expect(tokenOf(lb1.got[0].subarray(hl))).toBe(expectedToken(a.cid));
      expect(p.output()).not.toContain('warning'); // an owner-only key file: no mode warning
      expect(returnPort.got.length).toBe(0);
      await stop(p);
    }
  });

  it('signForward: no --allow-lb needed; SIGHUP re-reads the HMAC key (replies signed with the new one); a bad reload keeps the running key and says CODE at /field', async () => {
    const k1 = randomBytes(32).toString('hex');
    const k2 = randomBytes(32).toString('hex');
    const file = path.join(dir, 'lb-signed.yaml');
    const base = configYaml(spec('127.0.2.118', 25955), randomBytes(16).toString('hex'));
    const withKey = (key: string): string =>
      base.replace('  mode: via-lb\n', `  mode: via-lb\n  hmacKey: '${key}'\n  signForward: true\n`);
    writeFileSync(file, withKey(k1));
    const p = await startCli(['demo', 'backend', '--config', file, '--name', 'a', '--reset-key-file', groupKeyFile]);
    procs.push(p);
    const backend = { address: '127.0.2.118', port: 25955 };
    const modeWarnings = (): number => p.output().split(`warning: key file ${groupKeyFile} has mode 0640`).length - 1;
    expect(modeWarnings()).toBe(1); // once at start
    const signed = (key: string, pkt: Buffer): Buffer =>
      Buffer.concat([
        encodeProxyHeader(
          {
            srcAddr: CLIENT.address,
            srcPort: CLIENT.port,
            dstAddr: VIP.address,
            dstPort: VIP.port,
            hmacKey: Buffer.from(key, 'hex'),
            direction: ProxyDirection.TO_BACKEND,
          },
          pkt,
        ),
        pkt,
      ]);
    /** Sends one datagram signed with `key` from lb2 (no address check here) and returns the reply at the return port, if any. */
    const exchange = async (key: string): Promise<Buffer | undefined> => {
      returnPort.got.length = 0;
      send(lb2, signed(key, unknownCidPacket().pkt), backend);
      await sleep(300);
      return returnPort.got[0];
    };
    const verifies = (reply: Buffer | undefined, key: string): boolean =>
      reply !== undefined && parseProxyHeader(reply, new ProxyHeader(), Buffer.from(key, 'hex')) > 0;
    expect(verifies(await exchange(k1), k1)).toBe(true);
    expect(await exchange(randomBytes(32).toString('hex'))).toBeUndefined(); // a forged signature: dropped
    writeFileSync(file, withKey(k2));
    process.kill(p.pid, 'SIGHUP');
    await waitFor('the reload', () => p.output().includes('config reloaded'), 3000);
    expect(p.output()).toContain('1 return-path keys');
    const r2 = await exchange(k2);
    expect(modeWarnings()).toBe(2); // and once per reload
    expect(verifies(r2, k2)).toBe(true);
    expect(verifies(r2, k1)).toBe(false);
    // A broken file: the running key stays, the error names code and field.
    writeFileSync(file, withKey(k2).replace(`hmacKey: '${k2}'`, "hmacKey: 'zz'"));
    process.kill(p.pid, 'SIGHUP');
    await waitFor('the failed reload', () => p.output().includes('reload failed'), 3000);
    expect(p.output()).toMatch(
      /quic-lb demo backend: reload failed, keeping the running config and keys: ERR_CONFIG_HEX at \/returnPath\/hmacKey: /,
    );
    expect(verifies(await exchange(k2), k2)).toBe(true);
    expect(p.child.exitCode).toBeNull();
    expect(readFileSync(file, 'utf8')).toContain("hmacKey: 'zz'");
  });

  it('--insecure-any-lb: starts with a warning and takes encapsulated datagrams from anyone', async () => {
    const p = await startCli([
      'demo',
      'backend',
      '--config',
      configFile,
      '--name',
      'a',
      '--listen',
      '127.0.2.119:25956',
      '--reply-to',
      'lb',
      '--insecure-any-lb',
    ]);
    procs.push(p);
    expect(p.output()).toMatch(
      /quic-lb demo backend: warning: insecureAnyLb: encapsulated datagrams are accepted from any source/,
    );
    send(lb2, encapsulate(unknownCidPacket().pkt), { address: '127.0.2.119', port: 25956 });
    await waitFor('a reply to the unauthenticated sender', () => lb2.got.length === 1, 3000);
  });

  it('bad flags: one line naming the flag, exit code 2', () => {
    const short = path.join(dir, 'short.key');
    writeFileSync(short, '00112233\n');
    const bad = path.join(dir, 'bad.key');
    writeFileSync(bad, 'not hex at all\n');
    const cases: [string[], RegExp][] = [
      // An inline secret is refused (visible in ps), pointing at the file flag.
      [
        ['--reset-key', RESET_KEY, '--allow-lb', '127.0.2.112'],
        /^quic-lb: --reset-key: removed \(a key on the command line is visible to every local user\); .* --reset-key-file FILE\n$/,
      ],
      // Nothing authenticates the LB: the error says what to add.
      [
        [],
        /^quic-lb: nothing authenticates the load balancers.*add --allow-lb .*returnPath\.hmacKey and returnPath\.signForward: true.*--insecure-any-lb \(tests only\)\n$/,
      ],
      [['--reset-key-file', path.join(dir, 'missing.key')], /--reset-key-file: cannot read/],
      [['--reset-key-file', short], /--reset-key-file: expected at least 16 octets, got 4/],
      [['--reset-key-file', bad], /--reset-key-file: expected an even number of hex digits/],
      [['--allow-lb', '127.0.2.112,lb.example'], /--allow-lb: expected IP literals, got 'lb.example'/],
      [
        ['--config', wildcardFile, '--reply-to', 'return-port'],
        /--reply-to return-port: returnPath.listen '0\.0\.0\.0:25931' is not a specific address/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = runCli([
        'demo',
        'backend',
        ...(args.includes('--config') ? [] : ['--config', configFile]),
        '--name',
        'a',
        '--listen',
        '127.0.2.116:25950',
        ...args,
      ]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toContain('    at ');
    }
  });
});
