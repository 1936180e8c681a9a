// Derived from envoyproxy/ratelimit's test/redis/fixed_cache_impl_test.go TestRedisWithJitter:
// with EXPIRATION_JITTER_MAX_SECONDS (store.redis.expiry_jitter), a window key expires up to that
// much after its window's end, each key its own amount, and the answers are those without it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secondsToWindowEnd } from '../../src/envoy/units.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { configDir } from './support.js';
import { hits, inOneWindow } from './upstream.js';

const JITTER_S = 3600;
const FILES = {
  'domain.yaml': 'domain: domain\ndescriptors:\n  - key: key\n    rate_limit: { unit: second, requests_per_unit: 10 }\n  - key: day\n    rate_limit: { unit: day, requests_per_unit: 10 }\n',
};

describe('upstream test/redis/fixed_cache_impl_test.go, with EXPIRATION_JITTER_MAX_SECONDS', () => {
  const world = useRedis();
  let sidecar: SidecarProcess;
  let client: EnvoyClient;

  beforeAll(async () => {
    const policy = `store:\n  timeout: 5s\nenvoy:\n  upstream_env: true\n  config_dir: ${configDir(FILES)}\n  lease: { enabled: false }\n`;
    sidecar = await startSidecar(policy, { REDIS_URL: `127.0.0.1:${world.redis.port}`, REDIS_SOCKET_TYPE: 'tcp', EXPIRATION_JITTER_MAX_SECONDS: String(JITTER_S) });
    client = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
  });

  /** The remaining time to live, in ms, of every key of the rule for descriptor key `key`. */
  async function ttls(key: string): Promise<number[]> {
    const keys = await world.redis.client.keys(`sluice:{envoy=domain|${key}|*`);
    return Promise.all(keys.map((key) => world.redis.client.pttl(key)));
  }

  it('TestRedisWithJitter', async () => {
    // Upstream's mock had the window at 4 before this hit; here 4 hits come first, in one window.
    await inOneWindow('SECOND', 900);
    await client.shouldRateLimit('domain', [hits(desc('key', 'value'), 4)]);
    const res = await client.shouldRateLimit('domain', [desc('key', 'value')]);
    expect(res.statuses).toMatchObject([{ code: 'OK', current_limit: { requests_per_unit: 10, unit: 'SECOND' }, limit_remaining: 5 }]);
    expect(res.statuses[0]!.duration_until_reset!.seconds).toBeLessThanOrEqual(1);
    const [ttl] = await ttls('key');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1_000 + 1 + JITTER_S * 1000);
  });

  it('spreads the expiry of one window\'s keys over the jitter, each past the window\'s end', async () => {
    await world.redis.client.flushall();
    const before = Date.now();
    for (let i = 0; i < 40; i++) await client.shouldRateLimit('domain', [desc('day', `user-${i}`)]);
    const windowEndMs = secondsToWindowEnd('DAY', before) * 1000;
    const extra = (await ttls('day')).map((ttl) => ttl - windowEndMs);
    expect(extra).toHaveLength(40);
    // Past the window's end (less the time the calls and this look took), within the jitter.
    for (const ms of extra) {
      expect(ms).toBeGreaterThan(-60_000);
      expect(ms).toBeLessThanOrEqual(JITTER_S * 1000 + 1_000);
    }
    // Spread: without jitter every key would expire within a second of the others.
    expect(Math.max(...extra) - Math.min(...extra)).toBeGreaterThan((JITTER_S * 1000) / 4);
  });
});
