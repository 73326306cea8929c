// quic-lb-ts/anycast: the server mode (every server on the VIP, co-located forwarding,
// load-aware announcement). Re-exports only; see docs/anycast.md.
export { AnycastServer, startAnycastServer, healthzOf, type AnycastServerOptions } from './server.js';
export { AnycastError, ANYCAST_ERROR_CODES, type AnycastErrorCode } from './errors.js';
export { registerAnycastMetrics, type AnycastMetricsSource } from './metrics.js';
export {
  Announcer,
  WITHDRAW_REASONS,
  REASON_PRIORITY,
  LOAD_SIGNALS,
  initialAnnounceState,
  nextAnnounceState,
  drainAnnounceState,
  restartStreaks,
  type WithdrawReason,
  type LoadSignal,
  type AnnounceState,
  type AnnounceThresholds,
  type AnnouncerOptions,
  type LoadSample,
} from './announce.js';
export { LoadSampler, type LoadReading, type LoadSamplerOptions } from './load-sampler.js';
