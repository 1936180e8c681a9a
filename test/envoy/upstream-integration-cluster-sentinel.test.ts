// Upstream's TestBasicConfig on Redis Cluster and Redis Sentinel, both with AUTH
// (test/integration/integration_test.go's TestBasicAuthConfigWithRedisCluster and
// TestBasicAuthConfigWithRedisSentinel), each with and without a per-second Redis and a local
// cache, through the built sidecar set up by upstream's environment variables, as
// upstream-integration-redis.test.ts runs the other transports (its header says what the answers
// and the per-second server are checked against). Each topology is started once.
import { afterAll, beforeAll, describe } from 'vitest';
import { startCluster, type ClusterSetup } from '../support/redis-cluster.js';
import { startSentinel, type SentinelSetup } from '../support/redis-sentinel.js';
import { BASIC_CONFIG_FILES, localhostAt, serverStore, UPSTREAM_PASSWORD, useUpstreamRuns, type MainStore } from './upstream-basic-config.js';

const upstream = useUpstreamRuns(BASIC_CONFIG_FILES);

describe('upstream test/integration/integration_test.go, on Redis Cluster with AUTH', () => {
  let cluster: ClusterSetup;
  beforeAll(async () => {
    cluster = await startCluster({ password: UPSTREAM_PASSWORD });
  });
  afterAll(() => cluster?.stop());

  /**
   * testBasicConfigAuthWithRedisCluster(perSecond, localCacheSize), with configRedisCluster: three
   * seed nodes, and upstream's pipeline window, which sluice has no use for. (Upstream's
   * per-second cluster is the per-second server here.)
   */
  const clusterAuth = (perSecondOn: boolean) => ({
    ...upstream.defaults,
    REDIS_PERSECOND: String(perSecondOn),
    REDIS_PERSECOND_TYPE: 'cluster',
    REDIS_PERSECOND_URL: localhostAt(upstream.perSecond.port),
    REDIS_TYPE: 'cluster',
    REDIS_URL: cluster.processes
      .slice(0, 3)
      .map((node) => localhostAt(node.port))
      .join(','),
    REDIS_AUTH: UPSTREAM_PASSWORD,
    REDIS_PERSECOND_AUTH: UPSTREAM_PASSWORD,
    REDIS_PERSECOND_PIPELINE_WINDOW: '150us',
    REDIS_PIPELINE_WINDOW: '150us',
  });
  const masters = async () => (await cluster.topology()).filter((node) => node.role === 'master').map((node) => node.process);
  const store: MainStore = {
    flush: async () => Promise.all((await masters()).map((master) => master.client.flushall())),
    keys: async () => (await Promise.all((await masters()).map((master) => master.client.keys('*')))).flat(),
  };
  upstream.variant('TestBasicAuthConfigWithRedisCluster/WithoutPerSecondRedisAuth', false, () => clusterAuth(false), store);
  upstream.variant('TestBasicAuthConfigWithRedisCluster/WithPerSecondRedisAuth', false, () => clusterAuth(true), store);
  upstream.variant('TestBasicAuthConfigWithRedisCluster/WithoutPerSecondRedisAuthWithLocalCache', true, () => clusterAuth(false), store);
  upstream.variant('TestBasicAuthConfigWithRedisCluster/WithPerSecondRedisAuthWithLocalCache', true, () => clusterAuth(true), store);
});

describe('upstream test/integration/integration_test.go, on Redis Sentinel with AUTH', () => {
  let sentinel: SentinelSetup;
  beforeAll(async () => {
    sentinel = await startSentinel({ password: UPSTREAM_PASSWORD });
  });
  afterAll(() => sentinel?.stop());

  /**
   * testBasicAuthConfigWithRedisSentinel(perSecond, localCacheSize), with configRedisSentinel: the
   * master's name, then its sentinels. (Upstream's per-second sentinels are the per-second server here.)
   */
  const sentinelAuth = (perSecondOn: boolean) => ({
    ...upstream.defaults,
    REDIS_PERSECOND: String(perSecondOn),
    REDIS_PERSECOND_TYPE: 'sentinel',
    REDIS_PERSECOND_URL: `mymaster,${localhostAt(upstream.perSecond.port)}`,
    REDIS_TYPE: 'sentinel',
    REDIS_URL: [sentinel.name, ...sentinel.sentinels.map((node) => localhostAt(node.port))].join(','),
    REDIS_AUTH: UPSTREAM_PASSWORD,
    REDIS_PERSECOND_AUTH: UPSTREAM_PASSWORD,
  });
  const store = serverStore(() => sentinel.master);
  upstream.variant('TestBasicAuthConfigWithRedisSentinel/WithoutPerSecondRedisAuth', false, () => sentinelAuth(false), store);
  upstream.variant('TestBasicAuthConfigWithRedisSentinel/WithPerSecondRedisAuth', false, () => sentinelAuth(true), store);
  upstream.variant('TestBasicAuthConfigWithRedisSentinel/WithoutPerSecondRedisAuthWithLocalCache', true, () => sentinelAuth(false), store);
  upstream.variant('TestBasicAuthConfigWithRedisSentinel/WithPerSecondRedisAuthWithLocalCache', true, () => sentinelAuth(true), store);
});
