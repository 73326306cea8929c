// The demo QUIC v1 + TLS 1.3 + HTTP/3 server (quick start and end-to-end test peer).
// Re-exports only; see docs/backend.md.
export { DemoServer, type DemoServerOptions, type DemoServerStats, type DemoSocket, type CidSource, type RemoteInfo } from './server.js';
export { generateSelfSigned, loadIdentity, type ServerIdentity } from './cert.js';
export { generateBody, MAX_GENERATED_BODY } from './h3.js';
export type { PathVia, NetPath } from './connection.js';
