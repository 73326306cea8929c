// The server mode's own metrics, added to the registry of its forwarder's /metrics (which
// already exports every quic_lb_* metric of `quic-lb serve` and quic_lb_anycast_datagrams_total).
// Read at scrape time; labels are the closed list of withdraw reasons.
import type { Registry } from 'prom-client';
import { scrapeTimeMetrics } from '../lb/index.js';
import { WITHDRAW_REASONS, type AnnounceState, type LoadSample, type WithdrawReason } from './announce.js';

export interface AnycastMetricsSource {
  state(): AnnounceState;
  withdrawals(): Readonly<Record<WithdrawReason, number>> | undefined;
  lastSample(): LoadSample | undefined;
  activeConnections(): number;
  /** Encapsulated datagrams received from peers. */
  peerReceived(): number;
}

/** Registers quic_lb_anycast_* (announcement, load) on `registry`. */
export function registerAnycastMetrics(registry: Registry, source: AnycastMetricsSource): void {
  const { counter, gauge } = scrapeTimeMetrics(registry, 'quic_lb_anycast_');
  gauge('announced', '1 while this server announces the VIP (accepts new connections)', [], (g) =>
    g.set(source.state().announced ? 1 : 0),
  );
  gauge('withdrawn', '1 for the reason the VIP is withdrawn now (all 0 while announced)', ['reason'], (g) => {
    const s = source.state();
    for (const reason of WITHDRAW_REASONS) g.set({ reason }, !s.announced && s.reason === reason ? 1 : 0);
  });
  counter('withdrawals_total', 'Transitions from announced to withdrawn, by reason', ['reason'], (c) => {
    const w = source.withdrawals();
    for (const reason of WITHDRAW_REASONS) c.inc({ reason }, w?.[reason] ?? 0);
  });
  counter('peer_received_total', 'Encapsulated datagrams this server received from peers', [], (c) =>
    c.inc(source.peerReceived()),
  );
  gauge('active_connections', 'Active QUIC connections of this server', [], (g) => g.set(source.activeConnections()));
  gauge('event_loop_delay_seconds', 'p99 event-loop delay of the last load sample period', [], (g) =>
    g.set((source.lastSample()?.eventLoopDelayMs ?? 0) / 1000),
  );
  gauge('cpu_ratio', 'Process CPU seconds per wall second over the last load sample period', [], (g) =>
    g.set(source.lastSample()?.cpu ?? 0),
  );
}
