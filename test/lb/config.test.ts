// Config validation: every error code with the field it names, defaults, key files, the
// JSON schema kept in step with the validator, and `quic-lb check-config`.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  CONFIG_ERROR_CODES,
  ConfigError,
  DEFAULTS,
  anycastOf,
  datapathOf,
  KNOWN_FIELDS,
  keyFileModeWarning,
  keyFileWarning,
  loadConfigFile,
  loadQuicLbSpecs,
  parseConfig,
  startLoadBalancer,
  validateConfig,
} from '../../src/lb/index.js';
import {
  AES_KEY_LENGTH,
  MAX_CONFIG_ID,
  MAX_NONCE_LENGTH,
  MAX_SERVER_ID_LENGTH,
  MIN_CONFIG_ID,
  MIN_NONCE_LENGTH,
  MIN_SERVER_ID_LENGTH,
} from '../../src/cid/index.js';
import { pino } from 'pino';
import { formatRetryTokenKey, generateRetryTokenKey } from '../../src/wire/index.js';
import { repoRoot, runCli } from '../helpers/cli.js';
import { QUIC_LB_SPECS, configDoc } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
function mutate(fn: (d: Doc) => void): Record<string, unknown> {
  const d = structuredClone(configDoc()) as Doc;
  fn(d);
  return d;
}

function errorOf(doc: unknown): ConfigError {
  try {
    validateConfig(doc, dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const cases: { desc: string; doc: unknown; code: string; field: string }[] = [
  { desc: 'not a mapping', doc: [1, 2], code: 'ERR_CONFIG_TYPE', field: '' },
  { desc: 'missing listen', doc: mutate((d) => delete d.listen), code: 'ERR_CONFIG_REQUIRED', field: '/listen' },
  { desc: 'empty listen', doc: mutate((d) => (d.listen = [])), code: 'ERR_CONFIG_REQUIRED', field: '/listen' },
  {
    desc: 'host name instead of IP',
    doc: mutate((d) => (d.listen = ['localhost:443'])),
    code: 'ERR_CONFIG_ADDRESS',
    field: '/listen/0',
  },
  {
    desc: 'bare IPv6 without brackets',
    doc: mutate((d) => (d.listen = ['::1:443'])),
    code: 'ERR_CONFIG_ADDRESS',
    field: '/listen/0',
  },
  {
    desc: 'port out of range',
    doc: mutate((d) => (d.backends[1].address = '127.0.0.1:70000')),
    code: 'ERR_CONFIG_ADDRESS',
    field: '/backends/1/address',
  },
  {
    desc: 'duplicate listen',
    doc: mutate((d) => (d.listen = ['127.0.0.1:1', '127.0.0.1:1'])),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/listen/1',
  },
  {
    desc: 'unknown top-level field (typo)',
    doc: mutate((d) => (d.backend = [])),
    code: 'ERR_CONFIG_UNKNOWN_FIELD',
    field: '/backend',
  },
  {
    desc: 'unknown backend field',
    doc: mutate((d) => (d.backends[2].wieght = 3)),
    code: 'ERR_CONFIG_UNKNOWN_FIELD',
    field: '/backends/2/wieght',
  },
  {
    desc: 'config id 7 (0b111 is reserved)',
    doc: mutate((d) => (d.quicLb[0].configId = 7)),
    code: 'ERR_CONFIG_RANGE',
    field: '/quicLb/0/configId',
  },
  {
    desc: 'config id given twice',
    doc: mutate((d) => (d.quicLb[1].configId = 0)),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/quicLb/1/configId',
  },
  {
    desc: 'nonce too short',
    doc: mutate((d) => (d.quicLb[0].nonceLength = 3)),
    code: 'ERR_CONFIG_RANGE',
    field: '/quicLb/0/nonceLength',
  },
  {
    desc: 'sid + nonce > 19 (library check)',
    doc: mutate((d) => (d.quicLb[3].nonceLength = 10)),
    code: 'ERR_CONFIG_QUIC_LB',
    field: '/quicLb/3/nonceLength',
  },
  {
    desc: 'key with 15 octets',
    doc: mutate((d) => (d.quicLb[1].key = '00'.repeat(15))),
    code: 'ERR_CONFIG_HEX',
    field: '/quicLb/1/key',
  },
  {
    desc: 'key not hex',
    doc: mutate((d) => (d.quicLb[1].key = 'zz'.repeat(16))),
    code: 'ERR_CONFIG_HEX',
    field: '/quicLb/1/key',
  },
  {
    desc: 'key and keyFile',
    doc: mutate((d) => (d.quicLb[1].keyFile = 'k.hex')),
    code: 'ERR_CONFIG_KEY_SOURCE',
    field: '/quicLb/1/keyFile',
  },
  {
    desc: 'missing key file',
    doc: mutate((d) => (d.fallback = { keyFile: 'nope.hex' })),
    code: 'ERR_CONFIG_READ',
    field: '/fallback/keyFile',
  },
  {
    desc: 'bad cipher',
    doc: mutate((d) => (d.quicLb[1].cipher = 'aesni')),
    code: 'ERR_CONFIG_ENUM',
    field: '/quicLb/1/cipher',
  },
  { desc: 'no backends', doc: mutate((d) => (d.backends = [])), code: 'ERR_CONFIG_REQUIRED', field: '/backends' },
  {
    desc: 'backend without name',
    doc: mutate((d) => delete d.backends[0].name),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/backends/0/name',
  },
  {
    desc: 'bad backend name',
    doc: mutate((d) => (d.backends[0].name = 'a b')),
    code: 'ERR_CONFIG_TYPE',
    field: '/backends/0/name',
  },
  {
    desc: 'duplicate backend name',
    doc: mutate((d) => (d.backends[1].name = 'a')),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/backends/1/name',
  },
  {
    desc: 'duplicate backend address',
    doc: mutate((d) => (d.backends[1].address = d.backends[0].address)),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/backends/1/address',
  },
  {
    desc: 'server ID of the wrong length',
    doc: mutate((d) => (d.backends[0].serverIds['0'] = ['000001'])),
    code: 'ERR_CONFIG_HEX',
    field: '/backends/0/serverIds/0/0',
  },
  {
    desc: 'server ID used twice',
    doc: mutate((d) => (d.backends[1].serverIds['0'] = '0001')),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/backends/1/serverIds/0',
  },
  {
    desc: 'server ID for a config id not configured',
    doc: mutate((d) => (d.backends[0].serverIds['5'] = '01')),
    code: 'ERR_CONFIG_REFERENCE',
    field: '/backends/0/serverIds/5',
  },
  {
    desc: 'server IDs keyed by a non-codepoint',
    doc: mutate((d) => (d.backends[0].serverIds['9'] = '01')),
    code: 'ERR_CONFIG_UNKNOWN_FIELD',
    field: '/backends/0/serverIds/9',
  },
  {
    desc: 'weight negative',
    doc: mutate((d) => (d.backends[0].weight = -1)),
    code: 'ERR_CONFIG_RANGE',
    field: '/backends/0/weight',
  },
  {
    desc: 'weight not an integer',
    doc: mutate((d) => (d.backends[0].weight = 1.5)),
    code: 'ERR_CONFIG_RANGE',
    field: '/backends/0/weight',
  },
  {
    desc: 'weight as string',
    doc: mutate((d) => (d.backends[0].weight = '2')),
    code: 'ERR_CONFIG_TYPE',
    field: '/backends/0/weight',
  },
  {
    desc: 'unknown health type',
    doc: mutate((d) => (d.backends[0].health = { type: 'icmp' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/backends/0/health/type',
  },
  {
    desc: 'http health without url',
    doc: mutate((d) => (d.backends[0].health = { type: 'http' })),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/backends/0/health/url',
  },
  {
    desc: 'https health url',
    doc: mutate((d) => (d.backends[0].health = { type: 'http', url: 'https://x/' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/backends/0/health/url',
  },
  { desc: 'rise 0', doc: mutate((d) => (d.health = { rise: 0 })), code: 'ERR_CONFIG_RANGE', field: '/health/rise' },
  { desc: 'missing fallback', doc: mutate((d) => delete d.fallback), code: 'ERR_CONFIG_REQUIRED', field: '/fallback' },
  {
    desc: 'missing fallback key',
    doc: mutate((d) => (d.fallback = {})),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/fallback/key',
  },
  {
    desc: 'table size not prime',
    doc: mutate((d) => (d.fallback.tableSize = 65536)),
    code: 'ERR_CONFIG_PRIME',
    field: '/fallback/tableSize',
  },
  {
    desc: 'via-lb without a return port',
    doc: mutate((d) => (d.returnPath = { mode: 'via-lb' })),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/returnPath/listen',
  },
  {
    desc: 'return mode typo',
    doc: mutate((d) => (d.returnPath = { mode: 'dsr' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/returnPath/mode',
  },
  {
    desc: 'hmac key too short',
    doc: mutate((d) => (d.returnPath.hmacKey = '00'.repeat(8))),
    code: 'ERR_CONFIG_HEX',
    field: '/returnPath/hmacKey',
  },
  {
    desc: 'signForward without a key',
    doc: mutate((d) => (d.returnPath.signForward = true)),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/returnPath/hmacKey',
  },
  {
    desc: 'allow entry not an IP',
    doc: mutate((d) => (d.returnPath.allow = ['backend-a'])),
    code: 'ERR_CONFIG_ADDRESS',
    field: '/returnPath/allow/0',
  },
  {
    desc: 'wildcard VIP 0.0.0.0',
    doc: mutate((d) => (d.listen = ['127.0.1.1:443', '0.0.0.0:443'])),
    code: 'ERR_CONFIG_WILDCARD',
    field: '/listen/1',
  },
  {
    desc: 'wildcard VIP ::',
    doc: mutate((d) => (d.listen = ['[::]:443'])),
    code: 'ERR_CONFIG_WILDCARD',
    field: '/listen/0',
  },
  {
    desc: 'wildcard VIP written [0:0::0]',
    doc: mutate((d) => (d.listen = ['[0:0::0]:443'])),
    code: 'ERR_CONFIG_WILDCARD',
    field: '/listen/0',
  },
  {
    desc: 'wildcard VIP ::ffff:0.0.0.0',
    doc: mutate((d) => (d.listen = ['[::ffff:0.0.0.0]:443'])),
    code: 'ERR_CONFIG_WILDCARD',
    field: '/listen/0',
  },
  {
    desc: 'VIP in 0.0.0.0/8',
    doc: mutate((d) => (d.listen = ['0.1.2.3:443'])),
    code: 'ERR_CONFIG_WILDCARD',
    field: '/listen/0',
  },
  {
    desc: 'hmacKey and hmacKeys',
    doc: mutate((d) => Object.assign(d.returnPath, { hmacKey: '11'.repeat(32), hmacKeys: ['22'.repeat(32)] })),
    code: 'ERR_CONFIG_KEY_SOURCE',
    field: '/returnPath/hmacKeys',
  },
  {
    desc: 'hmacKeys and hmacKeyFiles',
    doc: mutate((d) => Object.assign(d.returnPath, { hmacKeys: ['22'.repeat(32)], hmacKeyFiles: ['k.hex'] })),
    code: 'ERR_CONFIG_KEY_SOURCE',
    field: '/returnPath/hmacKeyFiles',
  },
  {
    desc: 'hmacKeys empty',
    doc: mutate((d) => (d.returnPath.hmacKeys = [])),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/returnPath/hmacKeys',
  },
  {
    desc: 'hmacKeys not a list',
    doc: mutate((d) => (d.returnPath.hmacKeys = '22'.repeat(32))),
    code: 'ERR_CONFIG_TYPE',
    field: '/returnPath/hmacKeys',
  },
  {
    desc: 'five hmacKeys',
    doc: mutate((d) => (d.returnPath.hmacKeys = [1, 2, 3, 4, 5].map((i) => String(i * 11).repeat(32)))),
    code: 'ERR_CONFIG_RANGE',
    field: '/returnPath/hmacKeys',
  },
  {
    desc: 'second hmacKey too short',
    doc: mutate((d) => (d.returnPath.hmacKeys = ['11'.repeat(32), '22'.repeat(8)])),
    code: 'ERR_CONFIG_HEX',
    field: '/returnPath/hmacKeys/1',
  },
  {
    desc: 'the same key twice',
    doc: mutate((d) => (d.returnPath.hmacKeys = ['11'.repeat(32), '11'.repeat(32)])),
    code: 'ERR_CONFIG_DUPLICATE',
    field: '/returnPath/hmacKeys/1',
  },
  {
    desc: 'missing hmacKeyFiles entry',
    doc: mutate((d) => (d.returnPath.hmacKeyFiles = ['nope.hex'])),
    code: 'ERR_CONFIG_READ',
    field: '/returnPath/hmacKeyFiles/0',
  },
  {
    desc: 'maxQueuedDatagrams 0',
    doc: mutate((d) => (d.socket = { maxQueuedDatagrams: 0 })),
    code: 'ERR_CONFIG_RANGE',
    field: '/socket/maxQueuedDatagrams',
  },
  {
    desc: 'maxQueuedOctets below one datagram',
    doc: mutate((d) => (d.socket = { maxQueuedOctets: 1500 })),
    code: 'ERR_CONFIG_RANGE',
    field: '/socket/maxQueuedOctets',
  },
  { desc: 'workers out of range', doc: mutate((d) => (d.workers = 65)), code: 'ERR_CONFIG_RANGE', field: '/workers' },
  {
    desc: 'log level typo',
    doc: mutate((d) => (d.log = { level: 'verbose' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/log/level',
  },
  {
    desc: 'anycast resume level above its limit',
    doc: mutate((d) => (d.anycast = { announce: { maxCpu: 1, resumeCpu: 1.5 } })),
    code: 'ERR_CONFIG_VALUE',
    field: '/anycast/announce/resumeCpu',
  },
  {
    desc: 'anycast resumeConnections above maxConnections',
    doc: mutate((d) => (d.anycast = { announce: { maxConnections: 10, resumeConnections: 11 } })),
    code: 'ERR_CONFIG_VALUE',
    field: '/anycast/announce/resumeConnections',
  },
  {
    desc: 'anycast without returnPath.mode direct',
    doc: mutate((d) => {
      d.returnPath = { mode: 'via-lb', listen: '127.0.1.1:20005' };
      d.anycast = {};
    }),
    code: 'ERR_CONFIG_VALUE',
    field: '/returnPath/mode',
  },
  {
    desc: 'datapath xdp without an interface',
    doc: mutate((d) => (d.datapath = { mode: 'xdp' })),
    code: 'ERR_CONFIG_REQUIRED',
    field: '/datapath/interface',
  },
  {
    desc: 'datapath interface name with a slash',
    doc: mutate((d) => (d.datapath = { mode: 'xdp', interface: '../eth0' })),
    code: 'ERR_CONFIG_VALUE',
    field: '/datapath/interface',
  },
  {
    desc: 'datapath interface name of 16 octets',
    doc: mutate((d) => (d.datapath = { mode: 'xdp', interface: 'e'.repeat(16) })),
    code: 'ERR_CONFIG_VALUE',
    field: '/datapath/interface',
  },
  {
    desc: 'datapath mode unknown',
    doc: mutate((d) => (d.datapath = { mode: 'dpdk', interface: 'eth0' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/datapath/mode',
  },
  {
    desc: 'datapath attach unknown',
    doc: mutate((d) => (d.datapath = { mode: 'xdp', interface: 'eth0', attach: 'offload' })),
    code: 'ERR_CONFIG_ENUM',
    field: '/datapath/attach',
  },
  {
    desc: 'datapath xdp with 2 workers',
    doc: mutate((d) => {
      d.datapath = { mode: 'xdp', interface: 'eth0' };
      d.workers = 2;
    }),
    code: 'ERR_CONFIG_VALUE',
    field: '/workers',
  },
  {
    desc: 'datapath field typo',
    doc: mutate((d) => (d.datapath = { mode: 'xdp', iface: 'eth0' })),
    code: 'ERR_CONFIG_UNKNOWN_FIELD',
    field: '/datapath/iface',
  },
  {
    desc: 'anycast.forward not a boolean',
    doc: mutate((d) => (d.anycast = { forward: 'yes' })),
    code: 'ERR_CONFIG_TYPE',
    field: '/anycast/forward',
  },
  {
    desc: 'anycast.announce field typo',
    doc: mutate((d) => (d.anycast = { announce: { maxConnection: 5 } })),
    code: 'ERR_CONFIG_UNKNOWN_FIELD',
    field: '/anycast/announce/maxConnection',
  },
  {
    desc: 'anycast.announce.withdrawAfter 0',
    doc: mutate((d) => (d.anycast = { announce: { withdrawAfter: 0 } })),
    code: 'ERR_CONFIG_RANGE',
    field: '/anycast/announce/withdrawAfter',
  },
  {
    desc: 'anycast.announce.maxCpu negative',
    doc: mutate((d) => (d.anycast = { announce: { maxCpu: -1 } })),
    code: 'ERR_CONFIG_RANGE',
    field: '/anycast/announce/maxCpu',
  },
];

describe('validateConfig', () => {
  for (const c of cases) {
    it(`${c.desc} -> ${c.code} at '${c.field}'`, () => {
      const e = errorOf(c.doc);
      expect(e.code).toBe(c.code);
      expect(e.field).toBe(c.field);
      expect(e.reason.length).toBeGreaterThan(0);
    });
  }

  it('every error code is exercised by a case or the parse/read tests below', () => {
    const used = new Set([...cases.map((c) => c.code), 'ERR_CONFIG_SYNTAX', 'ERR_CONFIG_READ']);
    for (const code of CONFIG_ERROR_CODES) expect(used.has(code), code).toBe(true);
  });

  it('fills the defaults', () => {
    const c = validateConfig(configDoc({ returnPath: { listen: '127.0.1.1:20005' } }));
    expect(c.workers).toBe(DEFAULTS.workers);
    expect(c.drainMs).toBe(DEFAULTS.drainMs);
    expect(c.fallback.tableSize).toBe(65537);
    expect(c.socket).toEqual({
      recvBufferSize: 8388608,
      sendBufferSize: 8388608,
      maxQueuedDatagrams: 1024,
      maxQueuedOctets: 2 * 1024 * 1024,
      reusePort: false,
    });
    expect(c.returnPath.hmacKeys).toEqual([]);
    expect(c.returnPath.mode).toBe('via-lb');
    expect(c.returnPath.allow).toEqual(['127.0.1.10', '127.0.1.11', '127.0.1.12', '127.0.1.13']);
    expect(c.backends[0].weight).toBe(1);
    // The LB decrypts attacker-chosen CIDs: constant-time AES unless the config says otherwise.
    expect(c.quicLb[1].cipher).toBe('node');
    expect(c.backends[0].health.downGraceMs).toBe(DEFAULTS.downGraceMs);
    const table = QUIC_LB_SPECS.map((q, i) => (i === 1 ? { ...q, cipher: 'table' } : q));
    expect(validateConfig(configDoc({ quicLb: table })).quicLb[1].cipher).toBe('table');
  });

  it('datapath: absent and null sections resolve to node; xdp keeps its interface', () => {
    expect(validateConfig(configDoc()).datapath).toBeUndefined();
    const node = { mode: 'node', attach: 'auto', unavailable: 'fallback' };
    expect(datapathOf(validateConfig(configDoc()))).toEqual(node);
    expect(datapathOf(validateConfig(configDoc({ datapath: null })))).toEqual(node);
    expect(validateConfig(configDoc({ datapath: { mode: 'xdp', interface: 'eth0.10' } })).datapath).toEqual({
      mode: 'xdp',
      interface: 'eth0.10',
      attach: 'auto',
      unavailable: 'fallback',
    });
    const stop = { mode: 'xdp', interface: 'veth-lb', attach: 'generic', unavailable: 'stop' };
    expect(validateConfig(configDoc({ datapath: stop })).datapath).toEqual(stop);
  });

  it('anycast: absent, null and partial sections resolve to the documented defaults', () => {
    expect(validateConfig(configDoc()).anycast).toBeUndefined();
    expect(anycastOf(validateConfig(configDoc()))).toEqual(anycastOf(validateConfig(configDoc({ anycast: null }))));
    const off = validateConfig(configDoc({ anycast: {} })).anycast;
    expect(off).toEqual({
      forward: true,
      announce: {
        intervalMs: 1000,
        withdrawAfter: 2,
        announceAfter: 3,
        maxConnections: 0,
        resumeConnections: 0,
        maxEventLoopDelayMs: 0,
        resumeEventLoopDelayMs: 0,
        maxCpu: 0,
        resumeCpu: 0,
      },
    });
    const c = parseConfig(
      [
        'listen: ["127.0.1.1:20001"]',
        'backends: [{ name: a, address: "127.0.1.10:20010" }]',
        'fallback: { key: "000102030405060708090a0b0c0d0e0f" }',
        'returnPath: { mode: direct }',
        'anycast:',
        '  forward: false',
        '  announce: { maxConnections: 99, resumeConnections: ~, maxEventLoopDelayMs: 50, maxCpu: 0.9, resumeCpu: 0.5 }',
      ].join('\n'),
    ).anycast;
    expect(c?.forward).toBe(false);
    expect(c?.announce).toMatchObject({
      maxConnections: 99,
      resumeConnections: 79, // floor(0.8 * 99)
      maxEventLoopDelayMs: 50,
      resumeEventLoopDelayMs: 25,
      maxCpu: 0.9,
      resumeCpu: 0.5,
    });
  });

  it('resolves key files relative to the config file and accepts IPv6', () => {
    writeFileSync(path.join(dir, 'fallback.hex'), 'ff'.repeat(16) + '\n');
    const file = path.join(dir, 'v6.yaml');
    const doc = configDoc({ fallback: { keyFile: 'fallback.hex' }, listen: ['[::1]:20001', '127.0.1.1:20001'] });
    writeFileSync(file, stringify(doc));
    const c = loadConfigFile(file);
    expect(c.fallback.key).toBe('ff'.repeat(16));
    expect(c.listen[0]).toEqual({ address: '::1', port: 20001, family: 6 });
  });

  it('hmacKey, hmacKeyFile, hmacKeys and hmacKeyFiles all give returnPath.hmacKeys, the current key first', () => {
    const [k1, k2] = ['a1'.repeat(32), 'b2'.repeat(16)];
    writeFileSync(path.join(dir, 'k1.hex'), `${k1}\n`, { mode: 0o600 });
    writeFileSync(path.join(dir, 'k2.hex'), k2.toUpperCase(), { mode: 0o600 });
    const rp = (returnPath: object): string[] =>
      validateConfig(configDoc({ returnPath: { mode: 'direct', ...returnPath } }), dir).returnPath.hmacKeys;
    expect(rp({ hmacKey: k1 })).toEqual([k1]);
    expect(rp({ hmacKeyFile: 'k1.hex' })).toEqual([k1]);
    expect(rp({ hmacKeys: [k2, k1] })).toEqual([k2, k1]);
    expect(rp({ hmacKeyFiles: ['k1.hex', 'k2.hex'] })).toEqual([k1, k2]);
    expect(
      validateConfig(configDoc({ returnPath: { mode: 'direct', hmacKeys: [k2, k1], signForward: true } }), dir)
        .returnPath.signForward,
    ).toBe(true);
  });

  it('warns (does not fail) when a key file is readable or writable by group or others, naming file and mode', () => {
    expect(keyFileModeWarning('/k', 0o100600)).toBeUndefined();
    expect(keyFileModeWarning('/k', 0o100400)).toBeUndefined();
    expect(keyFileModeWarning('/k', 0o100640)).toBe(
      'key file /k has mode 0640: readable or writable by group or others (chmod 600 it)',
    );
    expect(keyFileModeWarning('/k', 0o100604)).toContain('mode 0604');
    expect(keyFileModeWarning('/k', 0o100620)).toContain('mode 0620');
    // keyFileWarning: the same rule on the file as it is on disk (a missing file is reported by reading it).
    const f = path.join(dir, 'reset.hex');
    writeFileSync(f, '00'.repeat(32));
    chmodSync(f, 0o640);
    expect(keyFileWarning(f)).toBe(
      `key file ${f} has mode 0640: readable or writable by group or others (chmod 600 it)`,
    );
    chmodSync(f, 0o400);
    expect(keyFileWarning(f)).toBeUndefined();
    expect(keyFileWarning(path.join(dir, 'missing'))).toBeUndefined();
    const open = path.join(dir, 'open.hex');
    const closed = path.join(dir, 'closed.hex');
    writeFileSync(open, 'cc'.repeat(32));
    chmodSync(open, 0o644);
    writeFileSync(closed, 'dd'.repeat(16));
    chmodSync(closed, 0o600);
    const file = path.join(dir, 'modes.yaml');
    writeFileSync(
      file,
      stringify(
        configDoc({
          fallback: { keyFile: 'closed.hex' },
          returnPath: { mode: 'direct', hmacKeyFiles: ['closed.hex', 'open.hex'] },
        }),
      ),
    );
    const warnings: string[] = [];
    const c = loadConfigFile(file, warnings);
    expect(c.returnPath.hmacKeys).toEqual(['dd'.repeat(16), 'cc'.repeat(32)]);
    expect(warnings).toEqual([
      `key file ${open} has mode 0644: readable or writable by group or others (chmod 600 it)`,
    ]);
    const r = runCli(['check-config', file]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`warning: key file ${open} has mode 0644`);
    expect(r.stderr).not.toContain(closed);
  });

  it('serve logs the key file warning at start and at every reload', async () => {
    const open = path.join(dir, 'serve-open.hex');
    writeFileSync(open, 'ee'.repeat(32));
    chmodSync(open, 0o640);
    const file = path.join(dir, 'serve-modes.yaml');
    writeFileSync(
      file,
      stringify({ ...configDoc({ listen: ['127.0.9.9:0'], returnPath: { mode: 'direct', hmacKeyFiles: [open] } }) }),
    );
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
    const lb = await startLoadBalancer(file, { logger, watch: false });
    try {
      const warned = (): number => lines.filter((l) => l.includes(`key file ${open} has mode 0640`)).length;
      expect(warned()).toBe(1);
      expect((await lb.reload()).ok).toBe(true);
      expect(warned()).toBe(2);
    } finally {
      await lb.close();
    }
  });

  it('YAML syntax errors and duplicate keys are ERR_CONFIG_SYNTAX', () => {
    for (const text of ['listen: [\n', 'a: 1\na: 2\n']) {
      try {
        parseConfig(text);
        throw new Error('no error');
      } catch (err) {
        expect((err as ConfigError).code).toBe('ERR_CONFIG_SYNTAX');
      }
    }
  });
});

describe('quicLb ranges are the library limits (draft-21 §3.1, §5.3)', () => {
  const codeAt = (patch: Record<string, unknown>): string | undefined => {
    try {
      const doc = mutate((d) => {
        d.quicLb = [{ configId: 0, serverIdLength: 1, nonceLength: 4, ...patch }];
        for (const b of d.backends) delete b.serverIds;
      });
      validateConfig(doc, dir);
      return undefined;
    } catch (err) {
      return `${(err as ConfigError).code} ${(err as ConfigError).field}`;
    }
  };
  it('accepts each bound and refuses one past it', () => {
    expect(codeAt({ configId: MIN_CONFIG_ID })).toBeUndefined();
    expect(codeAt({ configId: MIN_CONFIG_ID - 1 })).toBe('ERR_CONFIG_RANGE /quicLb/0/configId');
    expect(codeAt({ configId: MAX_CONFIG_ID + 1 })).toBe('ERR_CONFIG_RANGE /quicLb/0/configId');
    expect(codeAt({ serverIdLength: MAX_SERVER_ID_LENGTH, nonceLength: MIN_NONCE_LENGTH })).toBeUndefined();
    expect(codeAt({ serverIdLength: MIN_SERVER_ID_LENGTH - 1 })).toBe('ERR_CONFIG_RANGE /quicLb/0/serverIdLength');
    expect(codeAt({ serverIdLength: MAX_SERVER_ID_LENGTH + 1 })).toBe('ERR_CONFIG_RANGE /quicLb/0/serverIdLength');
    expect(codeAt({ serverIdLength: MIN_SERVER_ID_LENGTH, nonceLength: MAX_NONCE_LENGTH })).toBeUndefined();
    expect(codeAt({ nonceLength: MAX_NONCE_LENGTH + 1 })).toBe('ERR_CONFIG_RANGE /quicLb/0/nonceLength');
    expect(codeAt({ key: 'ab'.repeat(AES_KEY_LENGTH) })).toBeUndefined();
    expect(codeAt({ key: 'ab'.repeat(AES_KEY_LENGTH + 1) })).toBe('ERR_CONFIG_HEX /quicLb/0/key');
    expect(codeAt({ key: 11 })).toBe('ERR_CONFIG_TYPE /quicLb/0/key');
  });
  it('a backend may list server IDs under every config id and no other', () => {
    const withSid = (id: number) => () =>
      validateConfig(
        mutate((d) => {
          d.quicLb = [{ configId: id, serverIdLength: 2, nonceLength: 6 }];
          d.backends[0].serverIds = { [String(id)]: ['0102'] };
          for (const b of d.backends.slice(1)) delete b.serverIds;
        }),
        dir,
      );
    for (let id = MIN_CONFIG_ID; id <= MAX_CONFIG_ID; id++)
      expect(withSid(id)().backends[0].serverIds).toEqual([{ configId: id, serverId: '0102' }]);
    expect(withSid(MAX_CONFIG_ID + 1)).toThrow(ConfigError);
  });
  it('the schema states the same ranges', () => {
    const schema = JSON.parse(readFileSync(path.join(repoRoot, 'schema', 'config.schema.json'), 'utf8'));
    const q = schema.properties.quicLb.items.properties;
    expect([q.configId.minimum, q.configId.maximum]).toEqual([MIN_CONFIG_ID, MAX_CONFIG_ID]);
    expect([q.serverIdLength.minimum, q.serverIdLength.maximum]).toEqual([MIN_SERVER_ID_LENGTH, MAX_SERVER_ID_LENGTH]);
    expect([q.nonceLength.minimum, q.nonceLength.maximum]).toEqual([MIN_NONCE_LENGTH, MAX_NONCE_LENGTH]);
  });
});

describe('loadQuicLbSpecs (the quicLb list alone, for quic-lb cid --config)', () => {
  const KEY = '8f95f09245765f80256934e50c66207f';
  const fileOf = (name: string, text: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const errorAt = (file: string): string => {
    try {
      loadQuicLbSpecs(file);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return `${(err as ConfigError).code} ${(err as ConfigError).field}`;
    }
    throw new Error('expected a ConfigError');
  };
  it('gives the specs validateConfig gives, without needing the other sections; keyFile relative to the file', () => {
    writeFileSync(path.join(dir, 'q1.hex'), `${KEY.toUpperCase()}\n`, { mode: 0o600 });
    const file = fileOf(
      'q.yaml',
      `quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, key: ${KEY} }\n  - { configId: 1, serverIdLength: 10, nonceLength: 5, keyFile: q1.hex, cipher: table }\n`,
    );
    expect(loadQuicLbSpecs(file)).toEqual([
      { configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY, cipher: DEFAULTS.cipher },
      { configId: 1, serverIdLength: 10, nonceLength: 5, key: KEY, cipher: 'table' },
    ]);
    const full = path.join(dir, 'full.yaml');
    writeFileSync(full, stringify(configDoc()));
    expect(loadQuicLbSpecs(full)).toEqual(loadConfigFile(full).quicLb);
  });
  it('reads a mapping without quicLb as one entry', () => {
    expect(loadQuicLbSpecs(fileOf('one.yaml', 'configId: 2\nserverIdLength: 3\nnonceLength: 4\n'))).toEqual([
      { configId: 2, serverIdLength: 3, nonceLength: 4, cipher: DEFAULTS.cipher },
    ]);
    expect(errorAt(fileOf('one-bad.yaml', 'configId: 7\nserverIdLength: 3\nnonceLength: 4\n'))).toBe(
      'ERR_CONFIG_RANGE /configId',
    );
  });
  it('refuses what loadConfigFile refuses in quicLb, with the same code and field', () => {
    expect(errorAt(path.join(dir, 'absent.yaml'))).toBe('ERR_CONFIG_READ ');
    expect(errorAt(fileOf('syntax.yaml', 'quicLb: [\n'))).toBe('ERR_CONFIG_SYNTAX ');
    expect(errorAt(fileOf('list.yaml', '- 1\n'))).toBe('ERR_CONFIG_TYPE ');
    expect(
      errorAt(
        fileOf('short-key.yaml', "quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, key: '0011' }\n"),
      ),
    ).toBe('ERR_CONFIG_HEX /quicLb/0/key');
    writeFileSync(path.join(dir, 'short.hex'), '0011\n', { mode: 0o600 });
    expect(
      errorAt(
        fileOf(
          'short-file.yaml',
          'quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, keyFile: short.hex }\n',
        ),
      ),
    ).toBe('ERR_CONFIG_HEX /quicLb/0/keyFile');
    expect(errorAt(fileOf('sum.yaml', 'quicLb:\n  - { configId: 0, serverIdLength: 10, nonceLength: 10 }\n'))).toBe(
      'ERR_CONFIG_QUIC_LB /quicLb/0/nonceLength',
    );
    expect(
      errorAt(
        fileOf(
          'dup.yaml',
          'quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4 }\n  - { configId: 0, serverIdLength: 3, nonceLength: 4 }\n',
        ),
      ),
    ).toBe('ERR_CONFIG_DUPLICATE /quicLb/1/configId');
    expect(errorAt(fileOf('typo.yaml', 'quicLb: []\nbakends: []\n'))).toBe('ERR_CONFIG_UNKNOWN_FIELD /bakends');
  });
});

describe('schema/config.schema.json', () => {
  const schema = JSON.parse(readFileSync(path.join(repoRoot, 'schema', 'config.schema.json'), 'utf8'));
  const props = (o: { properties: Record<string, unknown> }): string[] => Object.keys(o.properties).sort();
  it('names exactly the fields the validator knows', () => {
    const p = schema.properties;
    expect(props(schema)).toEqual([...KNOWN_FIELDS.root].sort());
    expect(props(p.quicLb.items)).toEqual([...KNOWN_FIELDS.quicLb].sort());
    expect(props(p.backends.items)).toEqual([...KNOWN_FIELDS.backend].sort());
    expect(props(p.backends.items.properties.health)).toEqual([...KNOWN_FIELDS.backendHealth].sort());
    expect(props(p.health)).toEqual([...KNOWN_FIELDS.health].sort());
    expect(props(p.fallback)).toEqual([...KNOWN_FIELDS.fallback].sort());
    expect(props(p.returnPath)).toEqual([...KNOWN_FIELDS.returnPath].sort());
    expect(props(p.metrics)).toEqual([...KNOWN_FIELDS.metrics].sort());
    expect(props(p.socket)).toEqual([...KNOWN_FIELDS.socket].sort());
    expect(props(p.log)).toEqual([...KNOWN_FIELDS.log].sort());
    expect(props(p.anycast)).toEqual([...KNOWN_FIELDS.anycast].sort());
    expect(props(p.anycast.properties.announce)).toEqual([...KNOWN_FIELDS.announce].sort());
  });
  it('docs/config.md documents every field and every error code', () => {
    const doc = readFileSync(path.join(repoRoot, 'docs', 'config.md'), 'utf8');
    for (const code of CONFIG_ERROR_CODES) expect(doc, code).toContain(`\`${code}\``);
    // Fields appear as code spans, alone or inside a dotted path (`quicLb[].keyFile`).
    for (const list of Object.values(KNOWN_FIELDS))
      for (const f of list) expect(doc, f).toMatch(new RegExp(`\`[^\`\\s]*\\b${f}\\b[^\`\\s]*\``));
  });
});

describe('quic-lb check-config', () => {
  it('exit 0 and a summary for a valid file', () => {
    const file = path.join(dir, 'ok.yaml');
    writeFileSync(file, stringify(configDoc()));
    const r = runCli(['check-config', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('ok:');
    expect(r.stdout).toContain('1:encrypted(sid 8, nonce 8)');
    expect(r.stdout).not.toContain('anycast');
  });
  it('summarises the datapath section', () => {
    const file = path.join(dir, 'datapath.yaml');
    writeFileSync(file, stringify(configDoc({ datapath: { mode: 'xdp', interface: 'ens5', unavailable: 'stop' } })));
    const r = runCli(['check-config', file]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('  datapath: xdp on ens5 (attach auto; when unavailable: refuse to start)\n');
    writeFileSync(file, stringify(configDoc({ datapath: null })));
    expect(runCli(['check-config', file]).stdout).toContain('  datapath: node (node:dgram)\n');
  });
  it('accepts and summarises the anycast section', () => {
    const file = path.join(dir, 'anycast.yaml');
    writeFileSync(
      file,
      stringify(configDoc({ anycast: { forward: false, announce: { maxConnections: 100, maxCpu: 0.9 } } })),
    );
    const r = runCli(['check-config', file]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      '  anycast: forward off, sample every 1000 ms, withdraw after 2, announce after 3, limits (max/resume): connections 100/80, cpu 0.9/0.72\n',
    );
  });
  it('summarises the retry section; --json never prints the Retry key or IV', () => {
    const key = generateRetryTokenKey(4);
    const keyFile = path.join(dir, 'retry-4.key');
    writeFileSync(keyFile, formatRetryTokenKey(key), { mode: 0o600 });
    const file = path.join(dir, 'retry.yaml');
    writeFileSync(file, stringify(configDoc({ retry: { mode: 'load', keyFiles: [keyFile] } })));
    const r = runCli(['check-config', file]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^ {2}retry: load, 1 key\(s\) \(sequence 4 seals\), token lifetime \d+ s, versions v1, v2, on above \d+\/s, off under \d+\/s for \d+ ms$/m,
    );
    const j = runCli(['check-config', file, '--json']);
    expect(j.status, j.stderr).toBe(0);
    const keyHex = Buffer.from(key.key).toString('hex');
    const ivHex = Buffer.from(key.iv).toString('hex');
    expect(j.stdout).not.toContain(keyHex);
    expect(j.stdout).not.toContain(ivHex);
    expect(JSON.parse(j.stdout).config.retry.keys).toEqual([{ sequence: 4, key: '(set)', iv: '(set)' }]);
  });
  it('exit 1 with code, field and reason for an invalid file', () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, stringify(mutate((d) => (d.backends[0].weight = 1001))));
    const r = runCli(['check-config', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_CONFIG_RANGE at /backends/0/weight');
    const j = runCli(['check-config', file, '--json']);
    expect(j.status).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, code: 'ERR_CONFIG_RANGE', field: '/backends/0/weight' });
  });
  it('serve refuses an invalid file at start: exit 2 with code and field', () => {
    const file = path.join(dir, 'bad-serve.yaml');
    writeFileSync(file, stringify(mutate((d) => (d.backends = []))));
    const r = runCli(['serve', '--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('ERR_CONFIG_REQUIRED: /backends');
  });
  it('exit 1 for an unreadable file', () => {
    const r = runCli(['check-config', path.join(dir, 'missing.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_CONFIG_READ');
  });
});
