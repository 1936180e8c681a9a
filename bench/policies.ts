// The policy files the bench runs sluice with.

export type SluiceMode = 'memory' | 'redis' | 'lease';

/** The one hot key: resource "bench", keys [tenant], the tenant "hot". */
export const HOT_REQUEST = { resource: 'bench', descriptors: { tenant: 'hot' }, cost: 1 };

/** Leases as the brief for the lease mode sets them. */
const LEASE_ON = '{ enabled: true, max_fraction: 0.1, ttl: 1s }';
const LEASE_OFF = '{ enabled: false }';

/**
 * A limit far above the load (1,000,000/s) so every request is granted and decided in full. The
 * store timeout is generous so that a loaded machine measures latency instead of failing open.
 */
export function loadPolicy(mode: SluiceMode, redisUrl: string): string {
  const store = mode === 'memory' ? '' : `  redis: { url: "${redisUrl}", prefix: bench }\n`;
  return `server:
  shutdown_grace: 2s
store:
${store}  timeout: 1s
resources:
  - name: bench
    keys: [tenant]
    lease: ${mode === 'lease' ? LEASE_ON : LEASE_OFF}
    limits:
      - { name: rps, algorithm: token_bucket, rate: 1000000/1s }
`;
}

/**
 * The outage scenario: the hot key on a Redis of its own, leases on, failing open, and sluice's
 * default store timeout (20ms), not the 1 s of the load policies: this scenario is about what that
 * deadline and the circuit breaker do when Redis dies.
 */
export function outagePolicy(redisUrl: string): string {
  return `server:
  shutdown_grace: 2s
store:
  redis: { url: "${redisUrl}", prefix: bench }
  timeout: 20ms
resources:
  - name: bench
    keys: [tenant]
    on_store_failure: open
    lease: ${LEASE_ON}
    limits:
      - { name: rps, algorithm: token_bucket, rate: 1000000/1s }
`;
}

/** A key of the memory run: 100,000 of them, each asked a few times. */
export const MEMORY_RESOURCE = 'mem';

/**
 * The memory run: many distinct keys through one sidecar, leases on (Redis) or the embedded
 * store (redisUrl null). Each key's limit (10/1m, burst 10) is above the few requests it gets, so
 * all are granted, and slow enough to refill that every key is still in Redis when the run ends.
 */
export function memoryPolicy(redisUrl: string | null): string {
  const store = redisUrl === null ? '' : `  redis: { url: "${redisUrl}", prefix: mem }\n`;
  return `server:
  shutdown_grace: 2s
store:
${store}  timeout: 1s
resources:
  - name: ${MEMORY_RESOURCE}
    keys: [tenant]
    lease: ${LEASE_ON}
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 10/1m }
`;
}

export interface AccuracyLimits {
  hot: { ratePerS: number; burst: number };
  many: { ratePerMin: number; burst: number };
}

/** Two resources for the accuracy run, both with leases on. */
export function accuracyPolicy(redisUrl: string, limits: AccuracyLimits, prefix: string): string {
  return `server:
  shutdown_grace: 2s
store:
  redis: { url: "${redisUrl}", prefix: ${prefix} }
  timeout: 1s
resources:
  - name: hot
    keys: [tenant]
    lease: ${LEASE_ON}
    limits:
      - { name: rps, algorithm: token_bucket, rate: ${limits.hot.ratePerS}/1s, burst: ${limits.hot.burst} }
  - name: many
    keys: [tenant]
    lease: ${LEASE_ON}
    limits:
      - { name: rpm, algorithm: token_bucket, rate: ${limits.many.ratePerMin}/1m, burst: ${limits.many.burst} }
`;
}

export interface WaitLimit {
  ratePerS: number;
  burst: number;
}

/**
 * The waiting run: two resources with the same token bucket and leases on (the default), one
 * plain and one with a reserve for priority 5 and above. The line holds about demand x max_wait
 * requests (500), more when the sidecars answer late; wait.max_waiters is raised from 1,000 to
 * 5,000 because a refused wait ends its whole AcquireStream, and the run measures the line, not its cap.
 */
export function waitPolicy(redisUrl: string, limit: WaitLimit, reserve: { fraction: number; minPriority: number }): string {
  const limits = `    limits:
      - { name: rps, algorithm: token_bucket, rate: ${limit.ratePerS}/1s, burst: ${limit.burst} }
`;
  return `server:
  shutdown_grace: 2s
store:
  redis: { url: "${redisUrl}", prefix: wait }
  timeout: 1s
resources:
  - name: fifo
    keys: [tenant]
    lease: ${LEASE_ON}
    wait: { max_waiters: 5000 }
${limits}  - name: priority
    keys: [tenant]
    lease: ${LEASE_ON}
    wait: { max_waiters: 5000 }
    reserve: [{ fraction: ${reserve.fraction}, min_priority: ${reserve.minPriority} }]
${limits}`;
}
