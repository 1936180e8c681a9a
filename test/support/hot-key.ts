// A hot key on sidecars of its own, for the enclosing describe block: a prioritised redis-server,
// `sidecars` sidecars started as deployed on it with one resource `hot` (leases on, a token
// bucket), and one client each for the accuracy bench's hot-key phase (bench/accuracy-phase.ts).
import { afterAll, beforeAll } from 'vitest';
import { openClients, type RateLimiterClient } from '../../bench/grpc-load.js';
import type { RedisProcess } from './redis-server.js';
import { DEPLOYED_NODE_FLAGS, startSidecar, type SidecarProcess } from './sidecar.js';
import { useRedis } from './use-redis.js';

export interface HotKeyOptions {
  sidecars: number;
  ratePerS: number;
  burst: number;
  /** store.timeout */
  storeTimeout: string;
}

export interface HotKeyWorld {
  redis: RedisProcess;
  clients: RateLimiterClient[];
}

export function useHotKey(o: HotKeyOptions): HotKeyWorld {
  const world = useRedis({ prioritised: true });
  const sidecars: SidecarProcess[] = [];
  const hot = { clients: [] as RateLimiterClient[] } as HotKeyWorld;
  // Closed, so that a decision no take could make is denied, never granted past the limit.
  const policy = `
store:
  timeout: ${o.storeTimeout}
resources:
  - name: hot
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: rps, algorithm: token_bucket, rate: ${o.ratePerS}/1s, burst: ${o.burst} }
`;
  beforeAll(async () => {
    hot.redis = world.redis;
    for (let i = 0; i < o.sidecars; i++) sidecars.push(await startSidecar(policy, { SLUICE_REDIS_URL: world.redis.url }, DEPLOYED_NODE_FLAGS));
    for (const sidecar of sidecars) hot.clients.push(...(await openClients(sidecar.address, 1)));
  });
  afterAll(async () => {
    for (const client of hot.clients) client.close();
    await Promise.all(sidecars.map((sidecar) => sidecar.stop()));
  });
  return hot;
}
