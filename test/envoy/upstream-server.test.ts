// Cases derived from envoyproxy/ratelimit's test/server/: server_impl_test.go (its HTTP /json
// handler) and health_test.go (/healthcheck and grpc.health.v1 `ratelimit`); each `it` is named
// after the upstream test it comes from. Upstream drives its handler with a mocked service and
// its health checker by hand; here the built sidecar answers, on envoy.http_listen. /json runs on
// every backend (upstream.ts); health, which upstream ties to Redis, on Redis.
//
// Where sluice differs (documented in docs/envoy.md): an error's body names what is wrong after
// upstream's "Bad Request"; and health does not follow Redis (sluice answers by on_store_failure
// while Redis is away), so the Redis steps of the health tests stay SERVING.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';
import { healthOf, watchHealth } from './support.js';
import { onEveryBackend } from './upstream.js';

const FOO = `
domain: foo
descriptors:
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
`;

/** What an HTTP request to the sidecar's HTTP port gets: the status, the content type and the body. */
async function httpCall(sidecar: SidecarProcess, path: string, init: RequestInit = {}): Promise<[number, string | null, string]> {
  const res = await fetch(`http://${sidecar.listening.http as string}${path}`, init);
  return [res.status, res.headers.get('content-type'), await res.text()];
}

const postJson = (sidecar: SidecarProcess, body: string) => httpCall(sidecar, '/json', { method: 'POST', body });

onEveryBackend('upstream test/server/server_impl_test.go', { 'foo.yaml': FOO }, { http: ['http_listen: 127.0.0.1:0'] }, (world) => {
  it('TestJsonHandler', async () => {
    const { sidecar } = world.served('http');
    // Missing request body.
    const missing = await postJson(sidecar, '');
    expect(missing.slice(0, 2)).toEqual([400, 'text/plain; charset=utf-8']);
    expect(missing[2]).toMatch(/^Bad Request: .*\n$/);
    // Request body is not valid json.
    const notJson = await postJson(sidecar, '}');
    expect(notJson.slice(0, 2)).toEqual([400, 'text/plain; charset=utf-8']);
    expect(notJson[2]).toMatch(/^Bad Request: request body: not JSON/);
    // A request the service refuses (upstream's mock answers an error; sluice refuses this very
    // request, which has no descriptors).
    expect(await postJson(sidecar, '{"domain": "foo"}')).toEqual([400, 'text/plain; charset=utf-8', 'Bad Request: descriptors: must not be empty\n']);
    // Successful request, not rate limited.
    expect(await postJson(sidecar, '{"domain": "foo", "descriptors": [{"entries": [{"key": "free", "value": "x"}]}]}')).toEqual([
      200,
      'application/json',
      '{"overallCode":"OK","statuses":[{"code":"OK"}]}',
    ]);
    // Successful request, rate limited.
    const limited = await postJson(sidecar, '{"domain": "foo", "descriptors": [{"entries": [{"key": "blocked", "value": "x"}]}]}');
    expect(limited.slice(0, 2)).toEqual([429, 'application/json']);
    expect(JSON.parse(limited[2])).toEqual({
      overallCode: 'OVER_LIMIT',
      statuses: [{ code: 'OVER_LIMIT', currentLimit: { unit: 'SECOND' }, durationUntilReset: '1s' }],
    });
    // Upstream's "unknown response code" (500) and "nil response" (500) come from a mock that
    // answers what ShouldRateLimit never answers; there is nothing to derive from them.
  });
});

describe('upstream test/server/health_test.go', () => {
  const world = useRedis();
  const healthcheck = async (sidecar: SidecarProcess) => (await httpCall(sidecar, '/healthcheck')).slice(0, 3);
  const storez = async (sidecar: SidecarProcess) => (await fetch(`http://${sidecar.admin}/storez`)).status;

  /** A sidecar on the file's Redis, with an HTTP port, and these lines in its envoy: section. */
  const start = (dir: string, lines: string[] = []) =>
    startSidecar(`store:\n  timeout: 1s\nenvoy:\n  config_dir: ${dir}\n  http_listen: 127.0.0.1:0\n${lines.map((l) => `  ${l}\n`).join('')}`, {
      SLUICE_REDIS_URL: world.redis.url,
    });

  /** Redis stalled, as upstream's Fail(RedisHealthComponentName) says it is; runs `check` meanwhile. */
  async function withRedisStalled(sidecar: SidecarProcess, check: () => Promise<void>): Promise<void> {
    world.redis.pause();
    try {
      expect(await storez(sidecar)).toBe(503);
      await check();
    } finally {
      world.redis.resume();
    }
  }

  it('TestHealthCheck', async () => {
    const sidecar = await start(mkdtempSync(join(tmpdir(), 'sluice-envoy-')));
    try {
      // Upstream starts unhealthy until Redis is confirmed; sluice serves once it listens.
      expect(await healthcheck(sidecar)).toEqual([200, 'text/plain; charset=utf-8', 'OK']);
      // Upstream fails with Redis; sluice goes on answering (by on_store_failure).
      await withRedisStalled(sidecar, async () => expect(await healthcheck(sidecar)).toEqual([200, 'text/plain; charset=utf-8', 'OK']));
      expect(await healthcheck(sidecar)).toEqual([200, 'text/plain; charset=utf-8', 'OK']);
    } finally {
      await sidecar.stop();
    }
  });

  it('TestHealthyWithAtLeastOneConfigLoaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
    const sidecar = await start(dir, ['require_domains: true']);
    const health = watchHealth(sidecar.address, 'ratelimit');
    try {
      // No config loaded: unhealthy, with no body.
      expect(await healthcheck(sidecar)).toEqual([500, null, '']);
      // A config is loaded: healthy.
      writeFileSync(join(dir, 'foo.yaml'), FOO);
      await health.until('SERVING');
      expect(await healthcheck(sidecar)).toEqual([200, 'text/plain; charset=utf-8', 'OK']);
      // Redis fails: upstream is unhealthy; sluice stays healthy.
      await withRedisStalled(sidecar, async () => expect((await healthcheck(sidecar))[0]).toBe(200));
      expect((await healthcheck(sidecar))[0]).toBe(200);
    } finally {
      health.close();
      await sidecar.stop();
    }
  });

  it('TestGrpcHealthCheck', async () => {
    const sidecar = await start(mkdtempSync(join(tmpdir(), 'sluice-envoy-')));
    try {
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('SERVING');
      await withRedisStalled(sidecar, async () => expect(await healthOf(sidecar.address, 'ratelimit')).toBe('SERVING'));
    } finally {
      await sidecar.stop();
    }
  });

  it('TestGrpcHealthyWithAtLeastOneConfigLoaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
    const sidecar = await start(dir, ['require_domains: true']);
    const health = watchHealth(sidecar.address, 'ratelimit');
    try {
      await health.until('NOT_SERVING');
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('NOT_SERVING');
      // Config (and Redis) healthy: SERVING.
      writeFileSync(join(dir, 'foo.yaml'), FOO);
      await health.until('SERVING');
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('SERVING');
      // Config fails (no domain left): NOT_SERVING; the HTTP port says the same.
      rmSync(join(dir, 'foo.yaml'));
      await health.until('NOT_SERVING');
      expect(await healthOf(sidecar.address, 'ratelimit')).toBe('NOT_SERVING');
      expect((await healthcheck(sidecar))[0]).toBe(500);
    } finally {
      health.close();
      await sidecar.stop();
    }
  });
});
