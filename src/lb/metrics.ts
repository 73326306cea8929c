// prom-client metrics read at scrape time from plain counters (docs/design.md §4), and the HTTP
// endpoint serving /metrics and /healthz. Labels: reason, backend, config id, result, outcome:
// all bounded by the config, never a CID or an address.
import http from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { CounterSnapshot } from './counters.js';
import type { BackendHealth } from './health.js';
import type { ParsedEndpoint } from '../wire/index.js';
import { BACKEND_STATES } from './router.js';
import { CONFIG_ROTATION_CODEPOINTS, MAX_CONFIG_ID, UNROUTABLE_CONFIG_ID } from '../cid/index.js';
import {
  ANYCAST_PATH_NAMES,
  CID_RESULT_COUNT,
  CID_RESULT_NAMES,
  REASON_NAMES,
  RETRY_DROP_NAMES,
  RETRY_TOKEN_RESULT_NAMES,
  RETURN_REJECT_NAMES,
  SEND_ERROR_NAMES,
} from './reasons.js';

/** Control-plane state the primary (or single process) keeps. */
export interface ControlStats {
  reloadsOk: number;
  reloadsFailed: number;
  lastReloadOk: boolean;
  lastReloadTime: number;
  /** When the running config was applied (start or last successful reload), ms since the epoch. */
  loadedTime: number;
  restartRequired: boolean;
  draining: boolean;
  workers: number;
  /** Cluster workers started again after one exited (0 in a single process). */
  workerRestarts: number;
}

/** Where the metrics come from at scrape time. */
export interface MetricsSource {
  /** Counters of every forwarding process, summed. */
  counters(): Promise<CounterSnapshot>;
  health(): Map<string, BackendHealth>;
  control(): ControlStats;
  /** Backend names of the current config (so idle backends still show). */
  backendNames(): string[];
  /** Datagrams received per forwarding process (worker id -> count). */
  workerPackets(): Map<string, number>;
  /** The QUIC-LB configs of the running config (codepoint and algorithm). */
  quicLbConfigs(): readonly { configId: number; algorithm: string }[];
  /** Server mode (src/anycast): also export quic_lb_anycast_datagrams_total. */
  serverMode?: boolean;
  /** The VIPs (`address:port`), by index: the `vip` label of quic_lb_retry_active. */
  vips?(): string[];
}

/** Prefix of every metric name. */
export const METRICS_PREFIX = 'quic_lb_';

/** Registers a metric `prefix + name` whose value `fill` sets at scrape time. */
export type ScrapeTimeMetric<M> = (name: string, help: string, labelNames: string[], fill: (m: M) => void) => void;

/**
 * Metrics read at scrape time on `registry`: each is reset and refilled by its `fill` in
 * prom-client's collect(), so nothing on the packet path touches prom-client (docs/design.md §4).
 * Used by the LB and by the server mode (src/anycast).
 */
export function scrapeTimeMetrics(
  registry: Registry,
  prefix: string,
): { counter: ScrapeTimeMetric<Counter>; gauge: ScrapeTimeMetric<Gauge> } {
  const options = <M extends { reset(): void }>(
    name: string,
    help: string,
    labelNames: string[],
    fill: (m: M) => void,
  ) => ({
    name: prefix + name,
    help,
    labelNames,
    registers: [] as Registry[],
    collect(this: M): void {
      this.reset();
      fill(this);
    },
  });
  return {
    counter: (name, help, labelNames, fill) =>
      registry.registerMetric(new Counter(options(name, help, labelNames, fill))),
    gauge: (name, help, labelNames, fill) => registry.registerMetric(new Gauge(options(name, help, labelNames, fill))),
  };
}

/** Builds the registry. Call `registry.metrics()` after awaiting `refresh()`. */
export function createMetrics(source: MetricsSource): { registry: Registry; refresh: () => Promise<void> } {
  const registry = new Registry();
  let snap: CounterSnapshot | undefined;

  // Every metric is recomputed in collect() from `snap` and the sources: nothing is bumped here.
  const { counter, gauge } = scrapeTimeMetrics(registry, METRICS_PREFIX);

  counter(
    'received_packets_total',
    'Datagrams received on the VIPs, by decision reason (the sum is every datagram received)',
    ['reason'],
    (c) => {
      if (snap) REASON_NAMES.forEach((reason, i) => c.inc({ reason }, snap!.reasonPackets[i]));
    },
  );
  counter('received_bytes_total', 'Octets received on the VIPs, by decision reason', ['reason'], (c) => {
    if (snap) REASON_NAMES.forEach((reason, i) => c.inc({ reason }, snap!.reasonBytes[i]));
  });
  counter(
    'cid_packets_total',
    `Datagrams by DCID config codepoint (0..${MAX_CONFIG_ID}, ${UNROUTABLE_CONFIG_ID} = 0b111 unroutable) and what the CID gave: routed, unknown_server_id, too_short, backend_down, unknown_config (decode failures); client-chosen Initial DCIDs are not counted`,
    ['config_id', 'result'],
    (c) => {
      if (!snap) return;
      // Every config codepoint shows a routed series, even at 0; the unroutable one only when counted.
      for (let cp = 0; cp < CONFIG_ROTATION_CODEPOINTS; cp++) {
        for (let r = 0; r < CID_RESULT_COUNT; r++) {
          const v = snap.cid[cp * CID_RESULT_COUNT + r];
          if (v > 0 || (cp !== UNROUTABLE_CONFIG_ID && r === 0))
            c.inc({ config_id: String(cp), result: CID_RESULT_NAMES[r] }, v);
        }
      }
    },
  );
  const perBackend = (i: number) => (c: Counter, direction: string) => {
    if (!snap) return;
    const names = new Set([...source.backendNames(), ...Object.keys(snap.backends)]);
    for (const backend of names) c.inc({ backend, direction }, snap.backends[backend]?.[i] ?? 0);
  };
  counter(
    'backend_packets_total',
    'Datagrams per backend: direction to_backend (forwarded) or to_client (return path)',
    ['backend', 'direction'],
    (c) => {
      perBackend(0)(c, 'to_backend');
      perBackend(2)(c, 'to_client');
    },
  );
  counter(
    'backend_bytes_total',
    'QUIC octets per backend (without the PROXY header): to_backend or to_client',
    ['backend', 'direction'],
    (c) => {
      perBackend(1)(c, 'to_backend');
      perBackend(3)(c, 'to_client');
    },
  );
  counter(
    'backend_routed_packets_total',
    'Datagrams forwarded to a backend because their CID named it (the rest came by fallback)',
    ['backend'],
    (c) => {
      if (!snap) return;
      const names = new Set([...source.backendNames(), ...Object.keys(snap.backends)]);
      for (const backend of names) c.inc({ backend }, snap.backends[backend]?.[4] ?? 0);
    },
  );
  counter('return_packets_total', 'Datagrams accepted on the return path and sent to clients from the VIP', [], (c) => {
    if (snap) c.inc(snap.returnPackets);
  });
  counter('return_bytes_total', 'QUIC octets accepted on the return path', [], (c) => {
    if (snap) c.inc(snap.returnBytes);
  });
  counter(
    'return_rejected_total',
    'Return-path datagrams refused: source (not an allowed backend), header, hmac (missing/bad/stale auth TLV), vip (unknown VIP)',
    ['reason'],
    (c) => {
      if (snap) RETURN_REJECT_NAMES.forEach((reason, i) => c.inc({ reason }, snap!.returnRejects[i]));
    },
  );
  counter(
    'send_errors_total',
    "Datagrams not sent, by reason: bad_port (destination port 0), bad_address (unspecified, multicast, broadcast or IPv4-mapped destination), queue_full (a backend socket's send queue at its bound), socket (socket error events, e.g. ICMP unreachable from a backend), thrown (a send that threw anyway)",
    ['reason'],
    (c) => {
      if (snap) SEND_ERROR_NAMES.forEach((reason, i) => c.inc({ reason }, snap!.sendErrors[i]));
    },
  );
  counter(
    'backend_dropped_packets_total',
    "Datagrams for a backend dropped because its socket's send queue was full (socket.maxQueuedDatagrams / maxQueuedOctets); not in backend_packets_total",
    ['backend'],
    (c) => {
      if (!snap) return;
      const names = new Set([...source.backendNames(), ...Object.keys(snap.backends)]);
      for (const backend of names) c.inc({ backend }, snap.backends[backend]?.[5] ?? 0);
    },
  );
  counter(
    'return_auth_total',
    'Return-path datagrams authenticated, by the returnPath.hmacKeys index of the key that verified (0 = current); an old key unused for long can be removed',
    ['key'],
    (c) => {
      if (snap) snap.returnAuth.forEach((v, i) => c.inc({ key: String(i) }, v));
    },
  );
  gauge(
    'backend_state',
    'Health state of each backend: 1 for its current state (docs/lb.md "Health and drain policy")',
    ['backend', 'state'],
    (g) => {
      for (const [backend, h] of source.health())
        for (const state of BACKEND_STATES) g.set({ backend, state }, h.state === state ? 1 : 0);
    },
  );
  counter('health_checks_total', 'Health probes per backend and result', ['backend', 'result'], (c) => {
    for (const [backend, h] of source.health()) {
      c.inc({ backend, result: 'ok' }, h.checksOk);
      c.inc({ backend, result: 'failed' }, h.checksFailed);
    }
  });
  counter('health_transitions_total', 'Health state changes per backend', ['backend'], (c) => {
    for (const [backend, h] of source.health()) c.inc({ backend }, h.transitions);
  });
  counter(
    'config_reloads_total',
    'Config reloads (SIGHUP or file change) by outcome; a failed one keeps the old config',
    ['outcome'],
    (c) => {
      const s = source.control();
      c.inc({ outcome: 'success' }, s.reloadsOk);
      c.inc({ outcome: 'failure' }, s.reloadsFailed);
    },
  );
  gauge('config_last_reload_success', '1 if the last reload attempt succeeded (or none was made)', [], (g) =>
    g.set(source.control().lastReloadOk ? 1 : 0),
  );
  gauge('config_last_reload_timestamp_seconds', 'Time of the last reload attempt (0: none)', [], (g) =>
    g.set(source.control().lastReloadTime / 1000),
  );
  gauge(
    'config_loaded_timestamp_seconds',
    'When the running config was applied: start or last successful reload',
    [],
    (g) => g.set(source.control().loadedTime / 1000),
  );
  gauge(
    'config_info',
    'One series with value 1 per QUIC-LB config id loaded in the running config (label algorithm: plaintext, single-pass, four-pass); a removed config id disappears',
    ['config_id', 'algorithm'],
    (g) => {
      for (const c of source.quicLbConfigs()) g.set({ config_id: String(c.configId), algorithm: c.algorithm }, 1);
    },
  );
  gauge(
    'config_restart_required',
    '1 if the file changes fields a reload cannot apply (listen, workers, sockets, metrics)',
    [],
    (g) => g.set(source.control().restartRequired ? 1 : 0),
  );
  gauge('draining', '1 after SIGTERM: /healthz fails, forwarding continues until drainMs', [], (g) =>
    g.set(source.control().draining ? 1 : 0),
  );
  counter(
    'worker_received_packets_total',
    'Datagrams received per forwarding process (cluster worker id; 0 = single process); shows how the kernel spreads the shared VIP socket',
    ['worker'],
    (c) => {
      for (const [worker, n] of source.workerPackets()) c.inc({ worker }, n);
    },
  );
  gauge('workers', 'Forwarding processes running', [], (g) => g.set(source.control().workers));
  counter(
    'worker_restarts_total',
    'Cluster workers started again after one exited (restarts back off exponentially, 1 s to 60 s)',
    [],
    (c) => c.inc(source.control().workerRestarts),
  );

  retryMetrics(counter, gauge, () => snap, source.vips ?? (() => []));

  if (source.serverMode)
    counter(
      'anycast_datagrams_total',
      'Server mode: VIP datagrams by where they went: local (this server, no network hop), peer (encapsulated to the server its CID or Maglev slot names), dropped',
      ['path'],
      (c) => {
        if (snap) ANYCAST_PATH_NAMES.forEach((path, i) => c.inc({ path }, snap!.anycast?.[i] ?? 0));
      },
    );

  return {
    registry,
    refresh: async () => {
      snap = await source.counters();
    },
  };
}

/**
 * The Retry offload's metrics (docs/retry.md "Metrics"), summed over the forwarding processes.
 * Every series shows from the start, at 0, whatever the mode.
 */
function retryMetrics(
  counter: ScrapeTimeMetric<Counter>,
  gauge: ScrapeTimeMetric<Gauge>,
  snap: () => CounterSnapshot | undefined,
  vips: () => string[],
): void {
  const retry = (): NonNullable<CounterSnapshot['retry']> | undefined => snap()?.retry;
  counter('retry_sent_total', 'Retry packets the LB sent in answer to token-less client Initials', [], (c) =>
    c.inc(retry()?.sent ?? 0),
  );
  counter(
    'retry_sent_bytes_total',
    'Octets of those Retry packets (direction sent) and of the Initials they answered (direction received): sent/received is the offload amplification, under 1',
    ['direction'],
    (c) => {
      c.inc({ direction: 'sent' }, retry()?.sentBytes ?? 0);
      c.inc({ direction: 'received' }, retry()?.answeredBytes ?? 0);
    },
  );
  counter(
    'retry_tokens_total',
    'Tokens on client Initials: valid (a Retry token that opened: forwarded), new_token (a backend NEW_TOKEN token: forwarded untouched), unverified (forwarded unopened: offload off and past the transition, or a failed ICV on a routed DCID), else why a Retry token was refused (dropped): truncated, key_sequence, invalid, odcid, expired, port',
    ['result'],
    (c) => {
      const r = retry();
      RETRY_TOKEN_RESULT_NAMES.forEach((result, i) => c.inc({ result }, r?.tokens[i] ?? 0));
    },
  );
  counter(
    'retry_initials_dropped_total',
    'Client Initials the Retry offload dropped without an answer: small_datagram (< 1200 octets), malformed, short_dcid (< 8 octets), invalid_token, error',
    ['reason'],
    (c) => {
      const r = retry();
      RETRY_DROP_NAMES.forEach((reason, i) => c.inc({ reason }, r?.dropped[i] ?? 0));
    },
  );
  counter(
    'retry_mode_changes_total',
    'Times the Retry offload turned on or off on a VIP (per process, summed)',
    [],
    (c) => c.inc(retry()?.modeChanges ?? 0),
  );
  gauge(
    'retry_active',
    'Forwarding processes in which the Retry offload is active on this VIP (0 = off everywhere; with workers: 1 it is 0 or 1)',
    ['vip'],
    (g) => {
      const active = retry()?.active ?? [];
      vips().forEach((vip, i) => g.set({ vip }, active[i] ?? 0));
    },
  );
}

/** The operations HTTP endpoint: GET /metrics (Prometheus text), GET /healthz (200 ok / 503). */
export async function startHttp(
  listen: ParsedEndpoint,
  handlers: {
    metrics: () => Promise<string>;
    contentType: string;
    healthy: () => { ok: boolean; why: string } | Promise<{ ok: boolean; why: string }>;
  },
): Promise<{ server: http.Server; address: ParsedEndpoint }> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/metrics') {
      handlers.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': handlers.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics error: ${(err as Error).message}\n`);
        },
      );
      return;
    }
    if (req.method === 'GET' && (url === '/healthz' || url === '/readyz')) {
      Promise.resolve()
        .then(handlers.healthy)
        .then(
          (h) => {
            res.writeHead(h.ok ? 200 : 503, { 'content-type': 'text/plain' });
            res.end(`${h.why}\n`);
          },
          (err: unknown) => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(`health error: ${(err as Error).message}\n`);
          },
        );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /metrics or /healthz\n');
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : listen.port;
  return { server, address: { ...listen, port } };
}
