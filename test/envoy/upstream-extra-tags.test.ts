// Derived from envoyproxy/ratelimit's test/integration/integration_test.go TestBasicConfig_ExtraTags:
// EXTRA_TAGS (under envoy.upstream_env) are labels on every metric, the per-rule statistics and
// the count of config loads among them.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { configDir, waitForLog } from './support.js';
import { BASIC_CONFIG_FILES } from './upstream-basic-config.js';

describe('upstream test/integration/integration_test.go, EXTRA_TAGS', () => {
  let sidecar: SidecarProcess;
  let client: EnvoyClient;
  let dir: string;

  beforeAll(async () => {
    dir = configDir(BASIC_CONFIG_FILES);
    sidecar = await startSidecar(`envoy:\n  upstream_env: true\n  config_dir: ${dir}\n`, { EXTRA_TAGS: 'foo:bar,a:b' });
    client = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
  });

  it('TestBasicConfig_ExtraTags', async () => {
    expect((await client.shouldRateLimit('basic', [desc('key1', 'foo')])).overall_code).toBe('OK');
    const tags = ['foo="bar"', 'a="b"'];
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'domain="basic"', 'rule="key1"', ...tags)).toBe(1);
    expect(await metric(sidecar, 'sluice_envoy_config_loads_total', 'result="applied"', ...tags)).toBe(1);
    // Every series carries them, sluice's own figures too.
    const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    const untagged = text.split('\n').filter((line) => line !== '' && !line.startsWith('#') && !tags.every((tag) => line.includes(tag)));
    expect(untagged).toEqual([]);
  });

  it('counts a reload that finds a bad file as rejected (upstream: config_load_error)', async () => {
    const before = sidecar.logs.length;
    writeFileSync(join(dir, 'broken.yaml'), 'domain: broken\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
    await waitForLog(sidecar, 'envoy config reload failed; still serving the previous config', before);
    expect(await metric(sidecar, 'sluice_envoy_config_loads_total', 'result="rejected"', 'foo="bar"')).toBe(1);
    expect(await metric(sidecar, 'sluice_envoy_config_loads_total', 'result="applied"', 'foo="bar"')).toBe(1);
  });
});
