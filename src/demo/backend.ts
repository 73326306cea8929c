// One demo backend from an LB config: a QUIC-LB encoder holding every config the backend has a
// server ID for, a BackendSocket with the config's return path, and a DemoServer on it; plus
// the config reload (SIGHUP) and drain (SIGUSR2) the `quic-lb demo backend` command wires up
// (docs/backend.md).
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { isIP, isIPv6 } from 'node:net';
import {
  BackendSocket,
  createBackendCids,
  loadRetryTokenKeys,
  RetryTokenValidator,
  type Endpoint,
} from '../backend/index.js';
import type { RetryTokenKeys } from '../wire/index.js';
import {
  configFromSpec,
  decodeServerId,
  QuicLbEncoder,
  type CipherName,
  type EncoderConfigEntry,
} from '../cid/index.js';
import { loadIdentity, type ServerIdentity } from './cert.js';
import { DemoBackendError } from './errors.js';
import { DemoServer } from './server.js';

/**
 * The part of an LB config (`LbConfig` of quic-lb-ts/lb, docs/config.md) a demo backend reads;
 * an `LbConfig` is one. src/demo does not import src/lb: the LB and its backends share the file,
 * not the code.
 */
export interface DemoBackendConfig {
  /** The LB's listen addresses; the first is the VIP replies come from in `direct` mode. */
  readonly listen: readonly Endpoint[];
  readonly quicLb: ReadonlyArray<{
    configId: number;
    serverIdLength: number;
    nonceLength: number;
    key?: string;
    cipher?: CipherName;
  }>;
  readonly backends: ReadonlyArray<{
    name: string;
    address: Endpoint;
    serverIds: ReadonlyArray<{ configId: number; serverId: string }>;
  }>;
  readonly returnPath: {
    mode: 'via-lb' | 'direct';
    listen?: Endpoint;
    hmacKeys: readonly string[];
    signForward: boolean;
  };
  /** The LBs' Retry offload (docs/retry.md), when the file has a `retry` section: its token key files. */
  readonly retry?: { readonly keyFiles: readonly string[] };
}

export const REPLY_TO = ['auto', 'return-port', 'lb'] as const;
export type ReplyTo = (typeof REPLY_TO)[number];

export interface DemoBackendOptions {
  /** Backend name in the LB config. */
  name: string;
  /** Override the address to listen on (default: the backend's `address` in the config). */
  listen?: Endpoint;
  /** preferred_address to advertise (default: the listen address); null: none. */
  preferred?: Endpoint | null;
  /** QUIC-LB config id to mint with (default: the last config in the file this backend has a server ID for). */
  configId?: number;
  eventLog?: string;
  staticDir?: string;
  resetKey?: Uint8Array;
  /**
   * Where replies to clients that came through an LB go (docs/backend.md "Return traffic"):
   * 'return-port' = the LB config's `returnPath.listen` (on the anycast VIP in a fleet: the
   * router picks a live LB), 'lb' = the LB socket that forwarded the client's datagram,
   * 'auto' (default) = 'return-port' when `returnPath.listen` names a specific address of the
   * listen address's family and a fixed port and the backend listens on a specific address (the
   * source the LB's `returnPath.allow` knows), else 'lb'. Ignored in `direct` mode.
   */
  replyTo?: ReplyTo;
  /** LB source addresses allowed to deliver encapsulated datagrams and probes (BackendSocket `allowLbAddresses`). */
  allowLb?: string[];
  /** Accept encapsulated datagrams from any source without HMAC (BackendSocket `insecureAnyLb`; warns). */
  insecureAnyLb?: boolean;
  /** Warnings (insecureAnyLb at bind). */
  onWarning?: (message: string) => void;
  /** PEM certificate chain and ECDSA P-256 key files (both, or neither). */
  certFile?: string;
  keyFile?: string;
  /** The TLS identity (wins over certFile/keyFile); default: those files, else a fresh self-signed one. */
  identity?: ServerIdentity;
  onEvent?: (e: Record<string, unknown>) => void;
  /**
   * Retry token key files shared with the LBs doing Retry offload (one key line each, any order:
   * every key opens); default: the config's `retry.keyFiles`. New connections whose Initial
   * carries an LB token are created only if it opens (docs/backend.md "Retry offload"). Re-read
   * by `applyConfig`.
   */
  retryKeyFiles?: readonly string[];
  /**
   * A bound socket to run on instead of making one (server mode: the anycast server's
   * BackendSocket, whose first address is the server's own `address`). Its return path, keys
   * and allow list are its owner's: `listen`, `replyTo`, `allowLb`, `insecureAnyLb` are not
   * used, `applyConfig` does not swap its keys and `close()` leaves it open.
   */
  socket?: BackendSocket;
}

export interface RunningBackend {
  server: DemoServer;
  socket: BackendSocket;
  encoder: QuicLbEncoder;
  addresses: Endpoint[];
  /** Where LB-path replies go: the return port, or undefined = back to the forwarding LB (or from the VIP in direct mode). */
  replyTo: Endpoint | undefined;
  /** Opens the LBs' Retry tokens (when there are key files); its `stats` count tokens by result. */
  readonly retryTokens: RetryTokenValidator | undefined;
  /** Health probes answer "draining" from now on (the LB stops picking this backend for new connections); existing connections go on. */
  drain(): void;
  /**
   * Applies a new LB config: swaps in its return-path HMAC keys (when it has any) and its Retry
   * token keys (re-reading `retryKeyFiles`, else its `retry.keyFiles`; none: tokens ignored from
   * now on), adds its QUIC-LB configs and, if the active one changed, re-issues CIDs. Throws
   * (DemoBackendError, BackendError) before changing anything when the config does not fit.
   */
  applyConfig(
    config: DemoBackendConfig,
    configId?: number,
  ): { activeConfigId: number | undefined; reissued: number; hmacKeys: number; retryKeys: number };
  close(): Promise<void>;
}

/** The encoder entries of backend `name`: every QUIC-LB config it has a server ID for, file order. Throws ERR_DEMO_UNKNOWN_BACKEND. */
function encoderEntries(config: DemoBackendConfig, name: string): EncoderConfigEntry[] {
  const b = config.backends.find((x) => x.name === name);
  if (!b)
    throw new DemoBackendError(
      'ERR_DEMO_UNKNOWN_BACKEND',
      `no backend '${name}' in the config (have: ${config.backends.map((x) => x.name).join(', ')})`,
      'name',
    );
  const entries: EncoderConfigEntry[] = [];
  for (const spec of config.quicLb) {
    const sid = b.serverIds.find((s) => s.configId === spec.configId);
    if (!sid) continue;
    entries.push({ config: configFromSpec(spec), serverId: Buffer.from(sid.serverId, 'hex') });
  }
  return entries;
}

/** What makes a config entry different for the encoder: lengths, key, cipher, server ID. */
function entrySignature(e: EncoderConfigEntry): string {
  const c = e.config;
  const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '-');
  return `${c.serverIdLength}/${c.nonceLength}/${hex(c.key)}/${c.cipher ?? '-'}/${hex(e.serverId)}`;
}

/** The return-path HMAC keys of an LB config (`returnPath.hmacKeys`), current (signing) key first. */
function returnKeysOf(config: DemoBackendConfig): Uint8Array[] {
  return config.returnPath.hmacKeys.map((k) => Buffer.from(k, 'hex'));
}

/**
 * Starts one demo backend for backend `opts.name` of an LB config. Throws DemoBackendError
 * (options that do not fit the config), BackendError (socket options, e.g.
 * ERR_BACKEND_LB_UNAUTHENTICATED when nothing authenticates the LBs) or a bind error.
 */
export async function startDemoBackend(config: DemoBackendConfig, opts: DemoBackendOptions): Promise<RunningBackend> {
  const entries = encoderEntries(config, opts.name);
  const spec = config.backends.find((x) => x.name === opts.name)!;
  if (entries.length === 0)
    throw new DemoBackendError(
      'ERR_DEMO_NO_SERVER_IDS',
      `backend '${opts.name}' has no serverIds for any /quicLb config: it could only mint unroutable CIDs`,
    );
  const activeId = opts.configId ?? entries[entries.length - 1].config.configId;
  if (!entries.some((e) => e.config.configId === activeId)) {
    throw new DemoBackendError(
      'ERR_DEMO_NO_SERVER_ID_FOR_CONFIG',
      `backend '${opts.name}' has no server ID for config ${activeId}`,
      'configId',
    );
  }
  const encoder = new QuicLbEncoder({ configs: entries, activeConfigId: activeId });
  const signatures = new Map(entries.map((e) => [e.config.configId, entrySignature(e)]));
  // Every config this backend has minted under (configs that left the file stay: their CIDs live on).
  const owned = new Map(entries.map((e) => [e.config.configId, e]));
  const ownsCid = (cid: Uint8Array): boolean =>
    [...owned.values()].some((e) => {
      const sid = decodeServerId(e.config, cid);
      return sid !== undefined && Buffer.from(sid).equals(e.serverId);
    });
  const cids = createBackendCids(encoder, opts.resetKey ?? randomBytes(32));
  const given = opts.socket;
  const listen = given?.addresses()[0] ?? opts.listen ?? { address: spec.address.address, port: spec.address.port };
  const preferred = opts.preferred === undefined ? listen : opts.preferred;
  const rp = config.returnPath;
  const replyTo = rp.mode === 'direct' || given ? undefined : returnPortFor(rp.listen, listen, opts.replyTo ?? 'auto');
  for (const [i, a] of (opts.allowLb ?? []).entries()) {
    if (isIP(a) === 0)
      throw new DemoBackendError(
        'ERR_DEMO_ALLOW_LB_ADDRESS',
        `expected IP literals, got '${a}' (item ${i + 1})`,
        'allowLb',
      );
  }
  const keys = returnKeysOf(config);
  const retryKeysOf = (c: DemoBackendConfig): RetryTokenKeys | undefined => {
    const files = opts.retryKeyFiles ?? c.retry?.keyFiles ?? [];
    return files.length > 0 ? loadRetryTokenKeys(files) : undefined;
  };
  const retryKeys = retryKeysOf(config);
  let retryTokens = retryKeys && new RetryTokenValidator({ keys: retryKeys });
  const socket = given ?? ownSocket();
  function ownSocket(): BackendSocket {
    return new BackendSocket({
      listen,
      unicast: preferred && (preferred.address !== listen.address || preferred.port !== listen.port) ? [preferred] : [],
      returnPath:
        rp.mode === 'direct' && config.listen[0]
          ? { mode: 'direct', vip: config.listen[0] }
          : replyTo
            ? { mode: 'via-lb', address: replyTo.address, port: replyTo.port }
            : { mode: 'via-lb' },
      hmacKeys: keys.length > 0 ? keys : undefined,
      signForward: rp.signForward,
      allowLbAddresses: opts.allowLb && opts.allowLb.length > 0 ? opts.allowLb : undefined,
      insecureAnyLb: opts.insecureAnyLb,
    });
  }
  if (!given) {
    if (opts.onWarning) socket.on('warning', opts.onWarning);
    await socket.bind();
  }
  const sid = spec.serverIds.find((s) => s.configId === activeId)?.serverId;
  const server = new DemoServer({
    socket,
    cids,
    serverId: sid,
    name: opts.name,
    // draft-21 §9.2: a plaintext config gets one CID per connection, so no preferred_address
    // (its CID would be a second one) and no NEW_CONNECTION_ID.
    preferredAddress:
      preferred && cids.allowsAdditionalCids
        ? isIPv6(preferred.address)
          ? { ipv6: preferred }
          : { ipv4: preferred }
        : undefined,
    issueNewConnectionIds: cids.allowsAdditionalCids,
    disableActiveMigration: !cids.allowsAdditionalCids,
    identity: opts.identity ?? (opts.certFile && opts.keyFile ? loadIdentity(opts.certFile, opts.keyFile) : undefined),
    eventLog: opts.eventLog,
    staticDir: opts.staticDir,
    retryTokens,
    ownsCid,
  });
  if (opts.onEvent) server.on('event', opts.onEvent);
  server.event('backend-started', {
    listen: `${listen.address}:${listen.port}`,
    preferred: preferred && cids.allowsAdditionalCids ? `${preferred.address}:${preferred.port}` : null,
    configId: activeId,
    cidLength: cids.length,
    retryKeys: retryKeys?.keys.length ?? 0,
    replyTo: replyTo ? `${replyTo.address}:${replyTo.port}` : rp.mode === 'direct' ? 'vip' : 'lb',
  });
  let draining = false;
  return {
    server,
    socket,
    encoder,
    addresses: socket.addresses(),
    replyTo,
    get retryTokens() {
      return retryTokens;
    },
    drain() {
      if (draining) return;
      draining = true;
      socket.drain();
      server.event('draining', { connections: server.stats.connectionsActive });
    },
    applyConfig(next: DemoBackendConfig, configId?: number) {
      const fresh = encoderEntries(next, opts.name);
      const nextRetryKeys = retryKeysOf(next);
      // Keys first: setKeys validates before it swaps, so a failure leaves everything as it was.
      const nextKeys = returnKeysOf(next);
      if (nextKeys.length > 0 && !given) socket.setKeys(nextKeys);
      const hmacKeys = nextKeys.length;
      retryTokens = swapRetryKeys(server, retryTokens, nextRetryKeys);
      const keys = { hmacKeys, retryKeys: nextRetryKeys?.keys.length ?? 0 };
      const activeBefore = encoder.activeConfig?.configId;
      let activeRedefined = false;
      for (const e of fresh) {
        const id = e.config.configId;
        const signature = entrySignature(e);
        const prev = signatures.get(id);
        if (prev === signature) continue;
        // A codepoint redefined in place (new key, lengths or server ID): replace it. Better
        // practice is a new codepoint (draft-21 §3.1), but never keep minting with a stale key.
        if (prev !== undefined) {
          encoder.removeConfig(id);
          if (id === activeBefore) activeRedefined = true;
        }
        encoder.addConfig(e);
        signatures.set(id, signature);
        owned.set(id, e);
      }
      const want = configId ?? fresh[fresh.length - 1]?.config.configId;
      if (want === undefined) return { activeConfigId: encoder.activeConfig?.configId, reissued: 0, ...keys };
      if (encoder.activeConfig?.configId !== want) encoder.setActiveConfig(want);
      if (want === activeBefore && !activeRedefined) return { activeConfigId: want, reissued: 0, ...keys };
      const reissued = server.reissueConnectionIds(`config ${want}`);
      return { activeConfigId: want, reissued, ...keys };
    },
    async close() {
      server.close();
      if (!given) await socket.close();
    },
  };
}

/** The validator after a reload: the running one with `keys` swapped in (its counters go on), a new one, or none (no key files: tokens ignored). */
function swapRetryKeys(
  server: DemoServer,
  running: RetryTokenValidator | undefined,
  keys: RetryTokenKeys | undefined,
): RetryTokenValidator | undefined {
  if (keys && running) {
    running.setKeys(keys);
    return running;
  }
  const next = keys && new RetryTokenValidator({ keys });
  server.setRetryTokens(next);
  return next;
}

const isUnspecified = (address: string): boolean => address === '0.0.0.0' || /^[0:]+$/.test(address);

/**
 * The return port replies go to, or undefined for "back to the forwarding LB". 'auto' picks the
 * return port when it is reachable as configured: a specific address (not 0.0.0.0 / ::) of the
 * listen socket's family and a fixed port; and only when the backend listens on a specific
 * address, because the return port accepts only the sources in `returnPath.allow` (by default
 * the backends' configured addresses) while the forwarding LB's own socket takes replies from
 * whatever address the backend's kernel picks. Throws ERR_DEMO_REPLY_TO, ERR_DEMO_RETURN_PORT_UNUSABLE.
 */
function returnPortFor(rpListen: Endpoint | undefined, listen: Endpoint, mode: ReplyTo): Endpoint | undefined {
  if (!REPLY_TO.includes(mode))
    throw new DemoBackendError(
      'ERR_DEMO_REPLY_TO',
      `expected one of ${REPLY_TO.join(', ')}, got '${String(mode)}'`,
      'replyTo',
    );
  if (mode === 'lb' || (mode === 'auto' && isUnspecified(listen.address))) return undefined;
  const usable =
    rpListen !== undefined &&
    !isUnspecified(rpListen.address) &&
    rpListen.port !== 0 &&
    isIPv6(rpListen.address) === isIPv6(listen.address);
  if (usable) return { address: rpListen.address, port: rpListen.port };
  if (mode === 'return-port') {
    throw new DemoBackendError(
      'ERR_DEMO_RETURN_PORT_UNUSABLE',
      `returnPath.listen ${rpListen ? `'${rpListen.address}:${rpListen.port}'` : '(none)'} is not a specific address and port of the listen address's family`,
      'replyTo',
      mode,
    );
  }
  return undefined;
}

/**
 * The source address the kernel picks to reach `to` (what a backend there sees from an unbound
 * socket of this host, e.g. the LB's upstream and probe sockets): a connected UDP socket's local
 * address; nothing is sent.
 */
export function sourceAddressToward(to: Endpoint): Promise<string> {
  const s = dgram.createSocket(isIPv6(to.address) ? 'udp6' : 'udp4');
  return new Promise<string>((resolve, reject) => {
    s.once('error', reject);
    s.connect(to.port, to.address, () => resolve(s.address().address));
  }).finally(() => s.close());
}
