// quic-lb-ts/anycast: the server mode (every server on the VIP, co-located forwarding,
// load-aware announcement). Re-exports only; see docs/anycast.md.
export { AnycastServer, startAnycastServer, healthzOf, type AnycastServerOptions } from './server.js';
export { AnycastError, ANYCAST_ERROR_CODES, type AnycastErrorCode } from './errors.js';
export { registerAnycastMetrics, type AnycastMetricsSource } from './metrics.js';
export {
  Announcer,
  WITHDRAW_REASONS,
  type WithdrawReason,
  type AnnounceState,
  type AnnounceThresholds,
  type LoadSample,
} from './basic-announcer.js';
