// A built sidecar serving Envoy with upstream's deployment settings: require_domains (upstream's
// HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED) in grpc.health.v1 and /readyz as config_dir fills and
// empties, and upstream's per-rule statistics on /metrics, bounded by labels that carry no value
// unless a rule sets detailed_metric or value_to_metric.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { healthOf, watchHealth } from './support.js';
import { MAX_DETAILED_SERIES } from '../../src/envoy/stats.js';

const ENVOY_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';

const API = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 10 }
  - key: path
    value: /login
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: tenant
    descriptors:
      - key: user
        detailed_metric: true
        rate_limit: { unit: hour, requests_per_unit: 5 }
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: { unit: hour, requests_per_unit: 5 }
`;

const readyz = async (sidecar: SidecarProcess) => (await fetch(`http://${sidecar.admin}/readyz`)).status;

describe('require_domains', () => {
  let dir: string;
  let sidecar: SidecarProcess;
  let client: EnvoyClient;
  let health: ReturnType<typeof watchHealth>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
    sidecar = await startSidecar(`envoy:\n  config_dir: ${dir}\n  require_domains: true\n`);
    client = connectEnvoy(sidecar.address);
    health = watchHealth(sidecar.address, ENVOY_SERVICE);
  });
  afterAll(async () => {
    health?.close();
    client?.close();
    await sidecar?.stop();
  });

  it('starts NOT_SERVING, and not ready, while config_dir holds no domain', async () => {
    await health.until('NOT_SERVING');
    expect(await healthOf(sidecar.address, ENVOY_SERVICE)).toBe('NOT_SERVING');
    expect(await healthOf(sidecar.address, 'ratelimit')).toBe('NOT_SERVING');
    expect(await healthOf(sidecar.address, '')).toBe('SERVING');
    expect(await readyz(sidecar)).toBe(503);
  });

  it('turns SERVING, and ready, when a domain is loaded', async () => {
    writeFileSync(join(dir, 'api.yaml'), API);
    await health.until('SERVING');
    expect(await healthOf(sidecar.address, 'ratelimit')).toBe('SERVING');
    expect(await readyz(sidecar)).toBe(200);
  });

  it('counts upstream’s statistics per domain and rule on /metrics, with values only for detailed_metric and value_to_metric', async () => {
    for (let i = 0; i < 3; i++) await client.shouldRateLimit('api', [desc('user', `u${i}`)]);
    for (let i = 0; i < 3; i++) expect((await client.shouldRateLimit('api', [desc('path', '/login')])).overall_code).toBe('OK');
    await client.shouldRateLimit('api', [{ entries: [{ key: 'tenant', value: 'acme' }, { key: 'user', value: 'ann' }] }]);
    await client.shouldRateLimit('api', [{ entries: [{ key: 'route', value: 'draw' }, { key: 'method', value: 'GET' }] }]);

    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'domain="api"', 'rule="user"')).toBe(3);
    expect(await metric(sidecar, 'sluice_envoy_within_limit_total', 'domain="api"', 'rule="user"')).toBe(3);
    expect(await metric(sidecar, 'sluice_envoy_shadow_mode_total', 'rule="path_/login"')).toBe(2);
    expect(await metric(sidecar, 'sluice_envoy_over_limit_total', 'rule="path_/login"')).toBe(2);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'rule="tenant_acme.user_ann"')).toBe(1);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'rule="route_draw.method"')).toBe(1);
    const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    // No request value appears in a label of a rule without detailed_metric.
    expect(text).not.toMatch(/rule="[^"]*u[0-2]"/);
    expect(text).toMatch(/^# HELP sluice_envoy_near_limit_total /m);
  });

  it(`a caller sending endless values to detailed_metric and value_to_metric rules grows no more than ${MAX_DETAILED_SERIES} series`, async () => {
    const each = 600;
    const send = async (entriesOf: (i: number) => { key: string; value: string }[]) => {
      for (let from = 0; from < each; from += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, i) => client.shouldRateLimit('api', [{ entries: entriesOf(from + i) }])));
      }
    };
    await send((i) => [{ key: 'tenant', value: `t${i}` }, { key: 'user', value: 'u' }]);
    await send((i) => [{ key: 'route', value: `r${i}` }, { key: 'method', value: 'GET' }]);
    const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    const series = text.split('\n').filter((l) => l.startsWith('sluice_envoy_hits_total{'));
    // The two rules share one cap: with the two value series of the test before, every tenant
    // fits, and the routes past the cap fold into their rule's own label.
    const folded = 2 + 2 * each - MAX_DETAILED_SERIES;
    // user, path_/login, the value series up to the cap, and route.method for the values past it.
    expect(series).toHaveLength(2 + MAX_DETAILED_SERIES + 1);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'rule="route.method"')).toBe(folded);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'rule="tenant.user"')).toBe(0);
    expect(await metric(sidecar, 'sluice_envoy_stats_folded_total')).toBe(folded);
  });

  it('turns NOT_SERVING again when the last domain goes; its series go with it', async () => {
    rmSync(join(dir, 'api.yaml'));
    await health.until('NOT_SERVING');
    expect(await readyz(sidecar)).toBe(503);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'domain="api"')).toBe(0);
  });
});

describe('without require_domains', () => {
  it('an empty config_dir serves, as upstream does by default', async () => {
    const sidecar = await startSidecar(`envoy:\n  config_dir: ${mkdtempSync(join(tmpdir(), 'sluice-envoy-'))}\n`);
    try {
      expect(await healthOf(sidecar.address, ENVOY_SERVICE)).toBe('SERVING');
      expect(await readyz(sidecar)).toBe(200);
    } finally {
      await sidecar.stop();
    }
  });
});
