// `sluice serve` with envoy.upstream_env, its environment an envoyproxy/ratelimit Deployment's
// env block: the real process reads the variables (addresses, config directory, Redis, key prefix,
// shadow mode, header names, near-limit ratio, log level, tracing), says once what it applied and
// what it ignored, and refuses to start on one whose meaning it cannot keep.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/redis-server.js';
import { runCli } from '../support/run-cli.js';
import { metric, startSidecar, writePolicy, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';
import { startOtlpReceiver, traceparent, type OtlpReceiver } from '../support/otlp-receiver.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';

const API = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 4 }
`;

/** RUNTIME_ROOT holding RUNTIME_SUBDIRECTORY/config/api.yaml, as upstream's file loader reads it. */
function runtimeRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'sluice-runtime-'));
  mkdirSync(join(root, 'ratelimit', 'config'), { recursive: true });
  writeFileSync(join(root, 'ratelimit', 'config', 'api.yaml'), API);
  return root;
}

// Leases off: the near_limit figures below are exact only when every decision is the store's.
const POLICY = 'store:\n  timeout: 5s\nenvoy:\n  upstream_env: true\n  lease: { enabled: false }\n';

describe('sluice serve reads an envoyproxy/ratelimit env block', () => {
  const world = useRedis();
  let port: number;
  let httpPort: number;
  let sidecar: SidecarProcess;
  let client: EnvoyClient;
  let collector: OtlpReceiver;

  beforeAll(async () => {
    port = await freePort();
    collector = await startOtlpReceiver();
    httpPort = await freePort();
    sidecar = await startSidecar(POLICY, {
      // The test harness's own overrides are cleared, so upstream's address and log level apply.
      SLUICE_LISTEN: '',
      SLUICE_LOG_LEVEL: '',
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: String(port),
      HOST: '127.0.0.1',
      PORT: String(httpPort),
      LOG_LEVEL: 'debug',
      RUNTIME_ROOT: runtimeRoot(),
      RUNTIME_SUBDIRECTORY: 'ratelimit',
      REDIS_SOCKET_TYPE: 'tcp',
      REDIS_URL: `127.0.0.1:${world.redis.port}`,
      CACHE_KEY_PREFIX: 'edge_',
      SHADOW_MODE: 'true',
      LIMIT_RESPONSE_HEADERS_ENABLED: 'true',
      LIMIT_REMAINING_HEADER: 'X-RateLimit-Left',
      NEAR_LIMIT_RATIO: '0.5',
      USE_STATSD: 'false',
      REDIS_POOL_SIZE: '20',
      TRACING_ENABLED: 'true',
      TRACING_SERVICE_NAMESPACE: 'edge',
      // The collector, as upstream's exporter finds it: the standard variable.
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collector.url,
      OTEL_BSP_SCHEDULE_DELAY: '20',
    });
    client = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
    await collector?.close();
  });

  it('listens on GRPC_HOST:GRPC_PORT', () => {
    expect(sidecar.address).toBe(`127.0.0.1:${port}`);
  });

  it('says once what it applied and what it ignored, with why', () => {
    const applied = sidecar.logs.filter((l) => l.msg === 'envoy.upstream_env: read envoyproxy/ratelimit environment variables');
    expect(applied).toHaveLength(1);
    expect(applied[0]!.applied).toEqual(
      expect.arrayContaining([
        { name: 'GRPC_PORT', setting: 'server.listen' },
        { name: 'PORT', setting: 'envoy.http_listen' },
        { name: 'RUNTIME_SUBDIRECTORY', setting: 'envoy.config_dir' },
        { name: 'REDIS_URL', setting: 'store.redis' },
        { name: 'CACHE_KEY_PREFIX', setting: 'store.redis.prefix' },
        { name: 'SHADOW_MODE', setting: 'envoy.shadow_mode' },
        { name: 'TRACING_ENABLED', setting: 'tracing.enabled' },
      ]),
    );
    const ignored = sidecar.logs.filter((l) => l.msg === 'envoy.upstream_env: ignored envoyproxy/ratelimit environment variables');
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toMatchObject({ level: 40 });
    expect((ignored[0]!.ignored as { name: string }[]).map((i) => i.name)).toEqual(['USE_STATSD', 'REDIS_POOL_SIZE']);
    expect(JSON.stringify(ignored[0])).toContain('sluice exports Prometheus metrics on server.admin at /metrics');
  });

  it('decides in the Redis of REDIS_URL, under CACHE_KEY_PREFIX, with the rules of RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config', async () => {
    const res = await client.shouldRateLimit('api', [desc('user', 'ann')]);
    expect(res.statuses[0]).toMatchObject({ code: 'OK', current_limit: { requests_per_unit: 4, unit: 'HOUR' }, limit_remaining: 3 });
    const keys = await world.redis.client.keys('*');
    expect(keys.filter((k) => k.includes('user|ann'))).toEqual([expect.stringMatching(/^edge_:\{envoy=api\|user\|ann\|/)]);
  });

  it('SHADOW_MODE: over the limit is answered OK and counted; the headers say so under LIMIT_REMAINING_HEADER', async () => {
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await client.shouldRateLimit('api', [desc('user', 'bob')]));
    expect(answers.map((a) => a.overall_code)).toEqual(['OK', 'OK', 'OK', 'OK', 'OK']);
    expect(answers[4]!.statuses[0]!.code).toBe('OVER_LIMIT');
    expect(answers[4]!.response_headers_to_add.map(({ key, value }) => ({ key, value }))).toEqual([
      { key: 'RateLimit-Limit', value: '4' },
      { key: 'X-RateLimit-Left', value: '0' },
      { key: 'RateLimit-Reset', value: expect.stringMatching(/^\d+$/) },
    ]);
    expect(await metric(sidecar, 'sluice_envoy_global_shadow_mode_total')).toBe(1);
    expect(await metric(sidecar, 'sluice_envoy_over_limit_total', 'domain="api"', 'rule="user"')).toBe(1);
    // NEAR_LIMIT_RATIO 0.5 of 4: bob's 3rd and 4th hits (ann had 1, below it).
    expect(await metric(sidecar, 'sluice_envoy_near_limit_total', 'domain="api"', 'rule="user"')).toBe(2);
    expect(await metric(sidecar, 'sluice_envoy_hits_total', 'domain="api"', 'rule="user"')).toBe(6);
  });

  it('TRACING_ENABLED: each call is a span, sent to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, from upstream’s service name', async () => {
    const { traceId, parentId, header } = traceparent();
    await client.shouldRateLimit('api', [desc('user', 'cy')], 0, { traceparent: header });
    const call = await waitFor('the call’s span', 20_000, async () => collector.spans.find((span) => span.traceId === traceId && span.name === 'ShouldRateLimit Execution'));
    expect(call).toMatchObject({ parentSpanId: parentId, attributes: { domain: 'api' }, resource: { 'service.name': 'RateLimit', 'service.namespace': 'edge' } });
  });

  it('LOG_LEVEL applies when SLUICE_LOG_LEVEL is unset: a SIGHUP reload logs at debug', async () => {
    const before = sidecar.logs.length;
    sidecar.child.kill('SIGHUP');
    const line = await waitFor('the debug line of the reload', 20_000, async () => sidecar.logs.slice(before).find((l) => l.msg === 'policy unchanged'));
    expect(line).toMatchObject({ level: 20, trigger: 'SIGHUP' });
  });

  it('serves upstream’s HTTP port on HOST:PORT: /healthcheck, and /json on the same budgets as gRPC', async () => {
    expect(sidecar.listening.http).toBe(`127.0.0.1:${httpPort}`);
    const healthcheck = await fetch(`http://127.0.0.1:${httpPort}/healthcheck`);
    expect([healthcheck.status, await healthcheck.text()]).toEqual([200, 'OK']);
    const json = await fetch(`http://127.0.0.1:${httpPort}/json`, { method: 'POST', body: JSON.stringify({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'cat' }] }] }) });
    expect(json.status).toBe(200);
    expect((await json.json()).statuses[0]).toMatchObject({ code: 'OK', currentLimit: { requestsPerUnit: 4, unit: 'HOUR' }, limitRemaining: 3 });
    expect((await client.shouldRateLimit('api', [desc('user', 'cat')])).statuses[0]!.limit_remaining).toBe(2);
  });
});

describe('the variables on the command line', () => {
  it('sluice check prints what upstream_env read', async () => {
    const policy = writePolicy(`envoy:\n  config_dir: ${mkdtempSync(join(tmpdir(), 'sluice-empty-'))}\n  upstream_env: true\n`);
    const run = await runCli(['check', policy], { NEAR_LIMIT_RATIO: '0.9', STATSD_PORT: '8125' });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('envoy.upstream_env:\n  NEAR_LIMIT_RATIO -> envoy.near_limit_ratio\n  STATSD_PORT ignored: sluice exports Prometheus metrics');
    expect(run.stdout).toContain('  warning: neither REDIS_URL nor the policy file names a Redis');
  });

  it('sluice serve refuses to start on a variable whose meaning it cannot keep, naming it', async () => {
    const policy = writePolicy(`envoy:\n  config_dir: ${mkdtempSync(join(tmpdir(), 'sluice-empty-'))}\n  upstream_env: true\n`);
    const run = await runCli(['serve', '--config', policy], { GRPC_SERVER_USE_TLS: 'true', SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: 'off' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^.*policy\.yaml: invalid policy\n {2}GRPC_SERVER_USE_TLS \(environment, read because envoy\.upstream_env is true\): sluice serves gRPC in plaintext/);
    expect(run.stdout).not.toContain('listening');
  });
});
