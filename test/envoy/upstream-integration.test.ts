// Cases derived from envoyproxy/ratelimit's test/integration/integration_test.go, on its own
// runtime config files (upstream-files.ts), through the built sidecar on every backend
// (upstream.ts): each `it` is named after the upstream test it comes from. The variants upstream
// runs TestBasicConfig in for its Redis transports (TLS, AUTH, Cluster, Sentinel, a key prefix,
// a per-second Redis, a local cache) are derived in upstream-integration-redis.test.ts and
// upstream-integration-cluster-sentinel.test.ts, set up by upstream's environment variables;
// those for xDS are in upstream-xds.test.ts, and those for memcache are not derived.
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { desc } from './client.js';
import { waitForLog } from './support.js';
import { inOneWindow, onEveryBackend, statusLine as line } from './upstream.js';
import { BASIC_CONFIG_FILES, basicConfigAnswers } from './upstream-basic-config.js';
import { UPSTREAM_INTEGRATION_FILES } from './upstream-files.js';

const RELOAD = UPSTREAM_INTEGRATION_FILES['reload.yaml'];

onEveryBackend('upstream test/integration/integration_test.go', BASIC_CONFIG_FILES, { sidecar: [] }, (world) => {
  const client = () => world.served('sidecar').client;

  // Upstream runs this case in several variants; sluice answers as its variant that stops
  // counting a request that is over the limit (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT), since a
  // request over the limit takes nothing in sluice (docs/envoy.md).
  it('TestBasicConfig/WithoutPerSecondRedisWithstopCacheKeyIncrementWhenOverlimitConfig', async () => {
    await basicConfigAnswers(client());
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
