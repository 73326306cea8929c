// The demo QUIC v1 + TLS 1.3 + HTTP/3 server (quick start and end-to-end test peer).
// Re-exports only; see docs/backend.md.
export {
  DemoServer,
  type DemoServerOptions,
  type DemoServerStats,
  type DemoSocket,
  type RemoteInfo,
} from './server.js';
export {
  certificateHash,
  certificatesPem,
  generateSelfSigned,
  loadIdentity,
  MAX_PINNED_VALIDITY_DAYS,
  persistentIdentity,
  privateKeyPem,
  spkiPin,
  stateDirFiles,
  type ServerIdentity,
} from './cert.js';
export { generateBody, MAX_GENERATED_BODY } from './h3.js';
export type { PathVia, NetPath } from './paths.js';
export {
  REPLY_TO,
  sourceAddressToward,
  startDemoBackend,
  type DemoBackendConfig,
  type DemoBackendOptions,
  type ReplyTo,
  type RunningBackend,
} from './backend.js';
export {
  DEMO_BACKEND_ERROR_CODES,
  DemoBackendError,
  type DemoBackendErrorCode,
  type DemoBackendOption,
} from './errors.js';
export { chromiumCommand, clientCommand, describeEvent, quickStartConfig } from './quick-start.js';
