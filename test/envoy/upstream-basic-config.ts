// Upstream's testBasicBaseConfig (test/integration/integration_test.go): the requests and answers
// upstream checks in every variant of TestBasicConfig and of its TLS, AUTH, Cluster and Sentinel
// tests, and the way those variants are run: a sidecar of their own, set up by the environment
// variables upstream's settings stand for. Upstream's statistics in that body (hit counters, the
// local cache's hits and misses) are not derived.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { secondsToWindowEnd } from '../../src/envoy/units.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { inOneWindow, statusLine } from './upstream.js';
import { UPSTREAM_INTEGRATION_FILES } from './upstream-files.js';

/** The password of every Redis in upstream's integration tests (its Makefile's --requirepass). */
export const UPSTREAM_PASSWORD = 'password123';

const { 'reload.yaml': _reload, ...startFiles } = UPSTREAM_INTEGRATION_FILES;
/** Upstream's integration config files, as its service starts with them (its reload test copies reload.yaml in). */
export const BASIC_CONFIG_FILES: Record<string, string> = startFiles;

/** An address as upstream's tests write it. */
export const localhostAt = (port: number) => `localhost:${port}`;

/**
 * The answers of testBasicBaseConfig, as its STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT variants
 * expect them: a request over the limit takes nothing in sluice, so a descriptor within its limit
 * is not charged when another of the request is over its own (docs/envoy.md). With `localCache`
 * (upstream's LOCAL_CACHE_SIZE_IN_BYTES > 0) the keys end in `_local`, as upstream's getCacheKey
 * makes them, so those variants spend budgets of their own.
 */
export async function basicConfigAnswers(client: EnvoyClient, localCache = false): Promise<void> {
  const key = (name: string) => (localCache ? `${name}_local` : name);

  const unknown = await client.shouldRateLimit('foo', [desc(key('hello'), 'world')]);
  expect(unknown).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null, limit_remaining: 0 }] });

  expect((await client.shouldRateLimit('basic', [desc(key('key1'), 'foo')])).statuses.map(statusLine)).toEqual(['OK 50/SECOND 49']);

  await inOneWindow('MINUTE', 20_000);
  const one = randomUUID();
  for (let i = 0; i < 25; i++) {
    const res = await client.shouldRateLimit('another', [desc(key('key2'), one)]);
    const expected = i < 20 ? `OK 20/MINUTE ${20 - (i + 1)}` : 'OVER_LIMIT 20/MINUTE 0';
    expect(res.overall_code, `request ${i}`).toBe(i < 20 ? 'OK' : 'OVER_LIMIT');
    expect(res.statuses.map(statusLine), `request ${i}`).toEqual([expected]);
  }

  // Two keys of one domain: once key3 is over its limit, key2 is no longer charged.
  const two = randomUUID();
  for (let i = 0; i < 15; i++) {
    const res = await client.shouldRateLimit('another', [desc(key('key2'), two), desc(key('key3'), two)]);
    const over = i >= 10;
    expect(res.overall_code, `request ${i}`).toBe(over ? 'OVER_LIMIT' : 'OK');
    expect(res.statuses.map(statusLine), `request ${i}`).toEqual([`OK 20/MINUTE ${over ? 10 : 20 - (i + 1)}`, over ? 'OVER_LIMIT 10/HOUR 0' : `OK 10/HOUR ${10 - (i + 1)}`]);
  }

  // duration_until_reset counts down to the end of the window.
  for (let i = 0; i < 2; i++) {
    const before = Date.now();
    const res = await client.shouldRateLimit('another', [desc(key('key4'), 'durTest')]);
    const after = Date.now();
    const seconds = res.statuses[0]!.duration_until_reset!.seconds;
    expect(seconds).toBeLessThanOrEqual(secondsToWindowEnd('DAY', before));
    expect(seconds).toBeGreaterThanOrEqual(secondsToWindowEnd('DAY', after));
  }
}

/**
 * upstream's defaultSettings() as variables: its runtime directory (RUNTIME_ROOT/ratelimit/config,
 * holding `files`), TCP sockets, no StatsD, the Redis backend. (Its ports are left out: the test
 * sidecar listens on free ports.)
 */
export function upstreamDefaults(files: Record<string, string>): Record<string, string> {
  const root = join(mkdtempSync(join(tmpdir(), 'sluice-upstream-runtime-')), 'runtime', 'current');
  const dir = join(root, 'ratelimit', 'config');
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return {
    RUNTIME_ROOT: root,
    RUNTIME_SUBDIRECTORY: 'ratelimit',
    RUNTIME_APPDIRECTORY: 'config',
    REDIS_SOCKET_TYPE: 'tcp',
    REDIS_PERSECOND_SOCKET_TYPE: 'tcp',
    USE_STATSD: 'false',
    BACKEND_TYPE: 'redis',
  };
}

/** The Redis (one server, or a Cluster's masters) a variant's budgets live in, as the test reads it. */
export interface MainStore {
  /** Empties it, so that each variant starts afresh, as upstream's do. */
  flush(): Promise<unknown>;
  /** Every key in it. */
  keys(): Promise<string[]>;
}

/** One server as a MainStore (read when used, so it may be one a beforeAll starts). */
export function serverStore(server: () => RedisProcess): MainStore {
  return { flush: () => server().client.flushall(), keys: () => server().client.keys('*') };
}

export interface Variant {
  /** The variables of upstream's settings for this variant: upstreamDefaults and the variant's own. */
  env: Record<string, string>;
  /**
   * Upstream's WithLocalCache (LOCAL_CACHE_SIZE_IN_BYTES 1000, else 0): sluice's equivalent of its
   * local cache is the lease, whose standing denial answers a descriptor over its limit without
   * Redis; the variable turns leases on, and the keys end in `_local`.
   */
  localCache: boolean;
  /** The Redis the variant's budgets must live in. */
  store: MainStore;
  /**
   * The server upstream's per-second variables point at (REDIS_PERSECOND_URL): sluice keeps every
   * budget in one store, so it must see no keys and no connection but the test's own.
   */
  perSecondServer: RedisProcess;
}

/**
 * A sidecar set up by upstream's variables alone (the policy file only turns upstream_env on, and
 * leases off: LOCAL_CACHE_SIZE_IN_BYTES turns them on), for the length of `use`.
 */
export async function withUpstreamSidecar(env: Record<string, string>, use: (client: EnvoyClient, sidecar: SidecarProcess) => Promise<void>): Promise<void> {
  // A generous store timeout: the test machines are small and shared.
  const policy = 'store:\n  timeout: 5s\nenvoy:\n  upstream_env: true\n  lease: { enabled: false }\n';
  const sidecar = await startSidecar(policy, env);
  const client = connectEnvoy(sidecar.address);
  try {
    await use(client, sidecar);
  } finally {
    client.close();
    await sidecar.stop();
  }
}

/**
 * One variant as upstream runs it: a sidecar of its own, set up by the variant's variables, through
 * the body; its budgets are then in the variant's Redis, and nothing reached the per-second server.
 */
export async function runVariant(variant: Variant): Promise<void> {
  await variant.store.flush();
  const env = { ...variant.env, LOCAL_CACHE_SIZE_IN_BYTES: variant.localCache ? '1000' : '0' };
  await withUpstreamSidecar(env, async (client, sidecar) => {
    const read = sidecar.logs.find((l) => l.msg === 'envoy.upstream_env: read envoyproxy/ratelimit environment variables');
    const applied = (read?.applied ?? []) as { name: string; setting: string }[];
    expect(applied.some((a) => a.name === 'LOCAL_CACHE_SIZE_IN_BYTES' && a.setting === 'envoy.lease.enabled')).toBe(variant.localCache);
    await basicConfigAnswers(client, variant.localCache);
  });
  // key4's budget is a day's: it is still there.
  const key4 = variant.localCache ? 'key4_local' : 'key4';
  expect(await variant.store.keys()).toContainEqual(expect.stringContaining(`{envoy=another|${key4}|durTest|`));
  expect(await variant.perSecondServer.client.dbsize()).toBe(0);
  expect(await variant.perSecondServer.client.info('stats')).toMatch(/^total_connections_received:1\r?$/m);
}

/** What the variants of one test file share, for its describe blocks. */
export interface UpstreamRuns {
  /** upstreamDefaults of the file's config files. */
  readonly defaults: Record<string, string>;
  /** Where upstream's per-second variables point (see Variant.perSecondServer). */
  readonly perSecond: RedisProcess;
  /** makeSimpleRedisSettings(redisPort, perSecondPort, perSecond, localCacheSize) as variables. */
  simpleRedisSettings(redis: RedisProcess, perSecondOn: boolean): Record<string, string>;
  /** An `it` running a variant of upstream's: its name, whether it has a local cache, its variables, and its Redis. */
  variant(name: string, localCache: boolean, env: () => Record<string, string>, store: MainStore): void;
}

/** The runtime directory of `files` and the per-second server, for the enclosing file or describe block. */
export function useUpstreamRuns(files: Record<string, string>): UpstreamRuns {
  let defaults: Record<string, string> = {};
  let perSecond: RedisProcess | undefined;
  beforeAll(async () => {
    defaults = upstreamDefaults(files);
    perSecond = await startRedis([], { password: UPSTREAM_PASSWORD });
  });
  afterAll(() => perSecond?.stop());
  const runs: UpstreamRuns = {
    get defaults() {
      return defaults;
    },
    get perSecond() {
      if (!perSecond) throw new Error('the per-second server is not started yet');
      return perSecond;
    },
    simpleRedisSettings: (redis, perSecondOn) => ({
      ...defaults,
      REDIS_PERSECOND: String(perSecondOn),
      REDIS_URL: localhostAt(redis.port),
      REDIS_PERSECOND_URL: localhostAt(runs.perSecond.port),
    }),
    variant: (name, localCache, env, store) => {
      it(name, () => runVariant({ env: env(), localCache, store, perSecondServer: runs.perSecond }));
    },
  };
  return runs;
}
