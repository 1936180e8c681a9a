// sluice-client: acquire permits from the sluice rate-limit sidecar over gRPC.
export { Client, DEFAULT_TARGET, type AcquireOptions, type ClientOptions, type OnUnavailable } from './client.js';
export { Denied, SluiceError, Unavailable, type Denial } from './errors.js';
export { Permit, type DecidedBy, type Grant } from './permit.js';
