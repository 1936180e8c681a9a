// Upstream's TestBasicConfig on the Redis transports its integration tests run it over
// (test/integration/integration_test.go), here TLS (and TLS to a Redis that verifies the client's
// certificate), AUTH and a key prefix, each with and without a per-second Redis and a local cache
// (Cluster and Sentinel: upstream-integration-cluster-sentinel.test.ts). The built sidecar is set
// up as upstream's service is: by upstream's environment variables (envoy.upstream_env), as each
// variant's settings give them. The requests and answers are upstream-basic-config.ts's; each `it`
// derived from upstream's is named after the test it comes from (the others check
// REDIS_TLS_SKIP_HOSTNAME_VERIFICATION and a wrong REDIS_AUTH). Each Redis is started once; each
// variant runs a sidecar of its own against it, from an emptied store.
//
// Upstream's variants other than the STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT ones expect a
// descriptor within its limit to be charged while another of the same request is over its own;
// sluice charges nothing for such a request, so they are checked against the answers of the
// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT variants (docs/envoy.md). The REDIS_PERSECOND_*
// variables point at one more server, which must see nothing: sluice keeps every budget in the
// main store. Upstream's CI trusts its Redis certificate system-wide; here REDIS_TLS_CACERT names
// the test CA.
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';
import { useRedis } from '../support/use-redis.js';
import { desc } from './client.js';
import { grpcError } from './support.js';
import { inOneWindow, statusLine } from './upstream.js';
import { BASIC_CONFIG_FILES, runVariant, serverStore, UPSTREAM_PASSWORD, useUpstreamRuns, withUpstreamSidecar } from './upstream-basic-config.js';

/** A Redis without TLS or AUTH, for TestBasicConfig's variants and TestGenerateCacheKeysPrefix. */
const plain = useRedis();

const upstream = useUpstreamRuns({
  ...BASIC_CONFIG_FILES,
  // base_limiter_test.go's TestGenerateCacheKeysPrefix: the request "domain", key=value, 10 per second.
  'domain.yaml': 'domain: domain\ndescriptors:\n  - { key: key, value: value, rate_limit: { unit: second, requests_per_unit: 10 } }\n',
});

describe('upstream test/integration/integration_test.go, on Redis over TLS with AUTH', () => {
  let tls: TlsFiles;
  let redis: RedisProcess;
  /** Upstream's "verify peer" Redis (stunnel with verify level 2): it asks for a client certificate from its CA. */
  let verifyPeer: RedisProcess;
  /** A Redis whose certificate names redis.elsewhere.example, not localhost. */
  let otherName: RedisProcess;
  beforeAll(async () => {
    tls = await makeTlsFiles();
    const serverTls = { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile };
    [redis, verifyPeer, otherName] = await Promise.all([
      startRedis([], { password: UPSTREAM_PASSWORD, tls: serverTls }),
      startRedis([], { password: UPSTREAM_PASSWORD, tls: { ...serverTls, authClients: true } }),
      startRedis([], { password: UPSTREAM_PASSWORD, tls: { ...serverTls, certFile: tls.otherNameCertFile, keyFile: tls.otherNameKeyFile } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([redis?.stop(), verifyPeer?.stop(), otherName?.stop()]);
    tls?.remove();
  });

  /** testBasicConfigAuthTLS(perSecond, localCacheSize). */
  const authTls = (perSecondOn: boolean) => ({
    ...upstream.simpleRedisSettings(redis, perSecondOn),
    REDIS_AUTH: UPSTREAM_PASSWORD,
    REDIS_TLS: 'true',
    REDIS_TLS_CACERT: tls.caFile,
    REDIS_PERSECOND_AUTH: UPSTREAM_PASSWORD,
    REDIS_PERSECOND_TLS: 'true',
  });
  const store = serverStore(() => redis);
  upstream.variant('TestBasicTLSConfig/WithoutPerSecondRedisTLS', false, () => authTls(false), store);
  upstream.variant('TestBasicTLSConfig/WithPerSecondRedisTLS', false, () => authTls(true), store);
  upstream.variant('TestBasicTLSConfig/WithoutPerSecondRedisTLSWithLocalCache', true, () => authTls(false), store);
  upstream.variant('TestBasicTLSConfig/WithPerSecondRedisTLSWithLocalCache', true, () => authTls(true), store);

  /** testBasicConfigAuthTLSWithClientCert(false, 0): upstream's cert.pem is its own CA; here the test CA signed the client's. */
  upstream.variant(
    'TestBasicTLSConfig/WithoutPerSecondRedisTLSWithClientCert',
    false,
    () => ({
      ...upstream.simpleRedisSettings(verifyPeer, false),
      REDIS_TLS_CLIENT_CERT: tls.clientCertFile,
      REDIS_TLS_CLIENT_KEY: tls.clientKeyFile,
      REDIS_TLS_CACERT: tls.caFile,
      REDIS_TLS: 'true',
      REDIS_PERSECOND_TLS: 'true',
      REDIS_AUTH: UPSTREAM_PASSWORD,
      REDIS_PERSECOND_AUTH: UPSTREAM_PASSWORD,
    }),
    serverStore(() => verifyPeer),
  );

  it('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION=true reaches a Redis whose certificate names another host, and still refuses one a CA other than REDIS_TLS_CACERT signed', async () => {
    const env = { ...upstream.simpleRedisSettings(otherName, false), REDIS_AUTH: UPSTREAM_PASSWORD, REDIS_TLS: 'true', REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: 'true' };
    await withUpstreamSidecar({ ...env, REDIS_TLS_CACERT: tls.caFile }, async (client) => {
      expect((await client.shouldRateLimit('basic', [desc('key1', 'skip')])).statuses.map(statusLine)).toEqual(['OK 50/SECOND 49']);
    });
    await withUpstreamSidecar({ ...env, REDIS_TLS_CACERT: tls.otherCaFile }, async (client) => {
      const err = await grpcError(client.shouldRateLimit('basic', [desc('key1', 'other-ca')]));
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.details).toMatch(/self-signed certificate in certificate chain|unable to verify/);
    });
  });
});

describe('upstream test/integration/integration_test.go, on Redis with AUTH', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedis([], { password: UPSTREAM_PASSWORD });
  });
  afterAll(() => redis?.stop());

  /** testBasicConfigAuth(perSecond, localCacheSize). */
  const auth = (perSecondOn: boolean) => ({ ...upstream.simpleRedisSettings(redis, perSecondOn), REDIS_AUTH: UPSTREAM_PASSWORD, REDIS_PERSECOND_AUTH: UPSTREAM_PASSWORD });
  const store = serverStore(() => redis);
  upstream.variant('TestBasicAuthConfig/WithoutPerSecondRedisAuth', false, () => auth(false), store);
  upstream.variant('TestBasicAuthConfig/WithPerSecondRedisAuth', false, () => auth(true), store);
  upstream.variant('TestBasicAuthConfig/WithoutPerSecondRedisAuthWithLocalCache', true, () => auth(false), store);
  upstream.variant('TestBasicAuthConfig/WithPerSecondRedisAuthWithLocalCache', true, () => auth(true), store);

  it('a wrong REDIS_AUTH: requests are answered UNAVAILABLE (envoy.on_store_failure: error), the first and the log with Redis’s WRONGPASS, and the sidecar keeps serving', async () => {
    await store.flush();
    await withUpstreamSidecar({ ...auth(false), REDIS_AUTH: 'wrong-password' }, async (client, sidecar) => {
      const errors = [];
      for (let i = 0; i < 3; i++) errors.push(await grpcError(client.shouldRateLimit('basic', [desc('key1', 'foo')])));
      expect(errors.map((err) => err.code)).toEqual([status.UNAVAILABLE, status.UNAVAILABLE, status.UNAVAILABLE]);
      // Later ones may find the circuit open (docs/operations.md, The circuit breaker).
      expect(errors[0]!.details).toMatch(/^store unavailable: WRONGPASS/);
      expect(sidecar.logs).toContainEqual(
        expect.objectContaining({ level: 40, msg: 'store call failed; deciding by on_store_failure', err: expect.stringMatching(/^store unavailable: WRONGPASS/) }),
      );
      expect(sidecar.child.exitCode).toBeNull();
      // Nothing was written with the wrong password.
      expect(await redis.client.dbsize()).toBe(0);
    });
  });
});

describe('upstream test/integration/integration_test.go, on Redis', () => {
  const store = serverStore(() => plain.redis);
  const stopIncrement = (perSecondOn: boolean) => ({ ...upstream.simpleRedisSettings(plain.redis, perSecondOn), STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: 'true' });

  it('TestBasicConfig/WithoutPerSecondRedisWithCachePrefix', async () => {
    const env = { ...upstream.simpleRedisSettings(plain.redis, false), CACHE_KEY_PREFIX: 'prefix:' };
    await runVariant({ env, localCache: false, store, perSecondServer: upstream.perSecond });
    // Every key sluice wrote starts with the prefix (and the ':' sluice puts after it).
    const keys = await store.keys();
    expect(keys).toContainEqual(expect.stringMatching(/^prefix::\{envoy=another\|key2\|/));
    expect(keys.filter((key) => !key.startsWith('prefix::'))).toEqual([]);
  });
  upstream.variant('TestBasicConfig/WithPerSecondRedisWithstopCacheKeyIncrementWhenOverlimitConfig', false, () => stopIncrement(true), store);
  upstream.variant('TestBasicConfig/WithoutPerSecondRedisWithLocalCache', true, () => upstream.simpleRedisSettings(plain.redis, false), store);
  upstream.variant('TestBasicConfig/WithoutPerSecondRedisWithLocalCacheAndstopCacheKeyIncrementWhenOverlimitConfig', true, () => stopIncrement(false), store);
  upstream.variant('TestBasicConfig/WithPerSecondRedisWithLocalCacheAndstopCacheKeyIncrementWhenOverlimitConfig', true, () => stopIncrement(true), store);
});

describe('upstream test/limiter and test/redis, on Redis with CACHE_KEY_PREFIX', () => {
  // Upstream's key is the prefix, then its own (prefix:domain_key_value_1234); sluice's is the
  // prefix, ':', then its own.
  it('TestGenerateCacheKeysPrefix', async () => {
    await plain.redis.client.flushall();
    await withUpstreamSidecar({ ...upstream.simpleRedisSettings(plain.redis, false), CACHE_KEY_PREFIX: 'prefix:' }, async (client) => {
      await inOneWindow('SECOND', 700);
      expect((await client.shouldRateLimit('domain', [desc('key', 'value')])).statuses.map(statusLine)).toEqual(['OK 10/SECOND 9']);
      const keys = await plain.redis.client.keys('*');
      expect(keys.filter((key) => key.includes('envoy=domain'))).toEqual(['prefix::{envoy=domain|key|value|~fw_second}:fw_second|fw']);
      expect(keys.filter((key) => !key.startsWith('prefix::'))).toEqual([]);
    });
  });
});
