// Cases derived from envoyproxy/ratelimit's test/integration/integration_test.go, on its own
// runtime config files (upstream-files.ts), through the built sidecar on every backend
// (upstream.ts): each `it` is named after the upstream test it comes from. The variants upstream
// runs for its transports (per-second Redis, local cache, memcache, TLS, auth, Cluster,
// Sentinel, xDS) and its statistics are not derived here; its gRPC server's TLS tests (mTLS, the
// certificate's reload) are in upstream-integration-tls.test.ts.
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { secondsToWindowEnd } from '../../src/envoy/units.js';
import { desc, type WireStatus } from './client.js';
import { waitForLog } from './support.js';
import { inOneWindow, onEveryBackend } from './upstream.js';
import { UPSTREAM_INTEGRATION_FILES } from './upstream-files.js';

const { 'reload.yaml': RELOAD, ...CONFIG } = UPSTREAM_INTEGRATION_FILES;

/** A status as one line: code, requests_per_unit/unit (or -), limit_remaining. */
const line = (s: WireStatus) => `${s.code} ${s.current_limit ? `${s.current_limit.requests_per_unit}/${s.current_limit.unit}` : '-'} ${s.limit_remaining}`;

onEveryBackend('upstream test/integration/integration_test.go', CONFIG, { sidecar: [] }, (world) => {
  const client = () => world.served('sidecar').client;

  // Upstream runs this case in several variants; sluice answers as its variant that stops
  // counting a request that is over the limit (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT), since a
  // request over the limit takes nothing in sluice (docs/envoy.md).
  it('TestBasicConfig/WithoutPerSecondRedisWithstopCacheKeyIncrementWhenOverlimitConfig', async () => {
    const unknown = await client().shouldRateLimit('foo', [desc('hello', 'world')]);
    expect(unknown).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null, limit_remaining: 0 }] });

    expect((await client().shouldRateLimit('basic', [desc('key1', 'foo')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);

    await inOneWindow('MINUTE', 20_000);
    const one = randomUUID();
    for (let i = 0; i < 25; i++) {
      const res = await client().shouldRateLimit('another', [desc('key2', one)]);
      const expected = i < 20 ? `OK 20/MINUTE ${20 - (i + 1)}` : 'OVER_LIMIT 20/MINUTE 0';
      expect(res.overall_code, `request ${i}`).toBe(i < 20 ? 'OK' : 'OVER_LIMIT');
      expect(res.statuses.map(line), `request ${i}`).toEqual([expected]);
    }

    // Two keys of one domain: once key3 is over its limit, key2 is no longer charged.
    const two = randomUUID();
    for (let i = 0; i < 15; i++) {
      const res = await client().shouldRateLimit('another', [desc('key2', two), desc('key3', two)]);
      const over = i >= 10;
      expect(res.overall_code, `request ${i}`).toBe(over ? 'OVER_LIMIT' : 'OK');
      expect(res.statuses.map(line), `request ${i}`).toEqual([`OK 20/MINUTE ${over ? 10 : 20 - (i + 1)}`, over ? 'OVER_LIMIT 10/HOUR 0' : `OK 10/HOUR ${10 - (i + 1)}`]);
    }

    // duration_until_reset counts down to the end of the window.
    for (let i = 0; i < 2; i++) {
      const before = Date.now();
      const res = await client().shouldRateLimit('another', [desc('key4', 'durTest')]);
      const after = Date.now();
      const seconds = res.statuses[0]!.duration_until_reset!.seconds;
      expect(seconds).toBeLessThanOrEqual(secondsToWindowEnd('DAY', before));
      expect(seconds).toBeGreaterThanOrEqual(secondsToWindowEnd('DAY', after));
    }
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
