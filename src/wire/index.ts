// quic-lb-ts/wire: the QUIC wire format shared by the load balancer, the backend kit and the
// demo server. Re-exports only (docs/design.md §1).
export * from './errors.js';
export * from './varint.js';
export * from './version.js';
export * from './header.js';
export * from './ip.js';
export * from './endpoint.js';
export * from './address-set.js';
export * from './preferred-address.js';
export * from './transport-parameters.js';
export * from './proxy-v2.js';
export * from './health-probe.js';
export * from './retry.js';
export * from './retry-token.js';
