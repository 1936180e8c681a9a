// Cases derived from envoyproxy/ratelimit's test/service/ratelimit_test.go: each `it` is named
// after the upstream test it comes from. Upstream drives its service with a mocked cache that
// says which descriptor is over its limit; here real budgets are spent until it is, through the
// built sidecar, on every backend (upstream.ts). Upstream's statistics, tracing, response headers,
// SHADOW_MODE and HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED are not derived here. A case named
// "differs from TestX" asserts what sluice answers instead, for a difference docs/envoy.md lists.
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { startRedis } from '../support/redis-server.js';
import { startSidecar } from '../support/sidecar.js';
import { connectEnvoy, desc, plainStruct, type WireStatus } from './client.js';
import { configDir, grpcError, waitForLog } from './support.js';
import { BACKENDS, hits, inOneWindow, onEveryBackend, policyOf } from './upstream.js';

const FILES: Record<string, string> = {
  'test-domain.yaml': `
domain: test-domain
descriptors:
  - key: hello
    value: there
    rate_limit: { unit: minute, requests_per_unit: 1 }
`,
  'different-domain.yaml': `
domain: different-domain
descriptors:
  - key: foo
    value: bar
    rate_limit: { unit: minute, requests_per_unit: 10, name: key_name }
  - key: hello
    value: world
`,
  'rule-shadow.yaml': `
domain: rule-shadow
descriptors:
  - { key: foo, value: bar, shadow_mode: true, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: hello, value: world, shadow_mode: true, rate_limit: { unit: minute, requests_per_unit: 10 } }
`,
  'mixed-shadow.yaml': `
domain: mixed-shadow
descriptors:
  - { key: foo, value: bar, shadow_mode: true, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: hello, value: world, rate_limit: { unit: minute, requests_per_unit: 10 } }
`,
  'some-domain.yaml': `
domain: some-domain
descriptors:
  - { key: foo, value: bar, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: baz, value: qux, rate_limit: { unlimited: true } }
`,
  'quota-domain.yaml': `
domain: quota-domain
descriptors:
  - { key: foo, value: bar, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: hello, value: world, rate_limit: { unit: minute, requests_per_unit: 5 } }
`,
  'metadata-passed.yaml': `
domain: metadata-passed
descriptors:
  - { key: regular, value: limit, metadata: { name: service_1 }, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: quota, value: limit, quota_mode: true, metadata: { name: service_2 }, rate_limit: { unit: minute, requests_per_unit: 5 } }
`,
  'metadata-all-passed.yaml': `
domain: metadata-all-passed
descriptors:
  - { key: regular, value: limit, quota_mode: true, metadata: { name: service_1 }, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: quota, value: limit, quota_mode: true, metadata: { some_other_name: service_2 }, rate_limit: { unit: minute, requests_per_unit: 5 } }
`,
  'metadata-overlap.yaml': `
domain: metadata-overlap
descriptors:
  - { key: regular, value: limit, quota_mode: true, metadata: { name: service_1 }, rate_limit: { unit: minute, requests_per_unit: 10 } }
  - { key: quota, value: limit, quota_mode: true, metadata: { name: service_2 }, rate_limit: { unit: minute, requests_per_unit: 5 } }
`,
};

// A regular limit and one in quota mode, or two in quota mode: one domain per case, so that each
// starts from fresh budgets.
const REGULAR_AND_QUOTA = ['quota-per-descriptor', 'quota-mixed', 'quota-mixed-under'];
const TWO_QUOTAS = ['quota-only-all', 'quota-only-some'];
for (const domain of REGULAR_AND_QUOTA) {
  FILES[`${domain}.yaml`] = `
domain: ${domain}
descriptors:
  - { key: regular, value: limit, rate_limit: { unit: minute, requests_per_unit: 5 } }
  - { key: quota, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 3 } }
`;
}
for (const domain of TWO_QUOTAS) {
  FILES[`${domain}.yaml`] = `
domain: ${domain}
descriptors:
  - { key: quota1, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 5 } }
  - { key: quota2, value: limit, quota_mode: true, rate_limit: { unit: minute, requests_per_unit: 3 } }
`;
}

const healthPkg = loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String })) as any;

/** A status as one line: code, name:requests_per_unit/unit (or -), limit_remaining. */
const line = (s: WireStatus) => `${s.code} ${s.current_limit ? `${s.current_limit.name}:${s.current_limit.requests_per_unit}/${s.current_limit.unit}` : '-'} ${s.limit_remaining}`;

onEveryBackend('upstream test/service/ratelimit_test.go', FILES, { plain: [], quota: ['quota_mode: true', 'response_dynamic_metadata: true'] }, (world) => {
  const plain = () => world.served('plain').client;
  const quota = () => world.served('quota').client;
  /** Spends `n` of a descriptor's budget. */
  const spend = async (client: ReturnType<typeof plain>, domain: string, key: string, value: string, n: number) => {
    expect((await client.shouldRateLimit(domain, [desc(key, value)], n)).overall_code).toBe('OK');
  };

  beforeEach(() => inOneWindow('MINUTE', 15_000));

  it('TestService', async () => {
    const first = await plain().shouldRateLimit('test-domain', [desc('hello', 'world')]);
    expect(first).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null, limit_remaining: 0, duration_until_reset: null }] });

    await spend(plain(), 'different-domain', 'foo', 'bar', 10);
    const over = await plain().shouldRateLimit('different-domain', [desc('foo', 'bar'), desc('hello', 'world')]);
    expect(over.overall_code).toBe('OVER_LIMIT');
    expect(over.statuses.map(line)).toEqual(['OVER_LIMIT key_name:10/MINUTE 0', 'OK - 0']);

    // A config that does not load leaves the one loaded in place; the order of descriptors changes nothing.
    const { sidecar } = world.served('plain');
    const before = sidecar.logs.length;
    writeFileSync(join(world.dir, 'broken.yaml'), 'domain: broken\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
    try {
      await waitForLog(sidecar, 'envoy config reload failed; still serving the previous config', before);
    } finally {
      unlinkSync(join(world.dir, 'broken.yaml'));
    }
    const reordered = await plain().shouldRateLimit('different-domain', [desc('hello', 'world'), desc('foo', 'bar')]);
    expect(reordered.overall_code).toBe('OVER_LIMIT');
    expect(reordered.statuses.map(line)).toEqual(['OK - 0', 'OVER_LIMIT key_name:10/MINUTE 0']);
  });

  it('TestRuleShadowMode', async () => {
    await spend(plain(), 'rule-shadow', 'foo', 'bar', 10);
    await spend(plain(), 'rule-shadow', 'hello', 'world', 10);
    const res = await plain().shouldRateLimit('rule-shadow', [desc('foo', 'bar'), desc('hello', 'world')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual([':10/MINUTE 0', ':10/MINUTE 0'].map((s) => `OK ${s}`));
  });

  it('TestMixedRuleShadowMode', async () => {
    await spend(plain(), 'mixed-shadow', 'foo', 'bar', 10);
    await spend(plain(), 'mixed-shadow', 'hello', 'world', 10);
    const res = await plain().shouldRateLimit('mixed-shadow', [desc('foo', 'bar'), desc('hello', 'world')]);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
  });

  it('TestUnlimited', async () => {
    const res = await plain().shouldRateLimit('some-domain', [desc('foo', 'bar'), desc('hello', 'world'), desc('baz', 'qux')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OK :10/MINUTE 9', 'OK - 0', 'OK - 4294967295']);
  });

  it('TestServiceHealthStatus', async () => {
    const health = new healthPkg.grpc.health.v1.Health(world.served('plain').sidecar.address, credentials.createInsecure());
    try {
      const res = await new Promise<any>((resolve, reject) => health.Check({ service: 'ratelimit' }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));
      expect(res.status).toBe('SERVING');
    } finally {
      health.close();
    }
  });

  it('TestServiceGlobalQuotaMode', async () => {
    await spend(quota(), 'quota-domain', 'foo', 'bar', 10);
    await spend(quota(), 'quota-domain', 'hello', 'world', 5);
    const res = await quota().shouldRateLimit('quota-domain', [desc('foo', 'bar'), desc('hello', 'world')]);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT :10/MINUTE 0', 'OVER_LIMIT :5/MINUTE 0']);
  });

  it('TestMetadataReturnedForPassedDescriptors', async () => {
    await spend(quota(), 'metadata-passed', 'regular', 'limit', 4);
    await spend(quota(), 'metadata-passed', 'quota', 'limit', 5);
    const res = await quota().shouldRateLimit('metadata-passed', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OK :10/MINUTE 5', 'OVER_LIMIT :5/MINUTE 0']);
    expect(plainStruct(res.dynamic_metadata!).metadata).toEqual({ name: 'service_1' });
  });

  it('TestMetadataReturnedForAllPassedDescriptors', async () => {
    const res = await quota().shouldRateLimit('metadata-all-passed', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(plainStruct(res.dynamic_metadata!).metadata).toEqual({ name: 'service_1', some_other_name: 'service_2' });
  });

  it('TestOverlappingMetadataReturnsTheFirstValue', async () => {
    const res = await quota().shouldRateLimit('metadata-overlap', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(plainStruct(res.dynamic_metadata!)).toEqual({
      domain: 'metadata-overlap',
      descriptors: [{ entries: ['regular=limit'] }, { entries: ['quota=limit'] }],
      metadata: { name: 'service_1' },
    });
  });

  it('TestServicePerDescriptorQuotaMode', async () => {
    await spend(plain(), 'quota-per-descriptor', 'regular', 'limit', 5);
    const res = await plain().shouldRateLimit('quota-per-descriptor', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map((s) => s.code)).toEqual(['OVER_LIMIT', 'OK']);
  });

  it('TestServiceMixedPerDescriptorModes', async () => {
    await spend(plain(), 'quota-mixed', 'quota', 'limit', 3);
    const res = await plain().shouldRateLimit('quota-mixed', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
  });

  it('TestServiceMixedPerDescriptorModesUnderLimit', async () => {
    const res = await plain().shouldRateLimit('quota-mixed-under', [desc('regular', 'limit'), desc('quota', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OK :5/MINUTE 4', 'OK :3/MINUTE 2']);
  });

  it('TestServiceQuotaModeOnlyAllOverTheLimit', async () => {
    await spend(plain(), 'quota-only-all', 'quota1', 'limit', 5);
    await spend(plain(), 'quota-only-all', 'quota2', 'limit', 3);
    const res = await plain().shouldRateLimit('quota-only-all', [desc('quota1', 'limit'), desc('quota2', 'limit')]);
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT :5/MINUTE 0', 'OVER_LIMIT :3/MINUTE 0']);
  });

  it('TestServiceQuotaModeOnlySomeOverTheLimit', async () => {
    await spend(plain(), 'quota-only-some', 'quota1', 'limit', 5);
    const res = await plain().shouldRateLimit('quota-only-some', [desc('quota1', 'limit'), desc('quota2', 'limit')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses.map(line)).toEqual(['OVER_LIMIT :5/MINUTE 0', 'OK :3/MINUTE 2']);
    // The request went through: the descriptor in quota mode with room took its share.
    expect((await plain().shouldRateLimit('quota-only-some', [hits(desc('quota2', 'limit'), 0)])).statuses[0]!.limit_remaining).toBe(2);
  });

  it('differs from TestEmptyDomain and TestEmptyDescriptors: INVALID_ARGUMENT naming the field', async () => {
    const domain = await grpcError(plain().shouldRateLimit('', [desc('hello', 'world')]));
    expect(domain).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'domain: must not be empty' });
    const descriptors = await grpcError(plain().shouldRateLimit('test-domain', []));
    expect(descriptors).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'descriptors: must not be empty' });
  });

});

describe.each(BACKENDS.filter((b) => b.redis))('upstream test/service/ratelimit_test.go with Redis gone, on $name', (backend) => {
  it('differs from TestCacheError: UNAVAILABLE (Envoy’s failure_mode_deny decides), saying the store is unavailable', async () => {
    const redis = await startRedis();
    const dir = configDir({ 'different-domain.yaml': FILES['different-domain.yaml']! });
    const sidecar = await startSidecar(policyOf(dir, backend).replace('timeout: 5s', 'timeout: 500ms'), { SLUICE_REDIS_URL: redis.url });
    const client = connectEnvoy(sidecar.address);
    try {
      expect((await client.shouldRateLimit('different-domain', [desc('foo', 'bar')])).overall_code).toBe('OK');
      await redis.stop();
      const err = await grpcError(client.shouldRateLimit('different-domain', [desc('foo', 'bar')]));
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.details).toMatch(/^store unavailable/);
    } finally {
      client.close();
      await sidecar.stop();
      await redis.stop();
    }
  });
});

describe('upstream test/service/ratelimit_test.go, loading', () => {
  it('differs from TestInitialLoadError: a config that does not load stops the sidecar before it serves, naming the problem', async () => {
    const dir = configDir({ 'bad.yaml': 'domain: bad\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n' });
    await expect(startSidecar(`envoy:\n  config_dir: ${dir}\n`)).rejects.toThrow(/bad\.yaml: descriptors\[0\]\.rate_limit\.unit \(line 4\): invalid rate limit unit 'fortnight'/);
  });
});
