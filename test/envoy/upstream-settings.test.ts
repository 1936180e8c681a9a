// Cases derived from envoyproxy/ratelimit's test/service/ratelimit_test.go that set its
// deployment settings (SHADOW_MODE, LIMIT_RESPONSE_HEADERS_ENABLED and the header names,
// HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED), here the envoy: settings of the same meaning: each
// `it` is named after the upstream test it comes from. Upstream drives its service with a mocked
// cache that says which descriptor is over its limit; here real budgets are spent until it is,
// through the built sidecar, on every backend (upstream.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { metric, startSidecar } from '../support/sidecar.js';
import { desc, type EnvoyClient } from './client.js';
import { healthOf, watchHealth } from './support.js';
import { inOneWindow, onEveryBackend, statusLine as line } from './upstream.js';

const LIMITED_AND_UNLIMITED = (domain: string) => `
domain: ${domain}
descriptors:
  - { key: foo, value: bar, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: hello, value: world }
`;

const FILES: Record<string, string> = {
  'global-shadow.yaml': LIMITED_AND_UNLIMITED('global-shadow'),
  'custom-headers.yaml': LIMITED_AND_UNLIMITED('custom-headers'),
  'default-headers.yaml': LIMITED_AND_UNLIMITED('default-headers'),
  'quota-shadow.yaml': `
domain: quota-shadow
descriptors:
  - { key: regular, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 5 } }
  - { key: quota, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 3 } }
`,
  'mixed-shadow.yaml': `
domain: mixed-shadow
descriptors:
  - { key: regular, value: limit, rate_limit: { unit: minute, requests_per_unit: 5 } }
  - { key: quota, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 3 } }
`,
};

const SIDECARS = {
  shadow: ['shadow_mode: true'],
  headers: ['response_headers: true'],
  custom: ['response_headers: true', 'response_header_names: { limit: A-Ratelimit-Limit, remaining: A-Ratelimit-Remaining, reset: A-Ratelimit-Reset }'],
};

onEveryBackend('upstream test/service/ratelimit_test.go, deployment settings', FILES, SIDECARS, (world) => {
  /** Spends `n` of a descriptor's budget. */
  const spend = async (client: EnvoyClient, domain: string, key: string, value: string, n: number) => {
    expect((await client.shouldRateLimit(domain, [desc(key, value)], n)).overall_code).toBe('OK');
  };
  const shadowed = () => metric(world.served('shadow').sidecar, 'sluice_envoy_global_shadow_mode_total');

  beforeEach(() => inOneWindow('MINUTE', 15_000));

  it('TestServiceGlobalShadowMode', async () => {
    const { client } = world.served('shadow');
    const before = await shadowed();
    await spend(client, 'global-shadow', 'foo', 'bar', 10);
    const res = await client.shouldRateLimit('global-shadow', [desc('foo', 'bar'), desc('hello', 'world')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT 10/MINUTE 0', 'OK - 0']);
    expect(await shadowed()).toBe(before + 1);
  });

  it('TestServiceQuotaModeWithShadowMode', async () => {
    const { client } = world.served('shadow');
    const before = await shadowed();
    await spend(client, 'quota-shadow', 'regular', 'limit', 5);
    await spend(client, 'quota-shadow', 'quota', 'limit', 3);
    const res = await client.shouldRateLimit('quota-shadow', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT 5/MINUTE 0', 'OVER_LIMIT 3/MINUTE 0']);
    expect(await shadowed()).toBe(before + 1);
  });

  it('TestServiceMixedModeWithShadowMode', async () => {
    const { client } = world.served('shadow');
    const before = await shadowed();
    await spend(client, 'mixed-shadow', 'regular', 'limit', 5);
    await spend(client, 'mixed-shadow', 'quota', 'limit', 3);
    const res = await client.shouldRateLimit('mixed-shadow', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT 5/MINUTE 0', 'OVER_LIMIT 3/MINUTE 0']);
    expect(await shadowed()).toBe(before + 1);
  });

  /** The headers of a request over the limit of foo=bar, and the seconds left in the minute around it. */
  async function overLimitHeaders(client: EnvoyClient, domain: string) {
    await spend(client, domain, 'foo', 'bar', 10);
    const before = Math.floor(Date.now() / 1000);
    const res = await client.shouldRateLimit(domain, [desc('foo', 'bar'), desc('hello', 'world')]);
    const after = Math.floor(Date.now() / 1000);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT 10/MINUTE 0', 'OK - 0']);
    const headers = res.response_headers_to_add.map(({ key, value }) => ({ key, value }));
    // Upstream's reset: the seconds until the unit's window ends.
    const reset = Number(headers[2]!.value);
    expect(reset).toBeGreaterThanOrEqual(60 - (after % 60));
    expect(reset).toBeLessThanOrEqual(60 - (before % 60));
    return headers.map(({ key, value }, i) => (i === 2 ? { key, value: 'the reset' } : { key, value }));
  }

  it('TestServiceWithCustomRatelimitHeaders', async () => {
    expect(await overLimitHeaders(world.served('custom').client, 'custom-headers')).toEqual([
      { key: 'A-Ratelimit-Limit', value: '10' },
      { key: 'A-Ratelimit-Remaining', value: '0' },
      { key: 'A-Ratelimit-Reset', value: 'the reset' },
    ]);
  });

  it('TestServiceWithDefaultRatelimitHeaders', async () => {
    expect(await overLimitHeaders(world.served('headers').client, 'default-headers')).toEqual([
      { key: 'RateLimit-Limit', value: '10' },
      { key: 'RateLimit-Remaining', value: '0' },
      { key: 'RateLimit-Reset', value: 'the reset' },
    ]);
  });
});

describe('upstream test/service/ratelimit_test.go, health', () => {
  it('TestServiceHealthStatusAtLeastOneConfigLoaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
    const sidecar = await startSidecar(`envoy:\n  config_dir: ${dir}\n  require_domains: true\n`);
    const health = watchHealth(sidecar.address, 'ratelimit');
    try {
      // No config loaded at start: NOT_SERVING.
      await health.until('NOT_SERVING');
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('NOT_SERVING');
      // A config with a domain is loaded: SERVING.
      writeFileSync(join(dir, 'test-domain.yaml'), LIMITED_AND_UNLIMITED('test-domain'));
      await health.until('SERVING');
      // A reload leaves no domain: NOT_SERVING again.
      rmSync(join(dir, 'test-domain.yaml'));
      await health.until('NOT_SERVING');
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('NOT_SERVING');
    } finally {
      health.close();
      await sidecar.stop();
    }
  });
});
