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
