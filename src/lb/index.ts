// quic-lb-ts/lb: the load balancer (`quic-lb serve`). Re-exports only; see docs/lb.md.
export { ConfigError, CONFIG_ERROR_CODES, type ConfigErrorCode } from './errors.js';
export {
  type LbConfig,
  type BackendSpec,
  type HealthCheckSpec,
  type QuicLbConfigSpec,
  type HealthType,
  type LogLevel,
  type ReturnMode,
  type AnycastSpec,
  type AnnounceSpec,
  anycastOf,
  type RetrySpec,
  type RetryKeySpec,
  type RetryMode,
  RETRY_MODES,
  MAX_RETRY_KEY_FILES,
  retryOf,
  datapathOf,
  DEFAULTS,
  KNOWN_FIELDS,
  HEALTH_TYPES,
  validateConfig,
  parseConfig,
  loadConfigFile,
  loadQuicLbSpecs,
  MIN_HMAC_KEY_LENGTH,
  MAX_HMAC_KEY_LENGTH,
  restartOnlyChanges,
  keyFileModeWarning,
  keyFileWarning,
  configSources,
} from './config.js';
export {
  Reason,
  REASON_COUNT,
  REASON_NAMES,
  CidResult,
  CID_RESULT_NAMES,
  CID_RESULT_COUNT,
  CODEPOINT_COUNT,
  RETURN_REJECT_COUNT,
  ReturnReject,
  RETURN_REJECT_NAMES,
  SendError,
  SEND_ERROR_COUNT,
  SEND_ERROR_NAMES,
  MAX_HMAC_KEYS,
  isForwarded,
  AnycastPath,
  ANYCAST_PATH_NAMES,
  ANYCAST_PATH_COUNT,
  RetryDrop,
  RETRY_DROP_NAMES,
  RETRY_DROP_COUNT,
  RETRY_TOKEN_RESULT_NAMES,
  RETRY_TOKEN_RESULT_COUNT,
} from './reasons.js';
export { RetryOffload, RETRY_TICK_MS, type VipSender } from './retry-offload.js';
export { Counters, BackendStats, RetryCounters, type CounterSnapshot, type RetrySnapshot } from './counters.js';
export { SipHash24 } from './siphash.js';
export {
  buildMaglevTable,
  isPrime,
  DEFAULT_MAGLEV_TABLE_SIZE,
  MAX_MAGLEV_TABLE_SIZE,
  type MaglevEntry,
} from './maglev.js';
export {
  FourTuple,
  Decision,
  type RouterState,
  type RouterBackend,
  type HealthView,
  type BackendState,
  BACKEND_STATES,
  initialState,
  buildRouterState,
  withHealth,
  decide,
  countDecision,
  route,
  fallbackSlot,
} from './router.js';
export { HealthChecker, nextState, type BackendHealth, type ProbeResult, type ProbeStreaks } from './health.js';
export { Forwarder, type PreparedConfig, type LocalDelivery, sendableDestination } from './forwarder.js';
export { LoadBalancer, startLoadBalancer, type LoadBalancerOptions, type ReloadResult } from './load-balancer.js';
export { createLogger } from './logger.js';
export { scrapeTimeMetrics, type ScrapeTimeMetric } from './metrics.js';
