// Envoy's ShouldRateLimit over real gRPC, against the built sidecar: on the memory store, and on
// real Redis (shared by two sidecars, with leases, and with Redis gone).
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { configDir, grpcError, waitForLog } from './support.js';

const API = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 3, name: per-user }
  - key: path
    value: /expensive
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: path
    value: /static/*
    rate_limit: { unlimited: true }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: tb
    rate_limit: { unit: second, requests_per_unit: 1, sluice_algorithm: token_bucket, sluice_burst: 2 }
  - key: hot
    rate_limit: { unit: hour, requests_per_unit: 100000 }
`;

const healthPkg = loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String })) as any;
const reflectionProto = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

describe('ShouldRateLimit on the memory store', () => {
  let dir: string;
  let sidecar: SidecarProcess;
  let client: EnvoyClient;

  beforeAll(async () => {
    dir = configDir({ 'api.yaml': API });
    sidecar = await startSidecar(`envoy:\n  config_dir: ${dir}\n  response_headers: true\n`);
    client = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
  });

  it('answers one status per descriptor with every field filled, and the RateLimit headers', async () => {
    const res = await client.shouldRateLimit('api', [desc('user', 'ann'), desc('path', '/static/logo.png'), desc('nothing', 'here')]);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: 'per-user', requests_per_unit: 3, unit: 'MINUTE' }, limit_remaining: 2 });
    expect(res.statuses[0]!.duration_until_reset!.seconds).toBeGreaterThan(0);
    expect(res.statuses[0]!.duration_until_reset!.seconds).toBeLessThanOrEqual(60);
    expect(res.statuses[1]).toMatchObject({ code: 'OK', current_limit: null, limit_remaining: 4294967295, duration_until_reset: null });
    expect(res.statuses[2]).toMatchObject({ code: 'OK', current_limit: null, limit_remaining: 0 });
    expect(res.response_headers_to_add.map((h) => h.key)).toEqual(['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset']);
    expect(res.response_headers_to_add.slice(0, 2).map((h) => h.value)).toEqual(['3', '2']);
  });

  it('over the limit: OVER_LIMIT, and the other descriptors are not charged', async () => {
    expect((await client.shouldRateLimit('api', [desc('path', '/expensive')])).overall_code).toBe('OK');
    for (let i = 0; i < 3; i++) {
      const res = await client.shouldRateLimit('api', [desc('user', 'bob'), desc('path', '/expensive')]);
      expect(res.overall_code).toBe('OVER_LIMIT');
      expect(res.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
    }
    expect((await client.shouldRateLimit('api', [desc('user', 'bob')])).statuses[0]!.limit_remaining).toBe(2);
  });

  it('hits_addend: the request’s, a descriptor’s own, and a present 0 that only checks', async () => {
    expect((await client.shouldRateLimit('api', [desc('user', 'cat')], 2)).statuses[0]!.limit_remaining).toBe(1);
    const check = await client.shouldRateLimit('api', [{ ...desc('user', 'cat'), hits_addend: { value: 0 } }], 5);
    expect(check.statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 1 });
    const own = await client.shouldRateLimit('api', [{ ...desc('user', 'cat'), hits_addend: { value: 1 } }], 5);
    expect(own.statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 0 });
  });

  it('a limit override, shadow mode and a token bucket', async () => {
    const override = await client.shouldRateLimit('api', [{ ...desc('user', 'dan'), limit: { requests_per_unit: 10, unit: 'HOUR' } }]);
    expect(override.statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: '', requests_per_unit: 10, unit: 'HOUR' }, limit_remaining: 9 });
    await client.shouldRateLimit('api', [desc('shadow', 's')]);
    const shadow = await client.shouldRateLimit('api', [desc('shadow', 's')]);
    expect(shadow).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 0 }] });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await client.shouldRateLimit('api', [desc('tb', 'x')])).overall_code);
    expect(codes).toEqual(['OK', 'OK', 'OVER_LIMIT']);
  });

  it('bad requests are INVALID_ARGUMENT naming the field', async () => {
    const cases: [Promise<unknown>, RegExp][] = [
      [client.shouldRateLimit('', [desc('user', 'x')]), /^domain: must not be empty/],
      [client.shouldRateLimit('api', []), /^descriptors: must not be empty/],
      [client.shouldRateLimit('api', [{ entries: [] }]), /^descriptors\[0\]\.entries: must not be empty/],
      [client.shouldRateLimit('api', [desc('', 'x')]), /^descriptors\[0\]\.entries\[0\]\.key: must not be empty/],
      [client.shouldRateLimit('api', [{ ...desc('user', 'x'), limit: { requests_per_unit: 1, unit: 'UNKNOWN' } }]), /^descriptors\[0\]\.limit\.unit: expected one of/],
      [client.shouldRateLimit('api', [desc('user', 'x'.repeat(5000))]), /^descriptors\[0\]\.entries\[0\]\.value: longer than 4096 bytes/],
    ];
    for (const [call, message] of cases) {
      const err = await grpcError(call);
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(message);
    }
  });

  it('serves health for the Envoy service and for envoyproxy/ratelimit’s name, and lists the service in reflection', async () => {
    const health = new healthPkg.grpc.health.v1.Health(sidecar.address, credentials.createInsecure());
    for (const service of ['envoy.service.ratelimit.v3.RateLimitService', 'ratelimit']) {
      const res = await new Promise<any>((resolve, reject) => health.Check({ service }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));
      expect(res.status).toBe('SERVING');
    }
    health.close();
    const pkg = loadPackageDefinition(loadSync(reflectionProto, { keepCase: true })) as any;
    const reflection = new pkg.grpc.reflection.v1.ServerReflection(sidecar.address, credentials.createInsecure());
    const call = reflection.ServerReflectionInfo();
    const reply = once(call, 'data');
    call.write({ list_services: '' });
    const [listed] = await reply;
    call.end();
    reflection.close();
    expect(listed.list_services_response.service.map((s: { name: string }) => s.name)).toEqual(
      expect.arrayContaining(['sluice.v1.RateLimiter', 'envoy.service.ratelimit.v3.RateLimitService']),
    );
  });

  it('reloads when a file changes; keeps the old config, saying why, when the new one is bad', async () => {
    const before = sidecar.logs.length;
    writeFileSync(join(dir, 'api.yaml'), API.replace('requests_per_unit: 3, name: per-user', 'requests_per_unit: 30, name: per-user'));
    const reloaded = await waitForLog(sidecar, 'envoy config reloaded', before);
    expect(reloaded).toMatchObject({ dir, domains: ['api'], files: 1 });
    expect((await client.shouldRateLimit('api', [desc('user', 'eve')])).statuses[0]).toMatchObject({ current_limit: { requests_per_unit: 30 }, limit_remaining: 29 });

    // A new domain appears with a new file, written aside and renamed in (as a ConfigMap does).
    const next = sidecar.logs.length;
    writeFileSync(join(dir, '.tmp-other'), 'domain: other\ndescriptors:\n  - key: k\n    rate_limit: { unit: day, requests_per_unit: 1 }\n');
    renameSync(join(dir, '.tmp-other'), join(dir, 'other.yaml'));
    expect(await waitForLog(sidecar, 'envoy config reloaded', next)).toMatchObject({ domains: ['api', 'other'] });
    expect((await client.shouldRateLimit('other', [desc('k', 'v')])).statuses[0]!.limit_remaining).toBe(0);

    const bad = sidecar.logs.length;
    writeFileSync(join(dir, 'other.yaml'), 'domain: other\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
    const failed = await waitForLog(sidecar, 'envoy config reload failed; still serving the previous config', bad);
    expect(failed.problems).toEqual([`${join(dir, 'other.yaml')}: descriptors[0].rate_limit.unit (line 4): invalid rate limit unit 'fortnight'`]);
    expect(failed.level).toBe(50);
    expect((await client.shouldRateLimit('other', [desc('k', 'v')])).overall_code).toBe('OVER_LIMIT');
  });

  it('refuses to start on a bad domain file, naming the file and the place in it', async () => {
    const badDir = configDir({ 'bad.yaml': 'domain: bad\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, sluice_bursts: 3 }\n' });
    const started = startSidecar(`envoy:\n  config_dir: ${badDir}\n`);
    await expect(started).rejects.toThrow(
      new RegExp(`envoy\\.config_dir \\(line 2, column 15\\): ${join(badDir, 'bad.yaml').replace(/[.]/g, '\\.')}: descriptors\\[0\\]\\.rate_limit \\(line 4\\): unknown key "sluice_bursts"`),
    );
  });

  it('answers FAILED_PRECONDITION when the policy has no envoy section', async () => {
    const plain = await startSidecar('resources:\n  - name: r\n    limits: [{ name: l, algorithm: fixed_window, rate: 1/s }]\n');
    const plainClient = connectEnvoy(plain.address);
    try {
      const err = await grpcError(plainClient.shouldRateLimit('api', [desc('user', 'x')]));
      expect(err.code).toBe(status.FAILED_PRECONDITION);
      expect(err.details).toMatch(/envoy: \{ config_dir/);
    } finally {
      plainClient.close();
      await plain.stop();
    }
  });
});

describe('ShouldRateLimit on Redis', () => {
  let redis: RedisProcess;
  let dir: string;
  let sidecars: SidecarProcess[] = [];
  let clients: EnvoyClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    dir = configDir({ 'api.yaml': API });
    // Two sidecars on one Redis: the budget is global. (A generous store timeout: the machines
    // running the tests are small and shared, and 20 ms is not always enough there.)
    const policy = `store:\n  timeout: 5s\nenvoy:\n  config_dir: ${dir}\n`;
    sidecars = await Promise.all([0, 1].map(() => startSidecar(policy, { SLUICE_REDIS_URL: redis.url })));
    clients = sidecars.map((s) => connectEnvoy(s.address));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await redis?.stop();
  });

  it('decides in Redis: one budget across sidecars, in one key with a TTL per descriptor', async () => {
    const [a, b] = clients as [EnvoyClient, EnvoyClient];
    expect((await a.shouldRateLimit('api', [desc('user', 'ann')])).statuses[0]!.limit_remaining).toBe(2);
    expect((await b.shouldRateLimit('api', [desc('user', 'ann')])).statuses[0]!.limit_remaining).toBe(1);
    expect((await a.shouldRateLimit('api', [desc('user', 'ann')])).statuses[0]!.limit_remaining).toBe(0);
    expect((await b.shouldRateLimit('api', [desc('user', 'ann')])).overall_code).toBe('OVER_LIMIT');
    const key = 'sluice:{envoy=api|user|ann|~fw_minute}:fw_minute|fw';
    expect(await redis.client.hget(key, 'c')).toBe('3');
    const ttl = await redis.client.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('a request over the limit consumes nothing on its other descriptors', async () => {
    const [a] = clients as [EnvoyClient];
    await a.shouldRateLimit('api', [desc('path', '/expensive')]);
    for (let i = 0; i < 5; i++) expect((await a.shouldRateLimit('api', [desc('user', 'zed'), desc('path', '/expensive')])).overall_code).toBe('OVER_LIMIT');
    expect((await a.shouldRateLimit('api', [desc('user', 'zed')])).statuses[0]!.limit_remaining).toBe(2);
  });

  it('serves a hot descriptor from a lease, without over-admitting', async () => {
    const [a] = clients as [EnvoyClient];
    const sidecar = sidecars[0]!;
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all(Array.from({ length: 40 }, () => a.shouldRateLimit('api', [desc('hot', 'h')])));
      expect(answers.every((r) => r.overall_code === 'OK')).toBe(true);
    }
    const metrics = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    expect(metrics).toMatch(/sluice_decisions_total\{resource="envoy:api",outcome="granted",decided_by="LEASE"\} [1-9]/);
  });

  it('with Redis gone: UNAVAILABLE by default (Envoy’s failure_mode_deny decides), OK with on_store_failure open', async () => {
    const lonely = await startRedis();
    const failing = await startSidecar(`store:\n  timeout: 500ms\nenvoy:\n  config_dir: ${dir}\n`, { SLUICE_REDIS_URL: lonely.url });
    const open = await startSidecar(`store:\n  timeout: 500ms\nenvoy:\n  config_dir: ${dir}\n  on_store_failure: open\n`, { SLUICE_REDIS_URL: lonely.url });
    const failingClient = connectEnvoy(failing.address);
    const openClient = connectEnvoy(open.address);
    try {
      expect((await failingClient.shouldRateLimit('api', [desc('user', 'x')])).overall_code).toBe('OK');
      await lonely.stop();
      const err = await grpcError(failingClient.shouldRateLimit('api', [desc('user', 'x')]));
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.details).toMatch(/store unavailable/);
      expect((await openClient.shouldRateLimit('api', [desc('user', 'x')])).overall_code).toBe('OK');
      expect(failing.child.exitCode).toBeNull();
    } finally {
      failingClient.close();
      openClient.close();
      await Promise.all([failing.stop(), open.stop()]);
    }
  });
});
