// `quic-lb route`: "where would this packet go?" with the same decide() the forwarder runs.
import type { CommandModule } from 'yargs';
import { parseIPv4Into, parseIPv6Into, formatEndpoint, parseEndpoint } from '../wire/index.js';
import {
  type BackendState,
  FourTuple,
  REASON_NAMES,
  buildRouterState,
  decide,
  fallbackSlot,
  loadConfigFile,
} from '../lb/index.js';
import { CliError } from './errors.js';

interface RouteArgs {
  config: string;
  packet: string;
  cid: boolean;
  datagram: boolean;
  from: string;
  to?: string;
  down: string[];
  draining: string[];
  json: boolean;
}

/** Short-header first octet used to wrap a bare CID (form 0, fixed bit 1). */
const SHORT_HEADER_FIRST_OCTET = 0x40;
/** RFC 9000 §17.2: a CID is at most 20 octets; any shorter input is taken as a CID unless --datagram. */
const MAX_CID_OCTETS = 20;

export const routeCommand: CommandModule<object, RouteArgs> = {
  command: 'route <packet>',
  describe: 'print where the load balancer would send a datagram (or a CID) and why',
  builder: (y) =>
    y
      .positional('packet', {
        type: 'string',
        demandOption: true,
        describe: 'hex: a CID (1..20 octets) or a whole UDP payload (longer)',
      })
      .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'YAML config file' })
      .option('cid', {
        type: 'boolean',
        default: false,
        describe: 'the hex is a connection ID: route it as a short-header packet (default for 1..20 octets)',
      })
      .option('datagram', {
        type: 'boolean',
        default: false,
        describe: 'the hex is a whole UDP payload, even if 20 octets or shorter',
      })
      .option('from', {
        type: 'string',
        default: '192.0.2.1:50000',
        describe: 'client address:port (feeds the fallback hash)',
      })
      .option('to', {
        type: 'string',
        describe: 'VIP address:port the datagram was sent to (default: the first listen address)',
      })
      .option('down', {
        type: 'string',
        array: true,
        default: [],
        describe: "backends in health state 'down' (default: all up)",
      })
      .option('draining', {
        type: 'string',
        array: true,
        default: [],
        describe: "backends in health state 'draining' (no new flows; CID-routed packets still reach them)",
      })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
      .example('$0 route --config lb.yaml --cid 07c4605e4504cc4f', 'which backend owns this CID?') as never,
  handler: (argv) => {
    const config = loadConfigFile(argv.config);
    const hex = argv.packet.replace(/^0x/i, '').replace(/[\s:]/g, '').toLowerCase();
    if (!/^([0-9a-f]{2})*$/.test(hex)) throw new CliError('packet: expected hex octets', 2);
    const bytes = Buffer.from(hex, 'hex');
    if (argv.cid && argv.datagram) throw new CliError('--cid and --datagram exclude each other', 2);
    const asCid = argv.cid || (!argv.datagram && bytes.length >= 1 && bytes.length <= MAX_CID_OCTETS);
    const datagram = asCid ? Buffer.concat([Buffer.of(SHORT_HEADER_FIRST_OCTET), bytes]) : bytes;
    const from = parseEndpoint(argv.from, true);
    if (!from) throw new CliError(`--from: expected ip:port, got '${argv.from}'`, 2);
    const to =
      argv.to === undefined ? config.listen.find((l) => l.family === from.family) : parseEndpoint(argv.to, true);
    if (!to)
      throw new CliError(
        argv.to === undefined
          ? `no IPv${from.family} VIP in the config; give --to`
          : `--to: expected ip:port, got '${argv.to}'`,
        2,
      );
    if (to.family !== from.family) throw new CliError('--from and --to must be of the same address family', 2);
    const view = new Map<string, BackendState>(config.backends.map((b) => [b.name, 'up']));
    for (const [flag, list, st] of [
      ['--down', argv.down, 'down'],
      ['--draining', argv.draining, 'draining'],
    ] as const) {
      for (const name of list.flatMap((d) => d.split(',')).filter((d) => d !== '')) {
        if (!config.backends.some((b) => b.name === name)) throw new CliError(`${flag}: no backend named '${name}'`, 2);
        view.set(name, st);
      }
    }
    const state = buildRouterState(config, view);
    const t = new FourTuple();
    t.family = from.family;
    if (from.family === 4) {
      parseIPv4Into(from.address, t.client, 0);
      parseIPv4Into(to.address, t.vip, 0);
    } else {
      parseIPv6Into(from.address, t.client, 0);
      parseIPv6Into(to.address, t.vip, 0);
    }
    t.clientPort = from.port;
    t.vipPort = to.port;
    const d = decide(datagram, t, state);
    const backend = d.backend >= 0 ? config.backends[d.backend] : undefined;
    const sidLength = d.configId >= 0 ? (config.quicLb.find((q) => q.configId === d.configId)?.serverIdLength ?? 0) : 0;
    const result = {
      input: asCid ? 'cid' : 'datagram',
      backend: backend?.name ?? null,
      address: backend ? formatEndpoint(backend.address) : null,
      reason: REASON_NAMES[d.reason],
      codepoint: d.codepoint >= 0 ? d.codepoint : null,
      configId: d.configId >= 0 ? d.configId : null,
      serverId: d.configId >= 0 ? Buffer.from(state.serverIdScratch.subarray(0, sidLength)).toString('hex') : null,
      fallbackSlot: d.reason !== 0 && backend ? fallbackSlot(t, state) : null,
      from: formatEndpoint(from),
      to: formatEndpoint(to),
    };
    if (argv.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    process.stdout.write(
      `input: ${result.input} (${bytes.length} octets)\n` +
        `backend: ${result.backend ?? '(dropped)'}${result.address ? ` ${result.address}` : ''}\n` +
        `reason: ${result.reason}\n` +
        (result.configId !== null ? `config id: ${result.configId}, server id: ${result.serverId}\n` : '') +
        (result.fallbackSlot !== null
          ? `fallback: 4-tuple ${result.from} -> ${result.to}, Maglev slot ${result.fallbackSlot}\n`
          : ''),
    );
  },
};
