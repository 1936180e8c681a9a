// Cases derived from envoyproxy/ratelimit's test/integration/integration_test.go, on its own
// runtime config files (upstream-files.ts), through the built sidecar on every backend
// (upstream.ts): each `it` is named after the upstream test it comes from. Its local cache
// variants run on Redis with upstream's LOCAL_CACHE_SIZE_IN_BYTES, which turns sluice's leases
// on. The variants upstream runs for its other transports (per-second Redis, memcache, TLS, auth,
// Cluster, Sentinel, xDS, mTLS) and its statistics are not derived here.
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startSidecar } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';
import { connectEnvoy, desc } from './client.js';
import { configDir, waitForLog } from './support.js';
import { inOneWindow, onEveryBackend } from './upstream.js';
import { UPSTREAM_INTEGRATION_FILES } from './upstream-files.js';
import { expectBasicConfigAnswers, line } from './upstream-answers.js';

const { 'reload.yaml': RELOAD, ...CONFIG } = UPSTREAM_INTEGRATION_FILES;

onEveryBackend('upstream test/integration/integration_test.go', CONFIG, { sidecar: [] }, (world) => {
  const client = () => world.served('sidecar').client;

  // Upstream runs this case in several variants; sluice answers as its variant that stops
  // counting a request that is over the limit (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT), since a
  // request over the limit takes nothing in sluice (docs/envoy.md).
  it('TestBasicConfig/WithoutPerSecondRedisWithstopCacheKeyIncrementWhenOverlimitConfig', async () => {
    await expectBasicConfigAnswers(client());
  });

  it('TestBasicReloadConfig/ReloadWithoutWatchRoot', async () => {
    const { sidecar } = world.served('sidecar');
    expect(await client().shouldRateLimit('reload', [desc('block', 'foo')])).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });

    const added = sidecar.logs.length;
    writeFileSync(join(world.dir, 'reload.yaml'), RELOAD);
    expect(await waitForLog(sidecar, 'envoy config reloaded', added)).toMatchObject({ domains: ['another', 'basic', 'reload', 'share-threshold-test'] });
    expect((await client().shouldRateLimit('reload', [desc('key1', 'foo')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
    expect((await client().shouldRateLimit('reload', [desc('block', 'foo')])).statuses.map(line)).toEqual(['OVER_LIMIT 0/SECOND 0']);

    // Removing a config file reloads too.
    const removed = sidecar.logs.length;
    unlinkSync(join(world.dir, 'reload.yaml'));
    expect(await waitForLog(sidecar, 'envoy config reloaded', removed)).toMatchObject({ domains: ['another', 'basic', 'share-threshold-test'] });
    expect(await client().shouldRateLimit('reload', [desc('block', 'foo')])).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });
  });

  it('TestShareThreshold/WithoutPerSecondRedis', async () => {
    await inOneWindow('HOUR', 10_000);
    const domain = 'share-threshold-test';
    for (let i = 0; i < 10; i++) {
      expect((await client().shouldRateLimit(domain, [desc('files', 'files/a.pdf')])).statuses.map(line), `request ${i}`).toEqual([`OK 10/HOUR ${9 - i}`]);
    }
    // files/b.csv shares the budget files/a.pdf spent.
    const shared = await client().shouldRateLimit(domain, [desc('files', 'files/b.csv')]);
    expect(shared.overall_code).toBe('OVER_LIMIT');
    expect(shared.statuses.map(line)).toEqual(['OVER_LIMIT 10/HOUR 0']);
    // Without share_threshold, each value has its own budget.
    for (let i = 0; i < 10; i++) {
      const res = await client().shouldRateLimit(domain, [desc('files_no_share', `files_no_share/${randomUUID()}`)]);
      expect(res.statuses.map(line), `request ${i}`).toEqual(['OK 10/HOUR 9']);
    }
  });
});

// Upstream's local cache variants of TestBasicConfig: the same case on Redis, the sidecar set up
// from an env block as upstream's test sets up its runner (REDIS_URL, LOCAL_CACHE_SIZE_IN_BYTES
// 1000) over a policy whose envoy.lease is off: the variable turns the leases on.
describe('upstream test/integration/integration_test.go, on Redis with LOCAL_CACHE_SIZE_IN_BYTES', () => {
  const world = useRedis();
  const policy = (dir: string) => `store:\n  timeout: 5s\nenvoy:\n  config_dir: ${dir}\n  upstream_env: true\n  lease: { enabled: false }\n`;

  /** Runs TestBasicConfig on a fresh Redis against a sidecar with upstream's env block and `env`. */
  async function withLocalCache(env: Record<string, string>): Promise<void> {
    await world.redis.client.flushall();
    const sidecar = await startSidecar(policy(configDir(CONFIG)), { REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: `127.0.0.1:${world.redis.port}`, LOCAL_CACHE_SIZE_IN_BYTES: '1000', ...env });
    const client = connectEnvoy(sidecar.address);
    try {
      const read = sidecar.logs.find((l) => l.msg === 'envoy.upstream_env: read envoyproxy/ratelimit environment variables');
      expect(read?.applied).toContainEqual({ name: 'LOCAL_CACHE_SIZE_IN_BYTES', setting: 'envoy.lease.enabled' });
      await expectBasicConfigAnswers(client);
    } finally {
      client.close();
      await sidecar.stop();
    }
  }

  it('TestBasicConfig/WithoutPerSecondRedisWithLocalCacheAndstopCacheKeyIncrementWhenOverlimitConfig', () => withLocalCache({ STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: 'true' }));

  // Upstream's key2 goes on being charged once key3 is over its limit in this variant; sluice's
  // never is (docs/envoy.md, Differences), so it answers as the variant above.
  it('differs from TestBasicConfig/WithoutPerSecondRedisWithLocalCache: a request over the limit takes nothing from its other descriptors', () => withLocalCache({}));
});
